import { Inject, Injectable } from '@nestjs/common';
import { STORAGE_DRIVER, type StorageDriver } from '../assets/storage/storage-driver';
import { RedisConnection } from '../redis/redis-connection';

export type CheckResult = { readonly status: 'ok' } | { readonly status: 'fail'; readonly error: string };

export interface Readiness {
  readonly status: 'ok' | 'unavailable';
  /** True once shutdown began: balancers stop sending while in-flight requests finish. */
  readonly draining: boolean;
  readonly checks: { readonly redis: CheckResult; readonly storage: CheckResult };
}

/**
 * Liveness says the process answers; readiness says it can do its job: Redis answers
 * PING (purges can be published) and the storage is usable.
 */
@Injectable()
export class HealthService {
  private draining = false;
  constructor(
    private readonly redis: RedisConnection,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
  ) {}

  async readiness(): Promise<Readiness> {
    const [redis, storage] = await Promise.all([
      run(() => this.redis.ping()),
      run(() => this.storage.check()),
    ]);
    const ok = !this.draining && redis.status === 'ok' && storage.status === 'ok';
    return { status: ok ? 'ok' : 'unavailable', draining: this.draining, checks: { redis, storage } };
  }

  /** main.ts calls this on SIGTERM, before closing the server. */
  startDraining(): void {
    this.draining = true;
  }
}

async function run(check: () => Promise<void>): Promise<CheckResult> {
  try {
    await check();
    return { status: 'ok' };
  } catch (err) {
    // Operators read this on an internal port; the message names what failed, no stack.
    const error = err as NodeJS.ErrnoException;
    return { status: 'fail', error: error.code ? `${error.code}: ${error.message}` : String(error.message ?? err) };
  }
}
