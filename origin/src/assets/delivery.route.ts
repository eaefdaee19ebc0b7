import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { replyWithError } from '../common/cdn-exception.filter';
import { rawKeyFromUrl } from '../../contract/asset-key';
import type { ReadRequest } from './asset-requests';
import type { DeliveryService } from './delivery.service';

/**
 * GET and HEAD /{key}: the route every edge miss takes, registered on Fastify directly
 * rather than through a Nest controller. Nest's per-request machinery (execution
 * context, param decorators, pipes, interceptors) cost about a fifth of the throughput
 * of a 100 KiB read in bench/origin-get.mjs, and this route needs none of it: no auth,
 * no body. It stays as thin as a controller: headers in, DeliveryService, reply out;
 * errors take the same path as everywhere else (replyWithError).
 *
 * HEAD is explicit (the app turns Fastify's automatic HEAD routes off): the automatic
 * one would open the file only to drain it, and would replace Content-Length with 0.
 */
/** The delivery route's pattern: the only route the delivery listener serves. */
export const DELIVERY_ROUTE = '/*';

export function registerDeliveryRoute(fastify: FastifyInstance, delivery: DeliveryService): void {
  fastify.route({
    method: ['GET', 'HEAD'],
    url: DELIVERY_ROUTE,
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        const response = await delivery.deliver(rawKeyFromUrl(request.raw.url ?? '', '/'), readRequestOf(request));
        return await reply.code(response.status).headers(response.headers).send(response.body);
      } catch (err) {
        replyWithError(err, request, reply);
        return reply;
      }
    },
  });
}

function readRequestOf(request: FastifyRequest): ReadRequest {
  const headers = request.headers;
  const one = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value.join(', ') : value);
  return {
    method: request.method,
    ifNoneMatch: one(headers['if-none-match']),
    ifModifiedSince: one(headers['if-modified-since']),
    range: one(headers.range),
    ifRange: one(headers['if-range']),
    query: queryOf(request.raw.url ?? ''),
    accept: one(headers.accept),
  };
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q + 1);
}
