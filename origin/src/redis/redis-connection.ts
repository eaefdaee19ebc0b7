import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import Redis from 'ioredis';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';

/** How long the boot waits for a first connection before starting without Redis. */
const INITIAL_CONNECT_WAIT_MS = 2_000;
/** Upper bound for any single command, so a stalled Redis cannot hang a request. */
const COMMAND_TIMEOUT_MS = 2_000;
const MAX_RECONNECT_DELAY_MS = 2_000;

/**
 * The origin's one Redis client. It fails fast when Redis is away (no offline queue, one
 * retry per command, a command timeout) so that callers can answer 503 instead of
 * hanging, and it keeps reconnecting in the background.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Redis');
  readonly client: Redis;
  private readonly target: string;
  private lastError: string | undefined;

  constructor(@Inject(ORIGIN_CONFIG) config: OriginConfig) {
    const url = new URL(config.redis.url.reveal());
    // Logged form of the address: never the credentials.
    this.target = `${url.protocol}//${url.hostname}:${url.port || '6379'}`;
    this.client = new Redis(config.redis.url.reveal(), {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      // ioredis arms this timer on disconnect() even for a socket that is already gone
      // (Redis down): keep it short so a shutdown does not linger for the 2 s default.
      disconnectTimeout: 500,
      // CDN_REDIS_PASSWORD_FILE wins over a password in the URL.
      ...(config.redis.password === null ? {} : { password: config.redis.password.reveal() }),
    });
    this.client.on('ready', () => {
      this.logger.log(`connected to ${this.target}`);
      this.lastError = undefined;
    });
    this.client.on('error', (err: Error) => {
      // ioredis reports every failed reconnect: log each distinct failure once.
      if (err.message !== this.lastError) {
        this.lastError = err.message;
        this.logger.warn(`${this.target}: ${err.message}`);
      }
    });
  }

  async onModuleInit(): Promise<void> {
    let onReady: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    const ready = new Promise<void>((resolve) => {
      onReady = resolve;
      this.client.once('ready', resolve);
      timer = setTimeout(resolve, INITIAL_CONNECT_WAIT_MS);
    });
    this.client.connect().catch(() => {
      // Reported through the 'error' event; the client keeps retrying.
    });
    await ready;
    clearTimeout(timer);
    if (onReady) {
      this.client.off('ready', onReady);
    }
    if (this.client.status !== 'ready') {
      this.logger.warn(`not connected to ${this.target} yet; starting anyway (readyz reports it)`);
    }
  }

  /** PING, for readiness. Throws when Redis does not answer. */
  async ping(): Promise<void> {
    const answer = await this.client.ping();
    if (answer !== 'PONG') {
      throw new Error(`unexpected PING answer ${JSON.stringify(answer)}`);
    }
  }

  /** After the HTTP server has drained (Nest calls this hook last on close). */
  async onApplicationShutdown(): Promise<void> {
    if (this.client.status === 'end') {
      return;
    }
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
        return;
      } catch {
        // fall through to a hard disconnect
      }
    }
    this.client.disconnect();
  }
}
