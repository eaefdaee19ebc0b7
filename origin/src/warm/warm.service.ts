import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { z } from 'zod';
import { cdnError } from '../../../infra/model/errors';
import { checkAssetKey } from '../../contract/asset-key';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PINO, type OriginLog } from '../logging/origin-logger';
import { RedisConnection } from '../redis/redis-connection';
import { RedisKeys } from '../redis/redis-keys';
import { STORAGE_DRIVER, type AssetMetadata, type StorageDriver } from '../assets/storage/storage-driver';
import { TagIndexService } from '../tags/tag-index.service';
import { VariantsService } from '../images/variants.service';
import { checkTag } from '../common/surrogate-keys';
import { normalisePurgeUrl } from '../purge/purge-request';

/** Objects one job may warm (each in every region, image variants counted apart). */
export const MAX_WARM_OBJECTS = 10000;
const JOB_TTL_SECONDS = 86400;
const MAX_FAILURES_KEPT = 100;
const REQUEST_TIMEOUT_MS = 30000;

/** What an image is warmed as besides its original: each srcset width, for each Accept class. */
const IMAGE_ACCEPTS = ['image/avif,image/webp,*/*', 'image/webp,*/*', '*/*'];

export const warmBodySchema = z.strictObject(
  {
    urls: z.array(z.string()).max(MAX_WARM_OBJECTS).optional(),
    prefixes: z.array(z.string().regex(/^\/[A-Za-z0-9._~/-]*\/$/, 'must be path prefixes starting and ending with /')).max(100).optional(),
    tags: z.array(z.string()).max(100).optional(),
    regions: z.array(z.string()).optional(),
    /** Image variants too (every configured width up to the image's, for AVIF, WebP and other browsers); default true. */
    variants: z.boolean().optional(),
  },
  { error: 'the body must be a JSON object' },
);
export type WarmBody = z.output<typeof warmBodySchema>;

export interface WarmProgress {
  readonly id: string;
  status: 'running' | 'done';
  readonly createdAt: string;
  finishedAt: string | null;
  readonly regions: readonly string[];
  /** Requests to make: objects (and variants) x regions. */
  readonly total: number;
  warmed: number;
  failed: number;
  /** Per edge (as its Cache-Status names it): warmed and failed. */
  edges: Record<string, { warmed: number; failed: number }>;
  /** The first failures: what, where, why. */
  failures: { url: string; region: string; reason: string }[];
}

interface WarmRequest {
  readonly path: string;
  readonly accept?: string;
}

/**
 * Cache warming (docs/operations.md): every object of the job is requested once per
 * region through the balancer's internal /warm/ route, which sends it to the edge the
 * ring picks for it in that region (its home edge), so the first shopper there gets
 * a HIT. Bounded by its own concurrency and rate (spec warming), apart from shoppers'
 * misses; progress lives in Redis, so any origin process answers GET /v1/warm/{id}.
 */
@Injectable()
export class WarmService {
  private readonly keys: RedisKeys;
  private started = 0;
  private windowStart = 0;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
    @Inject(PINO) private readonly log: OriginLog,
    private readonly redis: RedisConnection,
    private readonly tagIndex: TagIndexService,
    private readonly variants: VariantsService,
  ) {
    this.keys = new RedisKeys(config.purge.stream);
  }

  /** Checks the body, lists what it names, records the job and starts it; the job runs on. */
  async start(body: unknown): Promise<{ id: string; total: number; done: Promise<WarmProgress> }> {
    const parsed = warmBodySchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw cdnError('CDN_ERR_BODY_INVALID', `${issue.path.join('.') || 'body'}: ${issue.message}`);
    }
    const { balancerInternalUrl, regions: known } = this.config.warming;
    if (balancerInternalUrl === null) {
      throw cdnError('CDN_ERR_NOT_CONFIGURED', 'warming needs the balancer (CDN_BALANCER_INTERNAL_URL)');
    }
    const regions = parsed.data.regions ?? known;
    const unknown = regions.filter((r) => !known.includes(r));
    if (unknown.length > 0 || regions.length === 0) {
      throw cdnError('CDN_ERR_BODY_INVALID', `regions: unknown ${unknown.join(', ') || '(none given)'}; known: ${known.join(', ')}`);
    }
    const requests = await this.requestsOf(parsed.data);
    if (requests.length === 0) throw cdnError('CDN_ERR_BODY_INVALID', 'nothing to warm: name urls, prefixes or tags that hold assets');
    const progress: WarmProgress = {
      id: randomUUID(),
      status: 'running',
      createdAt: new Date().toISOString(),
      finishedAt: null,
      regions,
      total: requests.length * regions.length,
      warmed: 0,
      failed: 0,
      edges: {},
      failures: [],
    };
    await this.save(progress);
    const done = this.run(progress, requests, balancerInternalUrl);
    return { id: progress.id, total: progress.total, done };
  }

  async progress(id: string): Promise<WarmProgress> {
    const text = await this.redis.client.get(this.keys.warm(id));
    if (text === null) throw cdnError('CDN_ERR_WARM_NOT_FOUND', `no warming job ${id} (unknown, or finished more than a day ago)`);
    return JSON.parse(text) as WarmProgress;
  }

  private async save(progress: WarmProgress): Promise<void> {
    await this.redis.client.set(this.keys.warm(progress.id), JSON.stringify(progress), 'EX', JOB_TTL_SECONDS);
  }

  /** The paths (and image variants) a body names, each once. */
  private async requestsOf(body: WarmBody): Promise<WarmRequest[]> {
    const assets = new Map<string, AssetMetadata | null>();
    const add = (key: string, metadata: AssetMetadata | null) => {
      if (assets.size >= MAX_WARM_OBJECTS && !assets.has(key)) throw cdnError('CDN_ERR_BODY_INVALID', `more than ${MAX_WARM_OBJECTS} objects: split the job`);
      assets.set(key, metadata);
    };
    for (const url of body.urls ?? []) add(keyOfUrl(url), null);
    for (const prefix of body.prefixes ?? []) {
      for (let after: string | null = null; ; ) {
        const page = await this.storage.list({ prefix: prefix.slice(1), after, limit: 1000 });
        for (const a of page.assets) add(a.key, a);
        if (!page.more || page.assets.length === 0) break;
        after = page.assets[page.assets.length - 1].key;
      }
    }
    for (const tag of body.tags ?? []) {
      const reason = checkTag(tag);
      if (reason !== undefined) throw cdnError('CDN_ERR_BODY_INVALID', `tags: ${reason}`);
      for (let after: string | null = null; ; ) {
        const page = await this.tagIndex.keysWithTag(tag, after, 1000);
        for (const key of page.keys) add(key, assets.get(key) ?? null);
        if (!page.more || page.keys.length === 0) break;
        after = page.keys[page.keys.length - 1];
      }
    }
    const requests: WarmRequest[] = [];
    for (const [key, known] of assets) {
      requests.push({ path: `/${key}` });
      if (body.variants === false) continue;
      const metadata = known ?? (await this.storage.stat(key));
      if (metadata === null) continue;
      const info = await this.variants.imageInfo(metadata, '');
      for (const width of info?.widths ?? []) {
        for (const accept of IMAGE_ACCEPTS) requests.push({ path: `/${key}?w=${width}`, accept });
      }
    }
    return requests;
  }

  private async run(progress: WarmProgress, requests: WarmRequest[], base: string): Promise<WarmProgress> {
    const host = new URL(this.config.publicBaseUrl).host;
    const work = progress.regions.flatMap((region) => requests.map((r) => ({ ...r, region })));
    let next = 0;
    let lastSave = Date.now();
    const worker = async () => {
      while (next < work.length) {
        const item = work[next++];
        await this.admit();
        const result = await this.warmOne(base, host, item.path, item.region, item.accept);
        if (result.ok) progress.warmed++;
        else progress.failed++;
        const edge = (progress.edges[result.edge] ??= { warmed: 0, failed: 0 });
        if (result.ok) edge.warmed++;
        else {
          edge.failed++;
          if (progress.failures.length < MAX_FAILURES_KEPT) progress.failures.push({ url: item.path, region: item.region, reason: result.reason });
        }
        if (Date.now() - lastSave > 500) {
          lastSave = Date.now();
          await this.save(progress).catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.config.warming.concurrency, work.length) }, worker));
    progress.status = 'done';
    progress.finishedAt = new Date().toISOString();
    await this.save(progress).catch((err) => this.log.warn({ err, warmId: progress.id }, 'warming progress not saved'));
    this.log.info({ audit: 'warm', warmId: progress.id, total: progress.total, warmed: progress.warmed, failed: progress.failed }, 'warming done');
    return progress;
  }

  /** The rate bound: at most ratePerSecond requests started per second (this process). */
  private async admit(): Promise<void> {
    for (;;) {
      const now = Date.now();
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.started = 0;
      }
      if (this.started < this.config.warming.ratePerSecond) {
        this.started++;
        return;
      }
      await new Promise((r) => setTimeout(r, 1000 - (now - this.windowStart)));
    }
  }

  private async warmOne(base: string, host: string, path: string, region: string, accept?: string): Promise<{ ok: boolean; edge: string; reason: string }> {
    try {
      const res = await get(`${base}/warm${path}`, { Host: host, 'X-Cdn-Warm-Region': region, ...(accept ? { Accept: accept } : {}) }, this.agent);
      const cacheStatus = res.cacheStatus;
      const edge = cacheStatus.split(';')[0].trim() || `(${region})`;
      if (res.status !== 200) return { ok: false, edge, reason: `HTTP ${res.status}` };
      if (!/; hit|; stored/.test(cacheStatus)) return { ok: false, edge, reason: `not stored (${cacheStatus || 'no Cache-Status'}): the origin's Cache-Control forbids it` };
      return { ok: true, edge, reason: '' };
    } catch (err) {
      return { ok: false, edge: `(${region})`, reason: (err as Error).message };
    }
  }
}

/** The asset key a warm URL names (a path or an http(s) URL, as purges take them), or why it names none. */
export function warmUrlKey(url: string): { key: string } | { reason: string } {
  const result = normalisePurgeUrl(url);
  if ('reason' in result) return { reason: `${JSON.stringify(url)} ${result.reason}` };
  const check = checkAssetKey(result.path.slice(1));
  return check.ok ? { key: check.key } : { reason: `${JSON.stringify(url)}: ${check.reason}` };
}

function keyOfUrl(url: string): string {
  const result = warmUrlKey(url);
  if ('reason' in result) throw cdnError('CDN_ERR_BODY_INVALID', `urls: ${result.reason}`);
  return result.key;
}

/**
 * A GET whose body is read and dropped. node:http, not fetch: the Host header names
 * the shoppers' host (part of the cache key), and fetch does not let a caller set it.
 */
function get(url: string, headers: Record<string, string>, agent: Agent): Promise<{ status: number; cacheStatus: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cacheStatus: String(res.headers['cache-status'] ?? '') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}
