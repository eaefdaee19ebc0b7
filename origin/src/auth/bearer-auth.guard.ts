import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { cdnError } from '../../../infra/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { BearerTokenVerifier } from './bearer-token';

/** Admin routes: `Authorization: Bearer <CDN_ADMIN_TOKEN>` or 401 CDN_ERR_UNAUTHORIZED. */
@Injectable()
export class BearerAuthGuard implements CanActivate {
  private readonly verifier: BearerTokenVerifier;

  constructor(@Inject(ORIGIN_CONFIG) config: OriginConfig) {
    this.verifier = new BearerTokenVerifier(config.adminToken.reveal());
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    if (!this.verifier.verify(request.headers.authorization)) {
      throw cdnError('CDN_ERR_UNAUTHORIZED');
    }
    return true;
  }
}
