import { createParamDecorator, ExecutionContext, Injectable, PipeTransform } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { readJsonBody } from './request-body';

/** Small JSON bodies only (admin API): 1 MiB. */
export const DEFAULT_JSON_BODY_LIMIT = 1024 * 1024;

const CurrentRequest = createParamDecorator((_data: unknown, context: ExecutionContext): FastifyRequest => {
  return context.switchToHttp().getRequest<FastifyRequest>();
});

@Injectable()
class JsonBodyPipe implements PipeTransform<FastifyRequest, Promise<unknown>> {
  constructor(private readonly limit: number) {}

  transform(request: FastifyRequest): Promise<unknown> {
    return readJsonBody(request, this.limit);
  }
}

/**
 * The parsed JSON body (bounded; see readJsonBody). Bodies reach handlers as raw streams
 * (registerStreamingBodyParser), so routes that take JSON say so with this decorator.
 */
export const JsonBody = (limit = DEFAULT_JSON_BODY_LIMIT): ParameterDecorator =>
  CurrentRequest(undefined, new JsonBodyPipe(limit));
