import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { cdnError } from '../../../infra/model/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { RedisConnection } from '../redis/redis-connection';
import { compareStreamIds, RedisKeys } from '../redis/redis-keys';
import { TagIndexService } from '../tags/tag-index.service';

/** How often the origin looks at the edges' acknowledgements while purges are pending. */
export const ACK_POLL_INTERVAL_MS = 200;
/** A purge not complete after this long stops being watched (GET still reports it). */
const WATCH_LIMIT_MS = 10 * 60 * 1000;
const MAX_WATCHED = 10_000;
const PURGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export interface EdgePurgeStatus {
  readonly id: string;
  readonly applied: boolean;
  /** When the origin first saw the edge's acknowledgement (ISO), at most one poll late. */
  readonly appliedAt: string | null;
  /** The last stream id the edge acknowledged (any purge), or null if it never did. */
  readonly lastAppliedId: string | null;
}

export interface PurgeStatus {
  readonly id: string;
  readonly streamId: string;
  readonly requestedAt: string;
  readonly source: string;
  readonly urls: readonly string[];
  readonly prefixes: readonly string[];
  readonly tags: readonly string[];
  readonly soft: boolean;
  /** Assets the origin's tag index has under the purged tags (now, not at purge time). */
  readonly taggedAssets: number;
  readonly complete: boolean;
  readonly edges: readonly EdgePurgeStatus[];
}

/**
 * Which edges applied a purge, and when. An edge acknowledges with
 * `HSET <stream>:applied <edge> <last applied stream id>`; a purge with stream id S is
 * applied by an edge once that id >= S. Edges do not say when, so the origin watches
 * the acknowledgements of its pending purges every ACK_POLL_INTERVAL_MS and records the
 * first time it sees each edge pass S (HSETNX: with several origins the earliest wins).
 */
@Injectable()
export class PurgeStatusService implements OnModuleInit, OnApplicationShutdown {
  private readonly keys: RedisKeys;
  private readonly watched = new Map<string, { streamId: string; since: number }>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    private readonly redis: RedisConnection,
    private readonly tagIndex: TagIndexService,
  ) {
    this.keys = new RedisKeys(config.purge.stream);
  }

  onModuleInit(): void {
    this.timer = setInterval(() => void this.poll(), ACK_POLL_INTERVAL_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Called for every published purge. */
  track(id: string, streamId: string): void {
    if (this.watched.size >= MAX_WATCHED) {
      // Oldest first (Map keeps insertion order).
      this.watched.delete(this.watched.keys().next().value as string);
    }
    this.watched.set(id, { streamId, since: Date.now() });
  }

  async status(id: string): Promise<PurgeStatus> {
    if (!PURGE_ID.test(id)) {
      throw cdnError('CDN_ERR_PURGE_NOT_FOUND', 'purge ids are UUIDs as returned by POST /v1/purge');
    }
    let record: Record<string, string>;
    let applied: Record<string, string>;
    let seen: Record<string, string>;
    try {
      [record, applied, seen] = await Promise.all([
        this.redis.client.hgetall(this.keys.purge(id)),
        this.redis.client.hgetall(this.keys.applied),
        this.redis.client.hgetall(this.keys.purgeEdges(id)),
      ]);
    } catch (err) {
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge status could not be read', { cause: err });
    }
    if (record.streamId === undefined) {
      throw cdnError('CDN_ERR_PURGE_NOT_FOUND', `${id} (records are kept ${this.config.purge.statusTtlSeconds} s)`);
    }
    const streamId = record.streamId;
    const now = Date.now();
    const edges = this.edgeIds(applied).map((edge): EdgePurgeStatus => {
      const lastAppliedId = applied[edge] ?? null;
      const isApplied = lastAppliedId !== null && compareStreamIds(lastAppliedId, streamId) >= 0;
      const seenAt = seen[edge] !== undefined ? Number(seen[edge]) : isApplied ? now : null;
      return { id: edge, applied: isApplied, appliedAt: isApplied && seenAt !== null ? new Date(seenAt).toISOString() : null, lastAppliedId };
    });
    const newlySeen = edges.filter((edge) => edge.applied && seen[edge.id] === undefined);
    if (newlySeen.length > 0) {
      await this.recordSeen(id, newlySeen.map((edge) => edge.id), now).catch(() => undefined);
    }
    const message = parseMessage(record.message);
    return {
      id,
      streamId,
      requestedAt: new Date(Number(record.at)).toISOString(),
      source: record.source ?? 'api',
      urls: message.urls,
      prefixes: message.prefixes,
      tags: message.tags,
      soft: message.soft,
      taggedAssets: await this.tagIndex.countKeys(message.tags).catch(() => 0),
      complete: edges.length > 0 && edges.every((edge) => edge.applied),
      edges,
    };
  }

  /** Configured edges (CDN_EDGE_IDS), or every edge that ever acknowledged when none are. */
  private edgeIds(applied: Record<string, string>): string[] {
    return this.config.purge.edgeIds.length > 0 ? [...this.config.purge.edgeIds] : Object.keys(applied).sort();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.watched.size === 0 || this.redis.client.status !== 'ready') {
      return;
    }
    this.polling = true;
    try {
      const applied = await this.redis.client.hgetall(this.keys.applied);
      const edges = this.edgeIds(applied);
      const now = Date.now();
      for (const [id, purge] of this.watched) {
        const done = edges.filter((edge) => applied[edge] !== undefined && compareStreamIds(applied[edge], purge.streamId) >= 0);
        if (done.length > 0) {
          await this.recordSeen(id, done, now);
        }
        if ((edges.length > 0 && done.length === edges.length) || now - purge.since > WATCH_LIMIT_MS) {
          this.watched.delete(id);
        }
      }
    } catch {
      // Redis away: the next poll tries again; GET /v1/purge/{id} reports 503 meanwhile.
    } finally {
      this.polling = false;
    }
  }

  private async recordSeen(id: string, edges: readonly string[], at: number): Promise<void> {
    const key = this.keys.purgeEdges(id);
    const pipeline = this.redis.client.pipeline();
    for (const edge of edges) {
      pipeline.hsetnx(key, edge, String(at));
    }
    pipeline.expire(key, this.config.purge.statusTtlSeconds);
    await pipeline.exec();
  }
}

function parseMessage(text: string | undefined): { urls: string[]; prefixes: string[]; tags: string[]; soft: boolean } {
  try {
    const m = JSON.parse(text ?? '{}') as { urls?: string[]; prefixes?: string[]; tags?: string[]; soft?: boolean };
    return { urls: m.urls ?? [], prefixes: m.prefixes ?? [], tags: m.tags ?? [], soft: m.soft === true };
  } catch {
    return { urls: [], prefixes: [], tags: [], soft: false };
  }
}
