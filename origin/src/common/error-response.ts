import { HttpException } from '@nestjs/common';
import { CdnError, Errors, type CdnErrorDefinition } from '../../../infra/model/errors';

/**
 * Maps anything thrown while handling a request to the wire shape
 * `{"error": code, "message": msg}` and a status. Only CdnErrors and framework client
 * errors (4xx) pass their message through; everything else becomes a bare 500 so that
 * internals (paths, stack traces, driver messages) never reach the client.
 */

const MEDIA_TYPE_HINT = 'Content-Type must be a media type such as image/png';

export interface ErrorBody {
  readonly error: string;
  readonly message: string;
}

export interface ErrorResponse {
  readonly status: number;
  readonly body: ErrorBody;
  /** True when the error was not anticipated and should be logged with its stack. */
  readonly unexpected: boolean;
}

export function errorBody(def: CdnErrorDefinition, detail?: string): ErrorBody {
  return { error: def.code, message: detail ? `${def.message}: ${detail}` : def.message };
}

export function toErrorResponse(err: unknown): ErrorResponse {
  if (err instanceof CdnError) {
    // Catalogue entries without an HTTP status (start-up and CLI errors) are not meant for HTTP.
    if (err.httpStatus !== undefined) {
      return { status: err.httpStatus, body: { error: err.code, message: err.message }, unexpected: false };
    }
    return internal();
  }

  if (err instanceof HttpException) {
    const status = err.getStatus();
    if (status === 404) {
      return { status, body: errorBody(Errors.CDN_ERR_ROUTE_NOT_FOUND, err.message), unexpected: false };
    }
    // Nest re-wraps Fastify's errors as HttpException(message, status), dropping the FST_
    // code: 415 is Fastify refusing a malformed Content-Type before our handlers run.
    if (status === 415) {
      return { status: 400, body: errorBody(Errors.CDN_ERR_HEADER_INVALID, MEDIA_TYPE_HINT), unexpected: false };
    }
    if (status === 413) {
      return { status, body: errorBody(Errors.CDN_ERR_BODY_TOO_LARGE), unexpected: false };
    }
    if (status >= 400 && status < 500) {
      return { status, body: errorBody(Errors.CDN_ERR_REQUEST_INVALID, err.message), unexpected: false };
    }
    return internal();
  }

  // Fastify's own errors (bad URL, malformed request, ...) carry a FST_* code and a status.
  const fastifyError = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (
    typeof fastifyError?.code === 'string' &&
    fastifyError.code.startsWith('FST_') &&
    typeof fastifyError.statusCode === 'number' &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    const message = String(fastifyError.message);
    if (fastifyError.statusCode === 413) {
      return { status: 413, body: errorBody(Errors.CDN_ERR_BODY_TOO_LARGE), unexpected: false };
    }
    if (fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      // Fastify parses Content-Type before routing reaches us; a malformed one is a bad header.
      return {
        status: 400,
        body: errorBody(Errors.CDN_ERR_HEADER_INVALID, MEDIA_TYPE_HINT),
        unexpected: false,
      };
    }
    if (fastifyError.code === 'FST_ERR_BAD_URL') {
      // Only asset keys are parametric, so a URL the router cannot decode is a bad key.
      return { status: 400, body: errorBody(Errors.CDN_ERR_KEY_INVALID, 'malformed percent-encoding'), unexpected: false };
    }
    return { status: fastifyError.statusCode, body: errorBody(Errors.CDN_ERR_REQUEST_INVALID, message), unexpected: false };
  }

  return internal();
}

function internal(): ErrorResponse {
  return { status: 500, body: errorBody(Errors.CDN_ERR_INTERNAL), unexpected: true };
}
