import { Inject, Injectable } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { cdnError } from '../../../infra/model/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PINO, type OriginLog } from '../logging/origin-logger';
import { MetricsService, type PurgeSource } from '../metrics/metrics.service';
import { RedisConnection } from '../redis/redis-connection';
import { compareStreamIds, RedisKeys } from '../redis/redis-keys';
import { PurgeStatusService } from './purge-status.service';
import { parsePurgeRequest, purgeGuardProblem, type PurgeRequest } from './purge-request';

/**
 * One purge as it travels on the stream. The edges parse exactly this JSON, stored in
 * the field "purge" of each entry; all three lists are always present. `soft` appears
 * only on soft purges (an edge that does not know it purges hard, which is safe).
 */
export interface PurgeMessage {
  readonly id: string;
  readonly urls: readonly string[];
  readonly prefixes: readonly string[];
  readonly tags: readonly string[];
  /** Epoch milliseconds at publication. */
  readonly at: number;
  readonly soft?: true;
  /** Revoked download tokens (by id) and paths whose tokens issued before `at` are revoked. */
  readonly revoke?: DownloadRevocation;
}

export interface DownloadRevocation {
  readonly tokens: readonly string[];
  readonly keys: readonly string[];
}

export const PURGE_STREAM_FIELD = 'purge';

/** Who asked, for the audit line (a token name, never the token). */
export interface PurgeActor {
  readonly token: string;
  readonly requestId: string;
}

export interface PurgeAccepted {
  readonly id: string;
  /** True when an identical purge still on its way to every edge was reused. */
  readonly deduplicated: boolean;
}

/**
 * XADD and the purge's status record in one atomic step, so a purge id the API hands
 * out always has a record, and a record always names a published entry.
 */
const PUBLISH_SCRIPT = `
local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'purge', ARGV[2])
redis.call('HSET', KEYS[2], 'streamId', sid, 'at', ARGV[3], 'source', ARGV[4], 'message', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if ARGV[6] ~= '0' then
  redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[6])
end
return sid
`;

/**
 * PUBLISH_SCRIPT for a scheduled purge (a launch's), made conditional on its claim: the
 * entry goes on the stream only when this call removes the step from the sorted set of
 * due steps (ZREM returns 1), and the launch's record gets the purge's id and time in
 * the same step. Of several origin processes racing for the step exactly one publishes,
 * and none can die between claiming it and publishing it. Returns false when another
 * process had it.
 */
const CLAIMED_PUBLISH_SCRIPT = `
if redis.call('ZREM', KEYS[3], ARGV[6]) == 0 then
  return false
end
local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'purge', ARGV[2])
redis.call('HSET', KEYS[2], 'streamId', sid, 'at', ARGV[3], 'source', ARGV[4], 'message', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if #ARGV > 6 then
  redis.call('HSET', KEYS[4], unpack(ARGV, 7))
end
return sid
`;

/** A due step in a sorted set, claimed by removing it, and the record told about the purge. */
export interface PurgeClaim {
  readonly key: string;
  readonly member: string;
  /** A hash that gets these fields with the publication (e.g. the purge's id and time). */
  readonly record: { readonly key: string; readonly fields: (message: PurgeMessage) => Record<string, string> };
}

/**
 * Publishes purges to the invalidation stream:
 * `XADD <stream> MAXLEN ~ <maxLen> * purge <json>`. A purge is acknowledged only once
 * Redis has accepted it; when Redis is away the caller gets CDN_ERR_BUS_UNAVAILABLE
 * (503), never a 2xx for a purge that is not on the stream.
 *
 * API purges are also rate-limited per token (429) and deduplicated: an identical
 * purge (same lists, same softness) published within the window and not yet applied
 * by any edge is still ahead of every edge, so it covers the new request too and its
 * id is returned instead of a new entry. Purges from asset writes are never merged or
 * limited: they follow a storage change.
 */
@Injectable()
export class PurgeService {
  private readonly keys: RedisKeys;

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(PINO) private readonly log: OriginLog,
    private readonly redis: RedisConnection,
    private readonly metrics: MetricsService,
    private readonly status: PurgeStatusService,
  ) {
    this.keys = new RedisKeys(config.purge.stream);
  }

  /**
   * POST /v1/purge: checks the body, the guards (purgeGuardProblem: `admin` is whether the
   * token holds the admin scope), the rate, merges duplicates, publishes, audits.
   */
  async purgeFromApi(body: unknown, actor: PurgeActor, admin: boolean): Promise<PurgeAccepted> {
    const request = parsePurgeRequest(body);
    const problem = purgeGuardProblem(request, admin, this.config.purge.protectedTags);
    if (problem !== undefined) {
      throw problem.kind === 'forbidden'
        ? cdnError('CDN_ERR_FORBIDDEN', problem.reason, { details: problem.tag !== undefined ? { tag: problem.tag } : undefined })
        : cdnError('CDN_ERR_PURGE_INVALID', problem.reason, { details: { field: problem.field } });
    }
    await this.enforceRateLimit(actor.token);
    const fingerprint = fingerprintOf(request);
    const duplicate = await this.findPendingDuplicate(fingerprint);
    if (duplicate !== null) {
      this.metrics.countPurge('api', 'deduplicated');
      this.audit(duplicate, request, actor, 'api', true);
      return { id: duplicate, deduplicated: true };
    }
    const message = await this.publish(request, 'api', actor, fingerprint);
    return { id: message.id, deduplicated: false };
  }

  /** Publishes without limits (asset writes), or for the API after its checks; audits it. */
  async publish(request: PurgeRequest, source: PurgeSource, actor: PurgeActor, fingerprint?: string): Promise<PurgeMessage> {
    const message = messageOf(request);
    const { stream, maxLen, statusTtlSeconds, dedupWindowMs } = this.config.purge;
    const dedupKey = fingerprint === undefined ? this.keys.dedup('none') : this.keys.dedup(fingerprint);
    const window = fingerprint === undefined ? 0 : dedupWindowMs;
    let streamId: string;
    try {
      streamId = (await this.redis.client.eval(
        PUBLISH_SCRIPT,
        3,
        stream,
        this.keys.purge(message.id),
        dedupKey,
        String(maxLen),
        JSON.stringify(message),
        String(message.at),
        source,
        String(statusTtlSeconds),
        String(window),
        message.id,
      )) as string;
    } catch (err) {
      this.metrics.countPurge(source, 'failed');
      this.log.warn({ purgeId: message.id, err: (err as Error).message }, 'purge not published');
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge was not published; retry later', { cause: err });
    }
    this.published(message, streamId, request, source, actor);
    return message;
  }

  /**
   * Publishes a scheduled purge once: only if this call claims it (see
   * CLAIMED_PUBLISH_SCRIPT). The caller has checked it (body and guards) already; it is
   * neither rate-limited nor merged (it is due now, and one per launch). Null when
   * another origin process claimed it; CDN_ERR_BUS_UNAVAILABLE when Redis did not
   * answer (then the step may still be due: the caller retries).
   */
  async publishClaimed(request: PurgeRequest, actor: PurgeActor, claim: PurgeClaim): Promise<PurgeMessage | null> {
    const message = messageOf(request);
    const { stream, maxLen, statusTtlSeconds } = this.config.purge;
    const fields = Object.entries(claim.record.fields(message)).flat();
    let streamId: string | null;
    try {
      streamId = (await this.redis.client.eval(
        CLAIMED_PUBLISH_SCRIPT,
        4,
        stream,
        this.keys.purge(message.id),
        claim.key,
        claim.record.key,
        String(maxLen),
        JSON.stringify(message),
        String(message.at),
        'api',
        String(statusTtlSeconds),
        claim.member,
        ...fields,
      )) as string | null;
    } catch (err) {
      this.metrics.countPurge('api', 'failed');
      this.log.warn({ purgeId: message.id, err: (err as Error).message }, 'scheduled purge not published');
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge was not published; retry later', { cause: err });
    }
    if (streamId === null) {
      return null;
    }
    this.published(message, streamId, request, 'api', actor);
    return message;
  }

  private published(message: PurgeMessage, streamId: string, request: PurgeRequest, source: PurgeSource, actor: PurgeActor): void {
    this.metrics.countPurge(source, 'published');
    this.status.track(message.id, streamId);
    this.audit(message.id, request, actor, source, false);
  }

  /** Fixed one-second windows per token, shared by every origin through Redis. */
  private async enforceRateLimit(token: string): Promise<void> {
    const second = Math.floor(Date.now() / 1000);
    const key = this.keys.rate(token, second);
    let count: number;
    try {
      const results = await this.redis.client.multi().incr(key).expire(key, 2).exec();
      count = Number(results?.[0]?.[1]);
    } catch (err) {
      this.metrics.countPurge('api', 'failed');
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge was not published; retry later', { cause: err });
    }
    if (count > this.config.purge.ratePerSecond) {
      this.metrics.countPurge('api', 'rate_limited');
      throw cdnError('CDN_ERR_RATE_LIMITED', `at most ${this.config.purge.ratePerSecond} purges per second per token; retry after 1 s`, {
        details: { retryAfterSeconds: 1 },
      });
    }
  }

  /** The id of an identical purge that no edge has applied yet, if any. */
  private async findPendingDuplicate(fingerprint: string): Promise<string | null> {
    if (this.config.purge.dedupWindowMs === 0) {
      return null;
    }
    try {
      const id = await this.redis.client.get(this.keys.dedup(fingerprint));
      if (id === null) {
        return null;
      }
      const [streamId, applied] = await Promise.all([
        this.redis.client.hget(this.keys.purge(id), 'streamId'),
        this.redis.client.hgetall(this.keys.applied),
      ]);
      if (streamId === null) {
        return null;
      }
      const edges = this.config.purge.edgeIds.length > 0 ? this.config.purge.edgeIds : Object.keys(applied);
      const reachedAnEdge = edges.some((edge) => applied[edge] !== undefined && compareStreamIds(applied[edge], streamId) >= 0);
      return reachedAnEdge ? null : id;
    } catch (err) {
      this.metrics.countPurge('api', 'failed');
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the purge was not published; retry later', { cause: err });
    }
  }

  /** One JSON line per accepted purge (shipped to Loki with the other logs). */
  private audit(id: string, request: PurgeRequest, actor: PurgeActor, source: PurgeSource, deduplicated: boolean): void {
    this.log.info(
      {
        audit: 'purge',
        purgeId: id,
        source,
        tokenName: actor.token,
        req_id: actor.requestId,
        urls: request.urls,
        prefixes: request.prefixes,
        tags: request.tags,
        soft: request.soft === true,
        ...(request.revoke !== undefined ? { revoke: request.revoke } : {}),
        deduplicated,
      },
      'purge accepted',
    );
  }
}

function messageOf(request: PurgeRequest): PurgeMessage {
  return {
    id: randomUUID(),
    urls: [...request.urls],
    prefixes: [...request.prefixes],
    tags: [...request.tags],
    at: Date.now(),
    ...(request.soft === true ? { soft: true as const } : {}),
    ...(request.revoke !== undefined ? { revoke: request.revoke } : {}),
  };
}

function fingerprintOf(request: PurgeRequest): string {
  const canonical = JSON.stringify([
    [...request.urls].sort(),
    [...request.prefixes].sort(),
    [...request.tags].sort(),
    request.soft === true,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}
