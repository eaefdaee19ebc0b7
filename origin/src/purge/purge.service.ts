import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { cdnError } from '../../../infra/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { MetricsService } from '../metrics/metrics.service';
import { RedisConnection } from '../redis/redis-connection';
import { parsePurgeRequest, type PurgeRequest } from './purge-request';

/**
 * One purge as it travels on the stream. The edges parse exactly this JSON, stored in
 * the field "purge" of each entry; all three lists are always present.
 */
export interface PurgeMessage {
  readonly id: string;
  readonly urls: readonly string[];
  readonly prefixes: readonly string[];
  readonly tags: readonly string[];
  /** Epoch milliseconds at publication. */
  readonly at: number;
}

export const PURGE_STREAM_FIELD = 'purge';

/**
 * Publishes purges to the invalidation stream:
 * `XADD <stream> MAXLEN ~ <maxLen> * purge <json>`. A purge is acknowledged only once
 * Redis has accepted it; when Redis is away the caller gets CDN_ERR_BUS_UNAVAILABLE.
 */
@Injectable()
export class PurgeService {
  private readonly logger = new Logger('PurgeService');

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    private readonly redis: RedisConnection,
    private readonly metrics: MetricsService,
  ) {}

  /** POST /v1/purge: checks the body, then publishes it. */
  async purgeFromApi(body: unknown): Promise<{ id: string }> {
    const message = await this.publish(parsePurgeRequest(body));
    return { id: message.id };
  }

  async publish(request: PurgeRequest): Promise<PurgeMessage> {
    const message: PurgeMessage = {
      id: randomUUID(),
      urls: [...request.urls],
      prefixes: [...request.prefixes],
      tags: [...request.tags],
      at: Date.now(),
    };
    const { stream, maxLen } = this.config.purge;
    try {
      await this.redis.client.xadd(stream, 'MAXLEN', '~', String(maxLen), '*', PURGE_STREAM_FIELD, JSON.stringify(message));
    } catch (err) {
      this.metrics.purgePublishFailed();
      this.logger.warn(`purge ${message.id} not published: ${(err as Error).message}`);
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge was not published; retry later', { cause: err });
    }
    this.metrics.purgePublished();
    return message;
  }
}
