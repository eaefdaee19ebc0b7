import 'reflect-metadata';
import { type LoggerService, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { FastifyHttpOptions, FastifyReply } from 'fastify';
import type { Server } from 'node:http';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { DestinationStream } from 'pino';
import { OriginModule } from './app.module';
import { registerDeliveryRoute } from './assets/delivery.route';
import { restrictDeliveryConnections } from './delivery-listener';
import { DeliveryService } from './assets/delivery.service';
import { CdnExceptionFilter } from './common/cdn-exception.filter';
import { toErrorResponse } from './common/error-response';
import { registerStreamingBodyParser } from './common/request-body';
import type { OriginConfig } from './config/origin-config';
import { registerOpenApiDocs } from './docs/openapi';
import { createOriginLog, PinoNestLogger, requestIdOf, type OriginLog } from './logging/origin-logger';
import { registerHttpMetrics } from './metrics/http-metrics';
import { MetricsService } from './metrics/metrics.service';

export interface CreateOriginAppOptions {
  /** Nest's own log lines; default: through `log`. */
  readonly logger?: LoggerService | LogLevel[] | false;
  /** Where the JSON log lines (access, audit, Nest) go; default: stdout, buffered. */
  readonly logDestination?: DestinationStream;
}

export interface OriginApp {
  readonly app: NestFastifyApplication;
  readonly log: OriginLog;
}

/**
 * Builds the origin (initialised, not listening). main.ts and the tests share it:
 * `const { app } = await createOriginApp(config); await app.listen(config.port, config.host)`.
 */
export async function createOriginApp(config: OriginConfig, options: CreateOriginAppOptions = {}): Promise<OriginApp> {
  const log = createOriginLog(config.logLevel, options.logDestination);
  const fastifyOptions: FastifyHttpOptions<Server> = {
    logger: false,
    // A request, its body included, that takes longer is answered 408 and cut off.
    requestTimeout: config.requestTimeoutMs,
    // The balancer's X-Request-Id (forwarded by the edge), or a fresh one.
    genReqId: (request) => requestIdOf(request.headers['x-request-id']),
    // HEAD routes are declared where they make sense (assets, healthz); see DeliveryController.
    exposeHeadRoutes: false,
    // Errors Fastify raises before routing (undecodable URL, ...) get our JSON shape too.
    frameworkErrors: (error, _request, reply) => {
      const response = toErrorResponse(error);
      void (reply as unknown as FastifyReply)
        .code(response.status)
        .header('Cache-Control', 'no-store')
        .send(response.body);
    },
  };
  const adapter = new FastifyAdapter(fastifyOptions);
  const fastify = adapter.getInstance();
  registerStreamingBodyParser(fastify);
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  restrictDeliveryConnections(fastify);

  const app = await NestFactory.create<NestFastifyApplication>(OriginModule.forRoot(config, log), adapter, {
    bodyParser: false,
    abortOnError: false,
    logger: options.logger ?? new PinoNestLogger(log),
  });
  app.useGlobalFilters(new CdnExceptionFilter());
  registerHttpMetrics(fastify, app.get(MetricsService), log);
  registerOpenApiDocs(app, fastify);
  registerDeliveryRoute(fastify, app.get(DeliveryService));
  await app.init();
  return { app, log };
}
