import 'reflect-metadata';
import { type LoggerService, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { FastifyHttpOptions, FastifyReply } from 'fastify';
import type { Server } from 'node:http';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { OriginModule } from './app.module';
import { CdnExceptionFilter } from './common/cdn-exception.filter';
import { toErrorResponse } from './common/error-response';
import { registerStreamingBodyParser } from './common/request-body';
import type { OriginConfig } from './config/origin-config';
import { registerHttpMetrics } from './metrics/http-metrics';
import { MetricsService } from './metrics/metrics.service';

export interface CreateOriginAppOptions {
  /** Nest logger; false silences it (tests). */
  readonly logger?: LoggerService | LogLevel[] | false;
}

/**
 * Builds the origin (initialised, not listening). main.ts and the tests share it:
 * `const app = await createOriginApp(config); await app.listen(config.port, config.host)`.
 */
export async function createOriginApp(
  config: OriginConfig,
  options: CreateOriginAppOptions = {},
): Promise<NestFastifyApplication> {
  const fastifyOptions: FastifyHttpOptions<Server> = {
    logger: false,
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

  const app = await NestFactory.create<NestFastifyApplication>(OriginModule.forRoot(config), adapter, {
    bodyParser: false,
    abortOnError: false,
    logger: options.logger ?? ['log', 'warn', 'error'],
  });
  app.useGlobalFilters(new CdnExceptionFilter());
  registerHttpMetrics(fastify, app.get(MetricsService));
  await app.init();
  return app;
}
