import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CdnError } from '../../../infra/model/errors';
import { toErrorResponse } from './error-response';

/**
 * The one global exception filter: every error becomes `{"error", "message"}` with its
 * status (see toErrorResponse). Unexpected errors are logged here with their stack and
 * answered with a bare 500.
 */
@Catch()
export class CdnExceptionFilter implements ExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    replyWithError(exception, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>());
  }
}

const logger = new Logger('CdnExceptionFilter');

/** The filter's work, also used by routes registered on Fastify directly (delivery). */
export function replyWithError(exception: unknown, request: FastifyRequest | undefined, reply: FastifyReply): void {
  {
    const response = toErrorResponse(exception);

    const route = request?.routeOptions?.url ?? 'unmatched';
    if (response.unexpected) {
      logger.error(
        `unexpected error on ${request?.method ?? '?'} ${route} (request ${request?.id ?? '?'}): ${describe(exception)}`,
        exception instanceof Error ? exception.stack : undefined,
      );
    } else if (response.status >= 500) {
      // A dependency failed (storage, Redis): the client got the code, the log gets the cause.
      const cause = exception instanceof Error && exception.cause !== undefined ? ` (cause: ${describe(exception.cause)})` : '';
      logger.warn(`${request?.method ?? '?'} ${route}: ${describe(exception)}${cause}`);
    }

    if (reply.sent || reply.raw.headersSent) {
      // The body was already streaming (e.g. a read error mid-file): all we can do is
      // cut the connection so that the client sees a truncated response, not a short one.
      reply.raw.destroy();
      return;
    }

    // A body not read to its end (a refused or oversized upload) is not drained
    // to keep the connection: it is closed once the answer is out.
    if (response.status === 413 || (request !== undefined && !request.raw.complete)) {
      void reply.header('Connection', 'close');
    }
    if (response.status === 401) {
      void reply.header('WWW-Authenticate', 'Bearer realm="cdn-origin"');
    }
    if (exception instanceof CdnError && typeof exception.details?.retryAfterSeconds === 'number') {
      void reply.header('Retry-After', String(exception.details.retryAfterSeconds));
    }
    if (exception instanceof CdnError && typeof exception.details?.contentRange === 'string') {
      // 416 names the current length (RFC 9110 15.5.17).
      void reply.header('Content-Range', exception.details.contentRange);
    }
    void reply
      .code(response.status)
      .header('Content-Type', 'application/json; charset=utf-8')
      .header('Cache-Control', 'no-store')
      .send(response.body);
  }
}

function describe(exception: unknown): string {
  if (exception instanceof Error) {
    return `${exception.name}: ${exception.message}`;
  }
  return String(exception);
}
