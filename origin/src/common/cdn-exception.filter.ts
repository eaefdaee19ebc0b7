import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toErrorResponse } from './error-response';

/**
 * The one global exception filter: every error becomes `{"error", "message"}` with its
 * status (see toErrorResponse). Unexpected errors are logged here with their stack and
 * answered with a bare 500.
 */
@Catch()
export class CdnExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('CdnExceptionFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<FastifyReply>();
    const request = http.getRequest<FastifyRequest>();
    const response = toErrorResponse(exception);

    const route = request?.routeOptions?.url ?? 'unmatched';
    if (response.unexpected) {
      this.logger.error(
        `unexpected error on ${request?.method ?? '?'} ${route}: ${describe(exception)}`,
        exception instanceof Error ? exception.stack : undefined,
      );
    } else if (response.status >= 500) {
      // A dependency failed (storage, Redis): the client got the code, the log gets the cause.
      const cause = exception instanceof Error && exception.cause !== undefined ? ` (cause: ${describe(exception.cause)})` : '';
      this.logger.warn(`${request?.method ?? '?'} ${route}: ${describe(exception)}${cause}`);
    }

    if (reply.sent || reply.raw.headersSent) {
      // The body was already streaming (e.g. a read error mid-file): all we can do is
      // cut the connection so that the client sees a truncated response, not a short one.
      reply.raw.destroy();
      return;
    }

    if (response.status === 401) {
      void reply.header('WWW-Authenticate', 'Bearer realm="cdn-origin"');
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
