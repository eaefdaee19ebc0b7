import 'reflect-metadata';
import { CdnError } from '../../infra/model/errors';
import { createOriginApp } from './app';
import { loadOriginConfig } from './config/origin-config';
import { listenForDelivery } from './delivery-listener';
import { HealthService } from './health/health.service';

/** Longest wait for in-flight requests (uploads) on SIGTERM/SIGINT before giving up. */
const SHUTDOWN_TIMEOUT_MS = 15_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadOriginConfig();
  } catch (err) {
    if (err instanceof CdnError) {
      process.stderr.write(`${err.code}: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    throw err;
  }

  const { app, log } = await createOriginApp(config);
  const exit = (code: number): never => {
    // The log destination is buffered: write out what is pending before leaving.
    log.flush();
    process.exit(code);
  };
  await app.listen(config.apiPort, config.host);
  const delivery = await listenForDelivery(app.getHttpServer(), config.port, config.host);
  const where = config.storage.kind === 'filesystem' ? config.storage.path : `${config.storage.endpoint}/${config.storage.bucket}`;
  const hostInUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  log.info(
    { context: 'Origin', storage: config.storage.kind, edges: config.purge.edgeIds },
    `delivery on http://${hostInUrl}:${config.port}, API on http://${hostInUrl}:${config.apiPort} ` +
      `(storage ${config.storage.kind} at ${where}, public base ${config.publicBaseUrl})`,
  );

  let closing = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) {
      log.warn({ context: 'Origin' }, `${signal} again: exiting now`);
      exit(1);
    }
    closing = true;
    // readyz answers 503 from now on; Fastify answers new requests on kept-alive
    // connections with 503 while in-flight ones (uploads) finish.
    app.get(HealthService).startDraining();
    log.info({ context: 'Origin' }, `${signal}: closing (waiting for in-flight requests)`);
    const timer = setTimeout(() => {
      log.error({ context: 'Origin' }, `shutdown took longer than ${SHUTDOWN_TIMEOUT_MS} ms: exiting`);
      exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    // no new connections from the edges; the app's close waits for the open ones
    delivery.close();
    app.close().then(
      () => {
        log.info({ context: 'Origin' }, 'closed');
        exit(0);
      },
      (err: unknown) => {
        log.error({ context: 'Origin' }, `close failed: ${(err as Error).message}`);
        exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  process.stderr.write(`origin failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
