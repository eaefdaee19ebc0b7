import { Inject, Injectable } from '@nestjs/common';
import { cdnError } from '../../../infra/model/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { RedisConnection } from '../redis/redis-connection';
import { RedisKeys } from '../redis/redis-keys';

/**
 * tag -> asset keys, in Redis sorted sets (score 0, so members sort by key and pages
 * are exact with ZRANGE BYLEX). The edges index tags themselves for what they cache;
 * this index answers "which assets carry tag X" for the API and purge status.
 */
@Injectable()
export class TagIndexService {
  private readonly keys: RedisKeys;

  constructor(
    @Inject(ORIGIN_CONFIG) config: OriginConfig,
    private readonly redis: RedisConnection,
  ) {
    this.keys = new RedisKeys(config.purge.stream);
  }

  /** Moves `key` from the tags it had to the tags it has, in one transaction. */
  async update(key: string, before: readonly string[], after: readonly string[]): Promise<void> {
    const removed = before.filter((tag) => !after.includes(tag));
    if (removed.length === 0 && after.length === 0) {
      return;
    }
    const transaction = this.redis.client.multi();
    for (const tag of removed) {
      transaction.zrem(this.keys.tag(tag), key);
    }
    for (const tag of after) {
      transaction.zadd(this.keys.tag(tag), 0, key);
    }
    await this.run('the tag index was not updated', () => transaction.exec());
  }

  /** Keys carrying `tag`, in key order, after `after` (exclusive). */
  async keysWithTag(tag: string, after: string | null, limit: number): Promise<{ keys: string[]; more: boolean }> {
    const start = after === null ? '-' : `(${after}`;
    const keys = await this.run('the tag index could not be read', () =>
      this.redis.client.zrangebylex(this.keys.tag(tag), start, '+', 'LIMIT', 0, limit + 1),
    );
    return { keys: keys.slice(0, limit), more: keys.length > limit };
  }

  /** How many assets carry any of `tags` (for purge status; counted per tag, summed). */
  async countKeys(tags: readonly string[]): Promise<number> {
    if (tags.length === 0) {
      return 0;
    }
    const pipeline = this.redis.client.pipeline();
    for (const tag of tags) {
      pipeline.zcard(this.keys.tag(tag));
    }
    const results = await this.run('the tag index could not be read', () => pipeline.exec());
    return (results ?? []).reduce((sum, [, count]) => sum + (typeof count === 'number' ? count : 0), 0);
  }

  private async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', what, { cause: err });
    }
  }
}
