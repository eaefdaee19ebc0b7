import { applyDecorators, CanActivate, ExecutionContext, Inject, Injectable, SetMetadata, UseGuards } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiBearerAuth, ApiForbiddenResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { cdnError } from '../../../infra/model/errors';
import { ORIGIN_CONFIG, type ApiToken, type OriginConfig, type Scope } from '../config/origin-config';
import { BearerTokenVerifier, hasScope } from './bearer-token';

declare module 'fastify' {
  interface FastifyRequest {
    /** The token that authenticated the request (its name goes into audit lines). */
    apiToken?: ApiToken;
  }
}

const REQUIRED_SCOPE = Symbol('REQUIRED_SCOPE');

/**
 * `Authorization: Bearer <token>`: no or unknown token -> 401, a token without the
 * route's scope -> 403. `scope` undefined means any valid token.
 */
@Injectable()
export class ScopesGuard implements CanActivate {
  private readonly verifier: BearerTokenVerifier;

  constructor(
    @Inject(ORIGIN_CONFIG) config: OriginConfig,
    private readonly reflector: Reflector,
  ) {
    this.verifier = new BearerTokenVerifier(config.tokens);
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const token = this.verifier.identify(request.headers.authorization);
    if (token === null) {
      throw cdnError('CDN_ERR_UNAUTHORIZED');
    }
    const scope = this.reflector.getAllAndOverride<Scope | undefined>(REQUIRED_SCOPE, [context.getHandler(), context.getClass()]);
    if (scope !== undefined && !hasScope(token, scope)) {
      throw cdnError('CDN_ERR_FORBIDDEN', `this route needs the "${scope}" scope`);
    }
    request.apiToken = token;
    return true;
  }
}

/** Marks a route as needing a bearer token, with `scope` when given. */
export function RequireToken(scope?: Scope): MethodDecorator & ClassDecorator {
  return applyDecorators(
    SetMetadata(REQUIRED_SCOPE, scope),
    UseGuards(ScopesGuard),
    ApiBearerAuth(),
    ApiUnauthorizedResponse({ description: 'CDN_ERR_UNAUTHORIZED: missing or unknown token' }),
    ApiForbiddenResponse({ description: `CDN_ERR_FORBIDDEN: the token lacks the ${scope ?? 'required'} scope` }),
  );
}
