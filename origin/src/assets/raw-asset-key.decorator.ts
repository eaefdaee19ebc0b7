import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { rawKeyFromUrl } from '../../contract/asset-key';

/**
 * The undecoded key of the request (the raw URL path after `prefix`), or null when the
 * URL does not have that shape. Validation is the service's job (checkAssetKey).
 */
export const RawAssetKey = createParamDecorator((prefix: string, context: ExecutionContext): string | null => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  return rawKeyFromUrl(request.raw.url ?? '', prefix);
});
