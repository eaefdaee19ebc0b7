import { DynamicModule, Global, Module, type LoggerService } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import pino, { type DestinationStream, type Logger } from 'pino';

/** The pino logger shared by Nest's logs, the access log and the purge audit lines. */
export const PINO = Symbol('PINO');

export type OriginLog = Logger;

/**
 * JSON lines: `{"level":"info","time":"...","service":"cdn-origin","msg":...}`. Writes are
 * buffered (sync: false) so logging never blocks the event loop on a slow stdout;
 * main.ts flushes on exit.
 */
export function createOriginLog(level: string, destination?: DestinationStream): OriginLog {
  return pino(
    {
      level,
      base: { service: 'cdn-origin' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Belt and braces: nothing logs headers, but if a future line does, no secret leaves.
      redact: { paths: ['authorization', '*.authorization', 'headers.authorization', 'token', '*.token'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }),
  );
}

/** Nest's Logger calls, as pino lines with the Nest context as `context`. */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly pino: OriginLog) {}

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }

  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }

  error(message: unknown, ...params: unknown[]): void {
    // Nest passes (message, stack?, context?).
    const context = typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    const stack = typeof params[0] === 'string' ? params[0] : undefined;
    this.pino.error({ context, stack }, String(message));
  }

  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }

  verbose(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }

  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }

  private write(level: 'info' | 'warn' | 'debug' | 'fatal', message: unknown, params: unknown[]): void {
    const context = typeof params[params.length - 1] === 'string' ? (params[params.length - 1] as string) : undefined;
    this.pino[level]({ context }, typeof message === 'string' ? message : JSON.stringify(message));
  }
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * The request id: the balancer's X-Request-Id (the edge forwards it) when it is sane,
 * else a new one, so every log line of a request can be joined across the hops.
 */
export function requestIdOf(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && REQUEST_ID.test(value) ? value : randomUUID();
}

@Global()
@Module({})
export class LoggingModule {
  static forRoot(log: OriginLog): DynamicModule {
    return { module: LoggingModule, providers: [{ provide: PINO, useValue: log }], exports: [PINO] };
  }
}
