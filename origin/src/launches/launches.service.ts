import { BeforeApplicationShutdown, Inject, Injectable, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { cdnError } from '../../../infra/model/errors';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PINO, type OriginLog } from '../logging/origin-logger';
import { purgeGuardProblem } from '../purge/purge-request';
import { PurgeService } from '../purge/purge.service';
import { RedisConnection } from '../redis/redis-connection';
import { RedisKeys } from '../redis/redis-keys';
import { WarmService } from '../warm/warm.service';
import { parseLaunchRequest, type LaunchCreator, type LaunchPlan } from './launch-request';

/** How often each origin process looks for due steps. */
export const LAUNCH_POLL_MS = 250;
/**
 * Steps due before the next poll get a timer of their own for their exact time, so a
 * purge goes out within milliseconds of `at` rather than up to a poll late.
 */
const LOOKAHEAD_MS = LAUNCH_POLL_MS + 100;
/** A launch's record is kept this long after its time (listed as recent until then). */
const RETENTION_MS = 7 * 86400_000;
const MAX_LISTED = 500;
/** Steps run at once per poll; more wait for the next one. */
const MAX_DUE_PER_POLL = 100;
/** How long a shutdown waits for steps this process is running (a purge's one script). */
const SHUTDOWN_WAIT_MS = 2000;

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type LaunchStatus = 'scheduled' | 'warming' | 'purged' | 'done' | 'cancelled' | 'failed';

/** A launch as the API shows it: the plan, and what happened so far. Times are ISO-8601. */
export interface Launch {
  readonly id: string;
  /**
   * scheduled: nothing ran yet; warming: the warm started, the purge is ahead; purged:
   * the purge went out, the warm still runs; done: every step ran; cancelled; failed:
   * a step could not run (warmError, purgeError say why; the other step still runs).
   */
  readonly status: LaunchStatus;
  readonly at: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly warm: LaunchPlan['warm'];
  readonly warmLeadSeconds: number | null;
  /** When the warm step is due. */
  readonly warmAt: string | null;
  readonly warmStartedAt: string | null;
  /** The origin process that ran the warm (host:pid). */
  readonly warmStartedBy: string | null;
  /** The warming job: GET /v1/warm/{warmId}. */
  readonly warmId: string | null;
  readonly warmFinishedAt: string | null;
  readonly warmResult: { readonly total: number; readonly warmed: number; readonly failed: number } | null;
  readonly warmError: string | null;
  /** Warms started again elsewhere because the origin process running them shut down. */
  readonly warmInterruptions: number;
  readonly purge: { readonly urls: readonly string[]; readonly prefixes: readonly string[]; readonly tags: readonly string[]; readonly soft: boolean } | null;
  /** The purge: GET /v1/purge/{purgeId}. */
  readonly purgeId: string | null;
  readonly purgedAt: string | null;
  /** How long after `at` the purge went on the stream, in ms. */
  readonly purgeLateMs: number | null;
  /** The origin process that published the purge (host:pid). */
  readonly purgedBy: string | null;
  readonly purgeError: string | null;
  readonly cancelledAt: string | null;
  readonly cancelledBy: string | null;
}

export interface LaunchList {
  /** Not cancelled, and the purge (or without one, the warm) not run yet: soonest first. */
  readonly upcoming: Launch[];
  /** The rest of the last 7 days, latest first. */
  readonly recent: Launch[];
}

/** Who acts on a launch through the API, for the record and the audit line. */
export interface LaunchActor extends LaunchCreator {
  readonly requestId: string;
}

/** Claims a warm step: only the process whose ZREM removes it runs it; `warmRun` tells its later writes apart from a rerun's. */
const CLAIM_WARM_SCRIPT = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], 'warmId', 'warmTotal', 'warmFinishedAt', 'warmWarmed', 'warmFailed', 'warmError')
redis.call('HSET', KEYS[2], 'warmRun', ARGV[4], 'warmStartedAt', ARGV[2], 'warmStartedBy', ARGV[3])
return 1
`;

/** Facts of a warm, written only while it is still the launch's current run. */
const WARM_FACTS_SCRIPT = `
if redis.call('HGET', KEYS[1], 'warmRun') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
`;

/** A warm cut short by its process's shutdown goes back to the due steps, unless the launch was cancelled. */
const REQUEUE_WARM_SCRIPT = `
if redis.call('HGET', KEYS[2], 'warmRun') ~= ARGV[1] or redis.call('HEXISTS', KEYS[2], 'warmFinishedAt') == 1 or redis.call('HEXISTS', KEYS[2], 'cancelledAt') == 1 then
  return 0
end
redis.call('HDEL', KEYS[2], 'warmRun', 'warmStartedAt', 'warmStartedBy', 'warmId', 'warmTotal')
redis.call('HINCRBY', KEYS[2], 'warmInterruptions', 1)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
`;

/** Claims a step that cannot run and records why. */
const FAIL_STEP_SCRIPT = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`;

/**
 * Cancels while the purge has not been claimed: removing its step is the claim, so a
 * cancel and the purge cannot both win. Without a purge, the warm step is the one.
 */
const CANCEL_SCRIPT = `
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 'missing'
end
if redis.call('HEXISTS', KEYS[2], 'cancelledAt') == 1 then
  return 'cancelled'
end
if ARGV[2] == '1' then
  if redis.call('ZREM', KEYS[1], ARGV[1] .. ':purge') == 0 then
    return 'late'
  end
  redis.call('ZREM', KEYS[1], ARGV[1] .. ':warm')
elseif redis.call('ZREM', KEYS[1], ARGV[1] .. ':warm') == 0 then
  return 'late'
end
redis.call('HSET', KEYS[2], 'cancelledAt', ARGV[3], 'cancelledBy', ARGV[4])
return 'cancelled'
`;

/**
 * Scheduled launches (docs/operations.md): a warm ahead of a time and a purge at it.
 * Everything lives in Redis: the launch's hash (its plan, as JSON, and one field per
 * fact of its run), its id in a sorted set by time (the listing), and its steps in a
 * sorted set of due steps. Every origin process polls the due steps and races for them;
 * a step runs in the process whose ZREM removes it, in a Lua script (for the purge, the
 * same script that publishes it), so a launch runs once however many origins there
 * are, and survives any of them restarting.
 */
@Injectable()
export class LaunchesService implements OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly keys: RedisKeys;
  /** Names this process in the record (which origin ran a step). */
  private readonly self = `${hostname()}:${process.pid}`;
  private poller: NodeJS.Timeout | undefined;
  private polling = false;
  private stopped = false;
  /** Steps with a timer for their exact time, or running now. */
  private readonly armed = new Map<string, NodeJS.Timeout | null>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Warms this process started and that have not finished: launch id -> run. */
  private readonly warming = new Map<string, string>();
  private lastPollError: string | undefined;

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(PINO) private readonly log: OriginLog,
    private readonly redis: RedisConnection,
    private readonly purges: PurgeService,
    private readonly warm: WarmService,
  ) {
    this.keys = new RedisKeys(config.purge.stream);
  }

  onApplicationBootstrap(): void {
    this.poller = setInterval(() => void this.poll(), LAUNCH_POLL_MS);
    // a timer must not keep a process alive that has nothing else to do
    this.poller.unref();
    void this.poll();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearInterval(this.poller);
    for (const timer of this.armed.values()) clearTimeout(timer ?? undefined);
  }

  /** Before Redis closes: lets running steps finish, and hands unfinished warms to the other origins. */
  async beforeApplicationShutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => (timer = setTimeout(r, SHUTDOWN_WAIT_MS)))]);
    clearTimeout(timer);
    for (const [id, run] of this.warming) {
      try {
        const requeued = await this.redis.client.eval(REQUEUE_WARM_SCRIPT, 2, this.keys.launchesDue, this.keys.launch(id), run, String(Date.now()), `${id}:warm`);
        if (requeued === 1) this.audit('warm-requeued', id, {}, 'launch warm handed back: this origin process is stopping');
        this.warming.delete(id);
      } catch (err) {
        this.log.warn({ launchId: id, err: (err as Error).message }, 'launch warm cut short and not handed back');
      }
    }
  }

  async create(body: unknown, actor: LaunchActor): Promise<Launch> {
    const now = Date.now();
    const plan = parseLaunchRequest(body, actor, this.config, randomUUID(), now);
    const key = this.keys.launch(plan.id);
    const tx = this.redis.client
      .multi()
      .hset(key, 'launch', JSON.stringify(plan), 'createdAt', String(now))
      .pexpire(key, plan.at - now + RETENTION_MS)
      .zadd(this.keys.launches, plan.at, plan.id);
    if (plan.warmAt !== null) tx.zadd(this.keys.launchesDue, plan.warmAt, `${plan.id}:warm`);
    if (plan.purge !== null) tx.zadd(this.keys.launchesDue, plan.at, `${plan.id}:purge`);
    try {
      const results = await tx.exec();
      const failed = results?.find(([err]) => err !== null);
      if (results === null || failed) throw failed?.[0] ?? new Error('transaction aborted');
    } catch (err) {
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the launch was not scheduled; retry later', { cause: err });
    }
    this.audit('created', plan.id, {
      tokenName: actor.name,
      req_id: actor.requestId,
      at: new Date(plan.at).toISOString(),
      warmAt: plan.warmAt === null ? null : new Date(plan.warmAt).toISOString(),
      warm: plan.warm,
      purge: plan.purge,
    }, 'launch scheduled');
    // a warm due at once starts now, not at the next poll
    if (plan.warmAt !== null && plan.warmAt <= Date.now()) void this.poll();
    return this.get(plan.id);
  }

  async get(id: string): Promise<Launch> {
    if (!ID.test(id)) throw cdnError('CDN_ERR_LAUNCH_NOT_FOUND', `no launch ${JSON.stringify(id.slice(0, 64))}`);
    const fields = await this.bus(() => this.redis.client.hgetall(this.keys.launch(id)));
    if (fields.launch === undefined) throw cdnError('CDN_ERR_LAUNCH_NOT_FOUND', `no launch ${id} (unknown, or more than 7 days past)`);
    return launchOf(fields);
  }

  async list(): Promise<LaunchList> {
    const now = Date.now();
    const client = this.redis.client;
    const [upcomingIds, recentIds] = await this.bus(async () => {
      await client.zremrangebyscore(this.keys.launches, '-inf', now - RETENTION_MS);
      return Promise.all([
        client.zrangebyscore(this.keys.launches, now, '+inf', 'LIMIT', 0, MAX_LISTED),
        client.zrevrangebyscore(this.keys.launches, now, now - RETENTION_MS, 'LIMIT', 0, MAX_LISTED),
      ]);
    });
    const ids = [...new Set([...upcomingIds, ...recentIds])];
    const records = await this.bus(async () => {
      const pipeline = client.pipeline();
      for (const id of ids) pipeline.hgetall(this.keys.launch(id));
      return (await pipeline.exec()) ?? [];
    });
    const launches = records.flatMap(([, fields]) => {
      const f = fields as Record<string, string> | null;
      return f?.launch === undefined ? [] : [launchOf(f)];
    });
    // upcoming: its purge (or, without one, its warm) has still to run
    const pending = (l: Launch) =>
      l.cancelledAt === null && (l.purge !== null ? l.purgedAt === null && l.purgeError === null : l.warmStartedAt === null);
    return {
      upcoming: launches.filter(pending).sort((a, b) => a.at.localeCompare(b.at)),
      recent: launches.filter((l) => !pending(l)).sort((a, b) => b.at.localeCompare(a.at)),
    };
  }

  /** DELETE: cancels a launch whose purge has not gone out (a warm already running finishes: warming is harmless). */
  async cancel(id: string, actor: LaunchActor): Promise<Launch> {
    const launch = await this.get(id);
    const outcome = (await this.bus(() =>
      this.redis.client.eval(CANCEL_SCRIPT, 2, this.keys.launchesDue, this.keys.launch(id), id, launch.purge === null ? '0' : '1', String(Date.now()), actor.name),
    )) as string;
    if (outcome === 'missing') throw cdnError('CDN_ERR_LAUNCH_NOT_FOUND', `no launch ${id} (unknown, or more than 7 days past)`);
    const after = await this.get(id);
    if (outcome === 'late') {
      const why =
        after.purgedAt !== null
          ? `its purge went out at ${after.purgedAt}`
          : after.purgeError !== null
            ? `its purge failed: ${after.purgeError}`
            : after.purge === null
              ? `its warm started at ${after.warmStartedAt}`
              : 'its purge is going out now';
      throw cdnError('CDN_ERR_LAUNCH_NOT_CANCELLABLE', `launch ${id} is ${after.status}: ${why}`);
    }
    if (launch.status !== 'cancelled') this.audit('cancelled', id, { tokenName: actor.name, req_id: actor.requestId }, 'launch cancelled');
    return after;
  }

  /** Redis failures of the API's calls are 503, as for purges. */
  private async bus<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'launches are kept in Redis, which did not answer; retry later', { cause: err });
    }
  }

  /** Looks for due steps (and those due before the next poll, which get a timer for their time). */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      const due = await this.redis.client.zrangebyscore(this.keys.launchesDue, '-inf', Date.now() + LOOKAHEAD_MS, 'WITHSCORES', 'LIMIT', 0, MAX_DUE_PER_POLL);
      this.lastPollError = undefined;
      for (let i = 0; i < due.length; i += 2) {
        const step = due[i];
        if (this.armed.has(step) || this.stopped) continue;
        const delay = Number(due[i + 1]) - Date.now();
        if (delay <= 0) {
          this.run(step);
        } else {
          const timer = setTimeout(() => this.run(step), delay);
          timer.unref();
          this.armed.set(step, timer);
        }
      }
    } catch (err) {
      // Redis away: every poll fails alike; say it once, and again when it changes
      const message = (err as Error).message;
      if (message !== this.lastPollError) {
        this.lastPollError = message;
        this.log.warn({ context: 'Launches', err: message }, 'cannot read the due launch steps; retrying');
      }
    } finally {
      this.polling = false;
    }
  }

  private run(step: string): void {
    if (this.stopped) return;
    this.armed.set(step, null);
    const [id, kind] = step.split(':');
    const work = (kind === 'purge' ? this.runPurge(id, step) : this.runWarm(id, step))
      .catch((err: unknown) => {
        // the step is still due (nothing claimed it): the next poll tries again
        this.log.warn({ context: 'Launches', launchId: id, step: kind, err: (err as Error).message }, 'launch step not run; retrying');
      })
      .finally(() => {
        this.armed.delete(step);
        this.inFlight.delete(work);
      });
    this.inFlight.add(work);
  }

  private async plan(id: string): Promise<LaunchPlan | null> {
    const text = await this.redis.client.hget(this.keys.launch(id), 'launch');
    return text === null ? null : (JSON.parse(text) as LaunchPlan);
  }

  private async runPurge(id: string, step: string): Promise<void> {
    const plan = await this.plan(id);
    if (plan?.purge == null) {
      // expired with its record (or never had a purge): nothing to run
      await this.redis.client.zrem(this.keys.launchesDue, step);
      return;
    }
    // The guards again, with today's protected tags: a tag protected since the launch
    // was scheduled by a token without the admin scope is not purged by it.
    const problem = purgeGuardProblem(plan.purge, plan.admin, this.config.purge.protectedTags);
    if (problem !== undefined) {
      const claimed = await this.redis.client.eval(FAIL_STEP_SCRIPT, 2, this.keys.launchesDue, this.keys.launch(id), step, 'purgeError', problem.reason);
      if (claimed === 1) this.audit('purge-failed', id, { tokenName: plan.createdBy, reason: problem.reason }, 'launch purge refused', 'warn');
      return;
    }
    const message = await this.purges.publishClaimed(
      plan.purge,
      { token: plan.createdBy, requestId: `launch:${id}` },
      {
        key: this.keys.launchesDue,
        member: step,
        record: {
          key: this.keys.launch(id),
          fields: (m) => ({ purgeId: m.id, purgedAt: String(m.at), purgeLateMs: String(m.at - plan.at), purgedBy: this.self }),
        },
      },
    );
    if (message !== null) {
      this.audit('purged', id, { tokenName: plan.createdBy, purgeId: message.id, at: new Date(plan.at).toISOString(), lateMs: message.at - plan.at }, 'launch purge published');
    }
  }

  private async runWarm(id: string, step: string): Promise<void> {
    const run = randomUUID();
    const claimed = await this.redis.client.eval(CLAIM_WARM_SCRIPT, 2, this.keys.launchesDue, this.keys.launch(id), step, String(Date.now()), this.self, run);
    if (claimed !== 1) return;
    const facts = (fields: Record<string, string>) =>
      this.redis.client.eval(WARM_FACTS_SCRIPT, 1, this.keys.launch(id), run, ...Object.entries(fields).flat());
    const plan = await this.plan(id);
    if (plan?.warm == null) return;
    let job: Awaited<ReturnType<WarmService['start']>>;
    try {
      job = await this.warm.start(plan.warm);
    } catch (err) {
      // nothing to warm (yet), Redis or storage away: the purge still goes out at its time
      const reason = (err as Error).message;
      await facts({ warmError: reason });
      this.audit('warm-failed', id, { tokenName: plan.createdBy, reason }, 'launch warm not started', 'warn');
      return;
    }
    this.warming.set(id, run);
    await facts({ warmId: job.id, warmTotal: String(job.total) });
    this.audit('warm-started', id, { tokenName: plan.createdBy, warmId: job.id, total: job.total, at: new Date(plan.at).toISOString() }, 'launch warm started');
    void job.done
      .then(async (progress) => {
        if (this.warming.get(id) !== run) return;
        this.warming.delete(id);
        const recorded = await facts({ warmFinishedAt: String(Date.now()), warmWarmed: String(progress.warmed), warmFailed: String(progress.failed) });
        if (recorded === 1) this.audit('warm-done', id, { warmId: job.id, warmed: progress.warmed, failed: progress.failed }, 'launch warm done');
      })
      .catch((err: unknown) => this.log.warn({ context: 'Launches', launchId: id, err: (err as Error).message }, 'launch warm result not recorded'));
  }

  /** One JSON line per event of a launch (shipped to Loki with the purge audit lines). */
  private audit(event: string, id: string, fields: Record<string, unknown>, msg: string, level: 'info' | 'warn' = 'info'): void {
    this.log[level]({ audit: 'launch', event, launchId: id, origin: this.self, ...fields }, msg);
  }
}

function iso(ms: string | undefined): string | null {
  return ms === undefined ? null : new Date(Number(ms)).toISOString();
}

function launchOf(f: Record<string, string>): Launch {
  const plan = JSON.parse(f.launch) as LaunchPlan;
  const warmFinished = f.warmFinishedAt !== undefined;
  const purged = f.purgedAt !== undefined;
  const status: LaunchStatus =
    f.cancelledAt !== undefined
      ? 'cancelled'
      : f.warmError !== undefined || f.purgeError !== undefined
        ? 'failed'
        : (plan.purge === null || purged) && (plan.warm === null || warmFinished)
          ? 'done'
          : purged
            ? 'purged'
            : f.warmStartedAt !== undefined
              ? 'warming'
              : 'scheduled';
  return {
    id: plan.id,
    status,
    at: new Date(plan.at).toISOString(),
    createdAt: new Date(plan.createdAt).toISOString(),
    createdBy: plan.createdBy,
    warm: plan.warm,
    warmLeadSeconds: plan.warmLeadSeconds,
    warmAt: plan.warmAt === null ? null : new Date(plan.warmAt).toISOString(),
    warmStartedAt: iso(f.warmStartedAt),
    warmStartedBy: f.warmStartedBy ?? null,
    warmId: f.warmId ?? null,
    warmFinishedAt: iso(f.warmFinishedAt),
    warmResult: warmFinished ? { total: Number(f.warmTotal), warmed: Number(f.warmWarmed), failed: Number(f.warmFailed) } : null,
    warmError: f.warmError ?? null,
    warmInterruptions: Number(f.warmInterruptions ?? 0),
    purge: plan.purge === null ? null : { urls: plan.purge.urls, prefixes: plan.purge.prefixes, tags: plan.purge.tags, soft: plan.purge.soft === true },
    purgeId: f.purgeId ?? null,
    purgedAt: iso(f.purgedAt),
    purgeLateMs: f.purgeLateMs === undefined ? null : Number(f.purgeLateMs),
    purgedBy: f.purgedBy ?? null,
    purgeError: f.purgeError ?? null,
    cancelledAt: iso(f.cancelledAt),
    cancelledBy: f.cancelledBy ?? null,
  };
}
