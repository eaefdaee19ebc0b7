import 'reflect-metadata';
import { ConsoleLogger, Logger } from '@nestjs/common';
import { CdnError } from '../../infra/errors';
import { createOriginApp } from './app';
import { loadOriginConfig } from './config/origin-config';

/** Longest wait for in-flight requests on SIGTERM/SIGINT before giving up. */
const SHUTDOWN_TIMEOUT_MS = 15_000;

async function main(): Promise<void> {
  const logger = new Logger('Origin');
  let config;
  try {
    config = loadOriginConfig();
  } catch (err) {
    if (err instanceof CdnError) {
      process.stderr.write(`${err.code}: ${err.message}\n`);
      process.exit(err.status >= 1 && err.status < 100 ? err.status : 1);
    }
    throw err;
  }

  // Colours only on a terminal: under a supervisor the log is a file (or Loki).
  const app = await createOriginApp(config, {
    logger: new ConsoleLogger({ prefix: 'cdn-origin', colors: Boolean(process.stdout.isTTY) }),
  });
  await app.listen(config.port, config.host);
  logger.log(
    `listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port} ` +
      `(storage ${config.storage.kind} at ${config.storage.path}, public base ${config.publicBaseUrl})`,
  );

  let closing = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    closing = true;
    logger.log(`${signal}: closing (waiting for in-flight requests)`);
    const timer = setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_TIMEOUT_MS} ms: exiting`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    app.close().then(
      () => {
        logger.log('closed');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error(`close failed: ${(err as Error).message}`);
        process.exit(1);
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
