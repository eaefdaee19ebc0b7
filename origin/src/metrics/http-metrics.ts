import type { FastifyInstance } from 'fastify';
import type { OriginLog } from '../logging/origin-logger';
import { MetricsService, UNMATCHED_ROUTE } from './metrics.service';

/**
 * Counts, times and logs every response. The route label is Fastify's route template
 * ("/v1/assets/*", "/*"), never the requested path, so asset keys cannot blow up the
 * label cardinality; the access log line has the path (logs are not metrics).
 */
export function registerHttpMetrics(fastify: FastifyInstance, metrics: MetricsService, log: OriginLog): void {
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions?.url ?? UNMATCHED_ROUTE;
    const seconds = reply.elapsedTime / 1000;
    const bytesIn = Number(request.headers['content-length']) || 0;
    const bytesOut = Number(reply.getHeader('content-length')) || 0;
    metrics.observeHttp(route, request.method, reply.statusCode, seconds, bytesIn, bytesOut);
    log.info(
      {
        req_id: request.id,
        method: request.method,
        path: request.url,
        route,
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 100) / 100,
        bytesIn,
        bytesOut,
        tokenName: request.apiToken?.name,
      },
      'request',
    );
    done();
  });
}
