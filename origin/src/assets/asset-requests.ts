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
  /** Hex sha256 of the body (our header). */
  readonly contentSha256: string | undefined;
  /** Base64 sha256 of the body (the S3 header, accepted too). */
  readonly amzChecksumSha256: string | undefined;
  /** Base64 MD5 of the body (RFC 1864). */
  readonly contentMd5: string | undefined;
  readonly body: Readable;
  /** Token name and request id, for the audit line of the purge that follows. */
  readonly actor: { readonly token: string; readonly requestId: string };
}

function headerOf(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

export const Upload = createParamDecorator((_data: unknown, context: ExecutionContext): UploadRequest => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  return {
    contentType: headerOf(request, 'content-type'),
    cacheControl: headerOf(request, 'cache-control'),
    surrogateKey: headerOf(request, 'surrogate-key'),
    contentLength: headerOf(request, 'content-length'),
    contentSha256: headerOf(request, 'content-sha256'),
    amzChecksumSha256: headerOf(request, 'x-amz-checksum-sha256'),
    contentMd5: headerOf(request, 'content-md5'),
    body: bodyStream(request),
    actor: { token: request.apiToken?.name ?? 'unknown', requestId: request.id },
  };
});

/** Who is writing (DELETE has no body, only the actor). */
export const Actor = createParamDecorator((_data: unknown, context: ExecutionContext) => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  return { token: request.apiToken?.name ?? 'unknown', requestId: request.id };
});

/** Conditional and range headers of GET/HEAD /{key}. */
export interface ReadRequest {
  readonly method: string;
  readonly ifNoneMatch: string | undefined;
  readonly ifModifiedSince: string | undefined;
  readonly range: string | undefined;
  readonly ifRange: string | undefined;
  /** The raw query string (without "?"): image variant parameters (docs/images.md). */
  readonly query: string;
  readonly accept: string | undefined;
}
