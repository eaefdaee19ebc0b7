import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { bodyStream } from '../common/request-body';

/** What PUT /v1/assets/{key} hands to the service: the headers that matter and the stream. */
export interface UploadRequest {
  readonly contentType: string | undefined;
  readonly cacheControl: string | undefined;
  readonly surrogateKey: string | undefined;
  readonly contentLength: string | undefined;
  readonly body: Readable;
}

export const Upload = createParamDecorator((_data: unknown, context: ExecutionContext): UploadRequest => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  const header = (name: string): string | undefined => {
    const value = request.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
  return {
    contentType: header('content-type'),
    cacheControl: header('cache-control'),
    surrogateKey: header('surrogate-key'),
    contentLength: header('content-length'),
    body: bodyStream(request),
  };
});

/** Conditional-request headers of GET/HEAD /{key}. */
export interface ReadRequest {
  readonly method: string;
  readonly ifNoneMatch: string | undefined;
  readonly ifModifiedSince: string | undefined;
}

export const Read = createParamDecorator((_data: unknown, context: ExecutionContext): ReadRequest => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  const header = (name: string): string | undefined => {
    const value = request.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
  return {
    method: request.method,
    ifNoneMatch: header('if-none-match'),
    ifModifiedSince: header('if-modified-since'),
  };
});
