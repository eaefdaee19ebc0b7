import type { FastifyInstance } from 'fastify';
import { MetricsService, UNMATCHED_ROUTE } from './metrics.service';

/**
 * Counts and times every response. The route label is Fastify's route template
 * ("/v1/assets/*", "/*"), never the requested path, so asset keys cannot blow up the
 * label cardinality.
 */
export function registerHttpMetrics(fastify: FastifyInstance, metrics: MetricsService): void {
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions?.url ?? UNMATCHED_ROUTE;
    metrics.observeHttp(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
}
