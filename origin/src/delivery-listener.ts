import type { FastifyInstance } from 'fastify';
import * as net from 'node:net';
import type { Server } from 'node:http';
import { Errors } from '../../infra/model/errors';
import { DELIVERY_ROUTE } from './assets/delivery.route';
import { errorBody } from './common/error-response';

/**
 * The origin listens twice: the API listener (app.listen) serves everything, for
 * operators and monitoring; the delivery listener, the only one the edges reach,
 * serves GET and HEAD of assets and nothing else. Both feed one HTTP server, so one
 * app answers; connections accepted on the delivery listener are marked, and a
 * request on one that any other route would answer gets 404 before its body is read,
 * and the connection is closed (so a large unauthenticated upload sent through the
 * CDN is not read at all).
 */
const FROM_DELIVERY = Symbol('cdn.deliveryListener');

type MarkedSocket = net.Socket & { [FROM_DELIVERY]?: true };

/** Refuses every route but delivery on connections from the delivery listener (register before listening). */
export function restrictDeliveryConnections(fastify: FastifyInstance): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    if ((request.raw.socket as MarkedSocket)[FROM_DELIVERY] && (request.routeOptions.url !== DELIVERY_ROUTE || !['GET', 'HEAD'].includes(request.method))) {
      void reply
        .code(404)
        .header('connection', 'close')
        .header('cache-control', 'no-store')
        .send(errorBody(Errors.CDN_ERR_ROUTE_NOT_FOUND, 'the API is not served on the delivery port'));
      return;
    }
    done();
  });
}

/** Opens the delivery listener on `port`, feeding the app's HTTP server. */
export function listenForDelivery(server: Server, port: number, host: string): Promise<net.Server> {
  const listener = net.createServer((socket: MarkedSocket) => {
    socket[FROM_DELIVERY] = true;
    server.emit('connection', socket);
  });
  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => {
      listener.off('error', reject);
      resolve(listener);
    });
  });
}
