/**
 * Image variants benchmark (docs/images.md), on a native stack with the default spec,
 * in one run:
 *
 *   1. cold transforms through the product path: distinct 12 MP JPEGs uploaded through
 *      the origin API, each asked for once as a 640 px AVIF (then WebP) through the
 *      balancer with `images.concurrency` requests in flight; every response must be a
 *      miss and the origin's cdn_origin_image_transforms_total must rise by one each;
 *   2. the bare reference in this process, same sources, same concurrency: the origin's
 *      own transformImage() (the same sharp pipeline and options) and a hand-written
 *      `sharp(input).rotate().resize(640).avif(...)`; rounds alternate product, bare,
 *      with fresh sources per round; the bar is product >= 0.9x bare;
 *   3. the origin's peak RSS (/proc/<pid>/status, sampled every 20 ms) while 8
 *      distinct cold requests are in flight at once;
 *   4. warm variant HITs against a plain asset of the same bytes, wrk against one edge.
 *
 *   npm run bench:images [-- --quick]      (writes bench/results/images.md)
 *
 * Only 127.0.0.1 is targeted; the stack is stopped whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { originImages } from '../origin/render';
import { VARIANT_PREFIX } from '../origin/contract/images';
import { FilesystemStorageDriver } from '../origin/src/assets/storage/filesystem-storage.driver';
import { acceptsOf, parseImageQuery } from '../origin/src/images/image-request';
import { transformImage, type TransformLimits, type TransformRequest } from '../origin/src/images/transform';
import { REPO_ROOT } from '../test/support/nginx-lua';
import { BALANCER_HEADERS, edgeTarget, git, median, percentile } from './edge';
import { childrenOf, cpuSeconds } from './proc';

const QUICK = process.argv.includes('--quick');
const OUT = (() => {
  const i = process.argv.indexOf('--out');
  return i > 0 ? path.resolve(process.argv[i + 1]) : path.join(REPO_ROOT, 'bench', 'results');
})();
const ROUNDS = QUICK ? 1 : 3;
/** Distinct sources per round (each is transformed once as AVIF and once as WebP by each path). */
const PER_ROUND = QUICK ? 4 : 12;
/**
 * Within a round the paths take turns on chunks of this many sources (product, bare,
 * hand-written, product, ...), so that load from elsewhere on the shared machine, which
 * comes and goes over seconds, falls on all of them alike.
 */
const CHUNK = 4;
const BURST = 8;
const WRK_SECONDS = QUICK ? 2 : 4;
const WRK_CONNECTIONS = 50;
const SAMPLE_MS = 20;
const WIDTH = 640;
const SOURCE_WIDTH = 4000;
const SOURCE_HEIGHT = 3000;
const ACCEPT = 'image/avif,image/webp,*/*';
const FORMATS = ['avif', 'webp'] as const;
type Format = (typeof FORMATS)[number];
const BAR_TRANSFORMS = 0.9;
/** Before each batch and wrk round: wait (at most QUIET_MAX_S) until other work on the machine takes under QUIET_CORES. */
const QUIET_CORES = 0.25;
const QUIET_MAX_S = QUICK ? 5 : 15;

const SPEC = parseSpec({});
const IMAGES = originImages(SPEC.images);
/** What the origin hands transformImage (variants.service.ts builds the same from CDN_IMAGES). */
const LIMITS: TransformLimits = { maxInputPixels: IMAGES.maxInputPixels, maxOutputBytes: IMAGES.maxOutputBytes, timeoutSeconds: IMAGES.timeoutSeconds, allowSvg: IMAGES.allowSvg };
const CONCURRENCY = IMAGES.concurrency;

// ---------------------------------------------------------------------------------
// Sources

const RAW = { width: SOURCE_WIDTH, height: SOURCE_HEIGHT, channels: 3 as const };
const noise = (width: number, height: number, sigma: number) => sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma } } });

/**
 * A 12 MP JPEG (quality 90, ~2 MB) with the frequencies a photo has: broad colour
 * regions (a 24x18 noise field upscaled), mid-scale texture (160x120, overlaid) and
 * blurred sensor grain (full-size Gaussian noise, soft-light). Every call draws new
 * noise, so no two sources share a sha256 and nothing is reused anywhere.
 */
async function photo(): Promise<Buffer> {
  const [coarse, mid, grain] = await Promise.all([
    noise(24, 18, 70).resize(SOURCE_WIDTH, SOURCE_HEIGHT, { kernel: 'cubic' }).raw().toBuffer(),
    noise(160, 120, 20).resize(SOURCE_WIDTH, SOURCE_HEIGHT, { kernel: 'cubic' }).raw().toBuffer(),
    noise(SOURCE_WIDTH, SOURCE_HEIGHT, 30).blur(1).raw().toBuffer(),
  ]);
  return sharp(coarse, { raw: RAW })
    .composite([
      { input: mid, raw: RAW, blend: 'overlay' },
      { input: grain, raw: RAW, blend: 'soft-light' },
    ])
    .jpeg({ quality: 90 })
    .toBuffer();
}

interface Source {
  key: string;
  bytes: Buffer;
}

/** Runs `fn` over `items` with `width` calls in flight; results in input order. */
async function pool<T, R>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i], i);
    }),
  );
  return out;
}

// ---------------------------------------------------------------------------------
// The stack

interface Stack {
  up: UpResult;
  token: string;
  originPid: number;
}

async function upload(stack: Stack, key: string, body: Buffer, contentType: string): Promise<void> {
  const res = await fetch(`${stack.up.state.origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${stack.token}`, 'Content-Type': contentType, 'Cache-Control': 'public, max-age=3600', 'Surrogate-Key': 'bench-images' },
    body,
  });
  const text = await res.text();
  if (res.status !== 201 && res.status !== 200) throw new Error(`upload of ${key} failed: ${res.status} ${text}`);
}

/** The origin's /metrics that this benchmark reads, by metric name with its labels (`name{labels}` -> value). */
async function originMetrics(stack: Stack): Promise<Map<string, number>> {
  const text = await (await fetch(`${stack.up.state.origin}/metrics`)).text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !/^(cdn_origin_image|cdn_origin_storage_operation_duration_seconds_(sum|count)|cdn_origin_http_requests_total|nodejs_gc_duration_seconds_(sum|count))/.test(line)) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

const metric = (m: Map<string, number>, name: string) => m.get(name) ?? 0;
/** The sum over every series whose `name{labels}` matches. */
const metricSum = (m: Map<string, number>, pattern: RegExp) => [...m].filter(([k]) => pattern.test(k)).reduce((a, [, v]) => a + v, 0);

/** Milliseconds of garbage-collection pauses in this process (major: mark-compact), counted while `on`. */
const selfGc = { on: false, ms: 0, majorMs: 0 };
new PerformanceObserver((list) => {
  if (!selfGc.on) return;
  for (const e of list.getEntries()) {
    selfGc.ms += e.duration;
    // PerformanceEntry.detail.kind: 1 minor, 2 major, 4 incremental, 8 weak callbacks
    if (((e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0) === 2) selfGc.majorMs += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

/** Every process of the stack: the services, and the workers of the nginx masters among them. */
function stackPids(stack: Stack): number[] {
  return stack.up.state.services.flatMap((s) => [s.pid, ...childrenOf(s.pid)]);
}

/** CPU seconds the machine spent busy so far (all CPUs: user, nice, system, irq, softirq, steal; /proc/stat). */
function machineBusySeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100; // USER_HZ = 100
}

const selfCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** CPU seconds used by the stack, by this process and by the whole machine, read at once. */
interface CpuMark {
  origin: number;
  stack: number;
  self: number;
  busy: number;
}

function cpuMark(stack: Stack): CpuMark {
  const sum = (pids: number[]) => pids.reduce((a, pid) => {
    try {
      return a + cpuSeconds(pid);
    } catch {
      return a; // gone meanwhile
    }
  }, 0);
  const origin = cpuSeconds(stack.originPid);
  return { origin, stack: origin + sum(stackPids(stack).filter((pid) => pid !== stack.originPid)), self: selfCpuSeconds(), busy: machineBusySeconds() };
}

/** What was used between two marks: by the origin, the stack, this process, and (in cores) by everything else. */
function cpuBetween(a: CpuMark, b: CpuMark, wallS: number): { origin: number; stack: number; self: number; foreignCores: number } {
  const stack = b.stack - a.stack;
  const self = b.self - a.self;
  return { origin: b.origin - a.origin, stack, self, foreignCores: Math.max(0, (b.busy - a.busy - stack - self) / wallS) };
}
const refusals = (m: Map<string, number>) => [...m].filter(([k]) => k.startsWith('cdn_origin_image_refusals_total')).reduce((s, [, v]) => s + v, 0);

interface Timed {
  ms: number;
  bytes: number;
  requestId?: string;
}

interface Batch {
  /** Transforms per second over the batch's wall time. */
  rate: number;
  /** Bare batches: this process's GC pauses per transform (all, and major), ms. */
  gcMs?: number;
  majorGcMs?: number;
  /** CPU seconds per transform of the process that transformed (the origin; this process for the bare ones). */
  cpuS: number;
  /** Cores busy with anything else on the machine meanwhile (neither the stack nor this process), on average. */
  foreignCores: number;
  p50: number;
  p99: number;
  meanMs: number;
  meanBytes: number;
  wallS: number;
  each: Timed[];
}

function summarise(each: Timed[], wallS: number, cpuS: number, foreignCores: number): Batch {
  const ms = each.map((t) => t.ms);
  return { rate: each.length / wallS, cpuS: cpuS / each.length, foreignCores, p50: percentile(ms, 50), p99: percentile(ms, 99), meanMs: ms.reduce((a, b) => a + b, 0) / ms.length, meanBytes: each.reduce((a, t) => a + t.bytes, 0) / each.length, wallS, each };
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** One cold request through the balancer: must be a 200 of the asked format that the edge forwarded (a miss). */
async function coldRequest(stack: Stack, key: string, format: Format): Promise<Timed> {
  const start = now();
  const res = await fetch(`${stack.up.state.balancer}/${key}?w=${WIDTH}&fmt=${format}`, { headers: { Accept: ACCEPT } });
  const body = Buffer.from(await res.arrayBuffer());
  const ms = now() - start;
  const status = res.headers.get('cache-status') ?? '';
  if (res.status !== 200) throw new Error(`${key} as ${format}: ${res.status} ${body.toString('utf8', 0, 300)}`);
  if (res.headers.get('content-type') !== `image/${format}`) throw new Error(`${key} as ${format}: content-type ${res.headers.get('content-type')}`);
  if (/; hit/.test(status) || !/miss/.test(status)) throw new Error(`${key} as ${format} was not a cold miss: cache-status ${status}`);
  return { ms, bytes: body.length, requestId: res.headers.get('x-request-id') ?? undefined };
}

/** Per request, what the balancer's and the edges' access logs say (seconds), by request id. */
interface Hops {
  balancerRt: number;
  edgeRt: number;
  /** The edge's upstream response time: the origin's whole answer (queue, source read, transform, reserve write, body). */
  originUrt: number;
}

function accessLogs(stack: Stack, roles: string[]): string[] {
  return stack.up.state.services.filter((s) => roles.includes(s.role)).map((s) => path.join(path.dirname(s.log), 'access.log'));
}

/** The hops of `ids` from the access logs (nginx flushes its 64 KiB log buffer at least every second). */
async function hopsOf(stack: Stack, ids: string[]): Promise<Map<string, Hops> | undefined> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const balancer = new Map<string, number>();
    const edge = new Map<string, { rt: number; urt: number }>();
    const read = (files: string[], f: (o: { req_id: string; rt: number; urt: string }) => void) => {
      for (const file of files) {
        if (!fs.existsSync(file)) continue;
        for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
          if (!line.startsWith('{')) continue;
          try {
            f(JSON.parse(line));
          } catch {
            // a partly written line
          }
        }
      }
    };
    read(accessLogs(stack, ['balancer']), (o) => balancer.set(o.req_id, o.rt));
    read(accessLogs(stack, ['edge']), (o) => edge.set(o.req_id, { rt: o.rt, urt: String(o.urt).split(/[,:]\s*/).reduce((s, x) => s + (Number(x) || 0), 0) }));
    if (ids.every((id) => balancer.has(id) && edge.has(id))) {
      return new Map(ids.map((id) => [id, { balancerRt: balancer.get(id)!, edgeRt: edge.get(id)!.rt, originUrt: edge.get(id)!.urt }]));
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Seconds waited in all for the machine to be quiet, and how often it did not get quiet in time. */
const quiet = { waitedS: 0, waits: 0, notQuiet: 0 };

/**
 * The machine is shared (2 CPUs; other builds and tests come and go), so before a
 * measurement this waits, at most QUIET_MAX_S, for a second in which everything but
 * the stack and this process used under QUIET_CORES.
 */
async function waitForQuiet(stack: Stack): Promise<void> {
  const start = Date.now();
  quiet.waits++;
  for (;;) {
    const a = cpuMark(stack);
    await new Promise((r) => setTimeout(r, 1000));
    if (cpuBetween(a, cpuMark(stack), 1).foreignCores < QUIET_CORES) break;
    if (Date.now() - start > QUIET_MAX_S * 1000) {
      quiet.notQuiet++;
      break;
    }
  }
  quiet.waitedS += (Date.now() - start) / 1000;
}

interface ProductBatch extends Batch {
  /** CPU seconds per transform of the whole stack (origin, balancer, edges, Redis). */
  stackCpuS: number;
  /** Seconds the origin's transform histogram grew by, per transform (transformImage alone). */
  originTransformS: number;
  /** Per transform, from the origin's own metrics: its GC pauses (all, and major), its storage calls, its HTTP requests. */
  originGcMs: number;
  originMajorGcMs: number;
  originPutMs: number;
  originStatsPerRequest: number;
  originRequestsPerRequest: number;
  hops?: { balancerRt: number; edgeRt: number; originUrt: number };
}

async function productBatch(stack: Stack, sources: Source[], format: Format): Promise<ProductBatch> {
  const before = await originMetrics(stack);
  const cpu0 = cpuMark(stack);
  const start = now();
  const each = await pool(sources, CONCURRENCY, (s) => coldRequest(stack, s.key, format));
  const wallS = (now() - start) / 1000;
  const cpu = cpuBetween(cpu0, cpuMark(stack), wallS);
  const after = await originMetrics(stack);
  const made = metric(after, `cdn_origin_image_transforms_total{format="${format}"}`) - metric(before, `cdn_origin_image_transforms_total{format="${format}"}`);
  if (made !== sources.length) throw new Error(`${sources.length} cold ${format} requests made ${made} transforms at the origin`);
  const reserveHits = metric(after, 'cdn_origin_image_reserve_hits_total') - metric(before, 'cdn_origin_image_reserve_hits_total');
  if (reserveHits !== 0) throw new Error(`${reserveHits} of the cold ${format} requests were served from the reserve`);
  if (refusals(after) !== refusals(before)) throw new Error(`the origin refused ${refusals(after) - refusals(before)} transforms`);
  const histogramS = metric(after, 'cdn_origin_image_transform_duration_seconds_sum') - metric(before, 'cdn_origin_image_transform_duration_seconds_sum');
  const ids = each.map((t) => t.requestId).filter((id): id is string => id !== undefined);
  const hops = ids.length === each.length ? await hopsOf(stack, ids) : undefined;
  const mean = (f: (h: Hops) => number) => (hops ? [...hops.values()].reduce((s, h) => s + f(h), 0) / hops.size : NaN);
  const delta = (pattern: RegExp) => metricSum(after, pattern) - metricSum(before, pattern);
  const putCount = delta(/^cdn_origin_storage_operation_duration_seconds_count\{.*operation="put"/);
  return {
    ...summarise(each, wallS, cpu.origin, cpu.foreignCores),
    stackCpuS: cpu.stack / made,
    originGcMs: (delta(/^nodejs_gc_duration_seconds_sum/) * 1000) / made,
    originMajorGcMs: (delta(/^nodejs_gc_duration_seconds_sum\{kind="major"/) * 1000) / made,
    originPutMs: putCount > 0 ? (delta(/^cdn_origin_storage_operation_duration_seconds_sum\{.*operation="put"/) * 1000) / putCount : NaN,
    originStatsPerRequest: delta(/^cdn_origin_storage_operation_duration_seconds_count\{.*operation="stat"/) / made,
    // minus the /metrics scrape this batch made (the "after" scrape is counted before it answers)
    originRequestsPerRequest: (delta(/^cdn_origin_http_requests_total/) - delta(/^cdn_origin_http_requests_total\{route="\/metrics"/)) / made,
    originTransformS: histogramS / made,
    ...(hops ? { hops: { balancerRt: mean((h) => h.balancerRt), edgeRt: mean((h) => h.edgeRt), originUrt: mean((h) => h.originUrt) } } : {}),
  };
}

/** The mean of `f` over `parts`, weighted by `w`. */
function weighted<T>(parts: T[], f: (p: T) => number, w: (p: T) => number): number {
  const total = parts.reduce((a, p) => a + w(p), 0);
  return parts.reduce((a, p) => a + f(p) * w(p), 0) / total;
}

/** One batch out of the chunks a path ran in a round: rates over the summed wall time, means per transform. */
function mergeBatches(parts: Batch[]): Batch {
  const n = (p: Batch) => p.each.length;
  const wallS = parts.reduce((a, p) => a + p.wallS, 0);
  const merged = summarise(parts.flatMap((p) => p.each), wallS, weighted(parts, (p) => p.cpuS, n) * parts.reduce((a, p) => a + n(p), 0), weighted(parts, (p) => p.foreignCores, (p) => p.wallS));
  if (parts.every((p) => p.gcMs !== undefined)) {
    merged.gcMs = weighted(parts, (p) => p.gcMs!, n);
    merged.majorGcMs = weighted(parts, (p) => p.majorGcMs!, n);
  }
  return merged;
}

function mergeProduct(parts: ProductBatch[]): ProductBatch {
  const n = (p: ProductBatch) => p.each.length;
  const w = (f: (p: ProductBatch) => number) => weighted(parts, f, n);
  const withHops = parts.every((p) => p.hops !== undefined);
  return {
    ...mergeBatches(parts),
    stackCpuS: w((p) => p.stackCpuS),
    originTransformS: w((p) => p.originTransformS),
    originGcMs: w((p) => p.originGcMs),
    originMajorGcMs: w((p) => p.originMajorGcMs),
    originPutMs: weighted(parts.filter((p) => !Number.isNaN(p.originPutMs)), (p) => p.originPutMs, n),
    originStatsPerRequest: w((p) => p.originStatsPerRequest),
    originRequestsPerRequest: w((p) => p.originRequestsPerRequest),
    ...(withHops ? { hops: { balancerRt: w((p) => p.hops!.balancerRt), edgeRt: w((p) => p.hops!.edgeRt), originUrt: w((p) => p.hops!.originUrt) } } : {}),
  };
}

// ---------------------------------------------------------------------------------
// The origin's storage steps of a cold variant, alone

interface StorageSteps {
  /** variants.service: stat of the reserve key (a miss). */
  reserveStatMs: number;
  /** readSource: the source's metadata, then its bytes read whole. */
  sourceReadMs: number;
  /** keep: the variant written to the reserve (temp file, fsync, rename, directory fsyncs, metadata). */
  reserveWriteMs: number;
}

/**
 * The storage calls variants.service makes around each transform, timed one by one
 * with the origin's own FilesystemStorageDriver on the same filesystem as the stack's
 * (the stack's state directory), on copies of `sources`, `CONCURRENCY` at a time, with
 * variants of `variantBytes` bytes.
 */
async function storageSteps(dir: string, sources: Source[], variantBytes: number): Promise<StorageSteps> {
  const storage = new FilesystemStorageDriver(dir);
  await storage.init();
  const metas = [];
  for (const s of sources) metas.push((await storage.put(s.key, Readable.from([s.bytes]), { contentType: 'image/jpeg', cacheControl: 'public, max-age=3600', tags: [], maxBytes: s.bytes.length })).asset);
  const steps = await pool(metas, CONCURRENCY, async (meta) => {
    const reserveKey = `${VARIANT_PREFIX}${meta.sha256}/${WIDTH}x-q${IMAGES.defaultQuality}-bench`;
    let t = now();
    if ((await storage.stat(reserveKey)) !== null) throw new Error(`${reserveKey} exists`);
    const reserveStatMs = now() - t;
    t = now();
    const stored = await storage.stat(meta.key);
    const body = stored === null ? null : await storage.read(stored);
    if (body === null) throw new Error(`${meta.key} is gone`);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    if (Buffer.concat(chunks).length !== meta.size) throw new Error(`${meta.key}: short read`);
    const sourceReadMs = now() - t;
    const variant = randomBytes(variantBytes);
    t = now();
    await storage.put(reserveKey, Readable.from([variant]), { contentType: 'image/avif', cacheControl: null, tags: [], maxBytes: variant.length });
    return { reserveStatMs, sourceReadMs, reserveWriteMs: now() - t };
  });
  const mean = (f: (x: StorageSteps) => number) => steps.reduce((a, x) => a + f(x), 0) / steps.length;
  return { reserveStatMs: mean((x) => x.reserveStatMs), sourceReadMs: mean((x) => x.sourceReadMs), reserveWriteMs: mean((x) => x.reserveWriteMs) };
}

// ---------------------------------------------------------------------------------
// The bare references

function requestFor(format: Format): TransformRequest {
  const query = parseImageQuery(`w=${WIDTH}&fmt=${format}`, IMAGES.defaultQuality);
  if (query === null) throw new Error('no image query');
  return { ...query, accepts: acceptsOf(ACCEPT) };
}

type Bare = 'transformImage' | 'hand-written sharp';
const BARES: readonly Bare[] = ['transformImage', 'hand-written sharp'];

function bareTransform(kind: Bare, input: Buffer, format: Format): Promise<Buffer> {
  if (kind === 'transformImage') return transformImage(input, requestFor(format), LIMITS).then((t) => t.data);
  const p = sharp(input).rotate().resize(WIDTH);
  return (format === 'avif' ? p.avif({ quality: IMAGES.defaultQuality, effort: 4 }) : p.webp({ quality: IMAGES.defaultQuality })).toBuffer();
}

async function bareBatch(stack: Stack, kind: Bare, sources: Source[], format: Format): Promise<Batch> {
  const cpu0 = cpuMark(stack);
  Object.assign(selfGc, { on: true, ms: 0, majorMs: 0 });
  const start = now();
  const each = await pool(sources, CONCURRENCY, async (s) => {
    const t = now();
    const out = await bareTransform(kind, s.bytes, format);
    return { ms: now() - t, bytes: out.length };
  });
  const wallS = (now() - start) / 1000;
  const cpu = cpuBetween(cpu0, cpuMark(stack), wallS);
  // GC entries are delivered asynchronously: let the observer see the last ones
  await new Promise((r) => setImmediate(r));
  selfGc.on = false;
  return { ...summarise(each, wallS, cpu.self, cpu.foreignCores), gcMs: selfGc.ms / each.length, majorGcMs: selfGc.majorMs / each.length };
}

// ---------------------------------------------------------------------------------
// Memory

function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

interface MemoryResult {
  rssBeforeKiB: number;
  maxRssKiB: number;
  hwmBeforeKiB: number;
  hwmAfterKiB: number;
  samples: number;
  burstS: number;
  p50: number;
  p99: number;
  rssAfterKiB: number;
}

async function memoryBurst(stack: Stack, sources: Source[]): Promise<MemoryResult> {
  const before = procStatus(stack.originPid);
  let max = before.rssKiB;
  let samples = 0;
  const timer = setInterval(() => {
    max = Math.max(max, procStatus(stack.originPid).rssKiB);
    samples++;
  }, SAMPLE_MS);
  const metricsBefore = await originMetrics(stack);
  const start = now();
  let each: Timed[];
  try {
    each = await Promise.all(sources.map((s) => coldRequest(stack, s.key, 'avif')));
  } finally {
    clearInterval(timer);
  }
  const burstS = (now() - start) / 1000;
  const after = procStatus(stack.originPid);
  max = Math.max(max, after.rssKiB);
  const made = metric(await originMetrics(stack), 'cdn_origin_image_transforms_total{format="avif"}') - metric(metricsBefore, 'cdn_origin_image_transforms_total{format="avif"}');
  if (made !== sources.length) throw new Error(`${sources.length} concurrent cold requests made ${made} transforms`);
  const ms = each.map((t) => t.ms);
  return { rssBeforeKiB: before.rssKiB, maxRssKiB: max, hwmBeforeKiB: before.hwmKiB, hwmAfterKiB: after.hwmKiB, samples, burstS, p50: percentile(ms, 50), p99: percentile(ms, 99), rssAfterKiB: after.rssKiB };
}

// ---------------------------------------------------------------------------------
// Warm HITs

const EDGE_HEADERS = [...BALANCER_HEADERS, `Accept: ${ACCEPT}`];

/** GETs `url` from the edge until it is a HIT (at most 5 tries); its body. */
async function warmEdge(url: string): Promise<{ body: Buffer; contentType: string; headers: Record<string, string> }> {
  for (let i = 0; i < 5; i++) {
    const res = await fetch(url, { headers: Object.fromEntries(EDGE_HEADERS.map((h) => h.split(': '))) });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${body.toString('utf8', 0, 300)}`);
    if (/; hit/.test(res.headers.get('cache-status') ?? '')) {
      const headers = Object.fromEntries([...res.headers.entries()].filter(([k]) => !['date', 'connection', 'keep-alive', 'age'].includes(k)));
      return { body, contentType: res.headers.get('content-type') ?? '', headers };
    }
  }
  throw new Error(`${url} is not served from the edge's cache`);
}

interface WrkSample {
  rps: number;
  cpuUsPerRequest: number;
}

function wrk(url: string, workerPid: number): WrkSample {
  const before = cpuSeconds(workerPid);
  const out = execFileSync('wrk', ['-t1', `-c${WRK_CONNECTIONS}`, `-d${WRK_SECONDS}s`, ...EDGE_HEADERS.flatMap((h) => ['-H', h]), url], { encoding: 'utf8', timeout: (WRK_SECONDS + 30) * 1000 });
  const used = cpuSeconds(workerPid) - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors: .*?(\d+) timeout/.exec(out)?.[1] ?? 0);
  if (errors > 0 || requests === 0) throw new Error(`wrk ${url}: ${errors} errors, ${requests} requests\n${out}`);
  return { rps, cpuUsPerRequest: (used * 1e6) / requests };
}

interface WarmResult {
  edge: string;
  variantPath: string;
  plainPath: string;
  bytes: number;
  contentType: string;
  rounds: { variant: WrkSample; plain: WrkSample }[];
  headers: { variant: Record<string, string>; plain: Record<string, string> };
  ratio: number;
  cpuRatio: number;
}

async function warmHits(stack: Stack, source: Source): Promise<WarmResult> {
  const edge = stack.up.state.edges[0];
  const target = edgeTarget(edge.url, edge.pid);
  const variantPath = `/${source.key}?w=${WIDTH}&fmt=auto`;
  const variant = await warmEdge(`${edge.url}${variantPath}`);
  // The variant's own bytes and type as a plain asset: same size, no query, no Vary.
  const plainKey = `bench/images/plain-${variant.body.length}.${variant.contentType.split('/')[1]}`;
  await upload(stack, plainKey, variant.body, variant.contentType);
  const plainPath = `/${plainKey}`;
  const plain = await warmEdge(`${edge.url}${plainPath}`);
  const transformsBefore = await originMetrics(stack);
  const rounds: { variant: WrkSample; plain: WrkSample }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order: ('variant' | 'plain')[] = r % 2 === 0 ? ['variant', 'plain'] : ['plain', 'variant'];
    const round = {} as { variant: WrkSample; plain: WrkSample };
    for (const which of order) {
      await waitForQuiet(stack);
      round[which] = wrk(`${edge.url}${which === 'variant' ? variantPath : plainPath}`, target.pid);
    }
    rounds.push(round);
    process.stderr.write(`  warm round ${r + 1}/${ROUNDS}: variant ${round.variant.rps.toFixed(0)} req/s, plain ${round.plain.rps.toFixed(0)} req/s\n`);
  }
  // still HITs, and nothing was transformed meanwhile
  const variantAfter = await warmEdge(`${edge.url}${variantPath}`);
  const transformsAfter = await originMetrics(stack);
  const total = (m: Map<string, number>) => [...m].filter(([k]) => k.startsWith('cdn_origin_image_transforms_total')).reduce((s, [, v]) => s + v, 0);
  if (total(transformsAfter) !== total(transformsBefore)) throw new Error('the warm runs made transforms at the origin');
  return {
    edge: edge.id,
    variantPath,
    plainPath,
    bytes: variant.body.length,
    contentType: variant.contentType,
    rounds,
    headers: { variant: variantAfter.headers, plain: plain.headers },
    ratio: median(rounds.map((r) => r.variant.rps / r.plain.rps)),
    cpuRatio: median(rounds.map((r) => r.variant.cpuUsPerRequest / r.plain.cpuUsPerRequest)),
  };
}

// ---------------------------------------------------------------------------------
// Report

interface FormatRound {
  product: ProductBatch;
  bare: Record<Bare, Batch>;
}

interface Report {
  command: string;
  commit: string;
  date: string;
  machine: { nproc: number; model: string; memGiB: number; kernel: string };
  versions: string;
  generateS: number;
  sourceMB: number;
  runS: number;
  transforms: Record<Format, FormatRound[]>;
  storage: Record<Format, StorageSteps>;
  quiet: typeof quiet;
  memory: MemoryResult;
  warm: WarmResult;
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  return m?.[1].trim() ?? os.cpus()[0]?.model ?? 'unknown';
}

function commit(): string {
  const head = git(['rev-parse', '--short', 'HEAD']);
  // --no-optional-locks: status does not refresh the index (another engineer works in this tree)
  const dirty = git(['--no-optional-locks', 'status', '--porcelain', '--', '.', ':(exclude)bench/results']) !== '';
  return `${head}${dirty ? '+dirty' : ''}`;
}

function render(r: Report): string {
  const f0 = (n: number) => Math.round(n).toLocaleString('en');
  const f1 = (n: number) => n.toFixed(1);
  const f2 = (n: number) => n.toFixed(2);
  const mib = (kib: number) => (kib / 1024).toFixed(0);
  const ratioOf = (rounds: FormatRound[], bare: Bare) => median(rounds.map((x) => x.product.rate / x.bare[bare].rate));
  const pass = (ratio: number, bar: number) => (ratio >= bar ? 'meets' : '**below**');
  const rows: string[] = [];
  for (const format of FORMATS) {
    const rounds = r.transforms[format];
    const line = (name: string, bs: Batch[], stackCpu?: number) =>
      `| ${format.toUpperCase()} | ${name} | ${f2(median(bs.map((b) => b.rate)))} | ${f0(median(bs.map((b) => b.p50)))} | ${f0(median(bs.map((b) => b.p99)))} | ${f0(median(bs.map((b) => b.cpuS * 1000)))}${stackCpu !== undefined ? ` (stack ${f0(stackCpu * 1000)})` : ''} | ${f2(median(bs.map((b) => b.foreignCores)))} | ${f0(median(bs.map((b) => b.meanBytes)))} |`;
    rows.push(line('product: balancer → edge → origin', rounds.map((x) => x.product), median(rounds.map((x) => x.product.stackCpuS))));
    for (const bare of BARES) rows.push(line(`bare ${bare}`, rounds.map((x) => x.bare[bare])));
  }
  const perRound: string[] = [];
  for (const format of FORMATS) {
    r.transforms[format].forEach((x, i) => {
      const cells = [x.product, ...BARES.map((b) => x.bare[b])].map((b) => `${f2(b.rate)} (${f0(b.p50)} / ${f0(b.p99)}; ${f0(b.cpuS * 1000)} ms CPU; ${f2(b.foreignCores)})`);
      perRound.push(`| ${format.toUpperCase()} | ${i + 1} | ${cells.join(' | ')} | ${f2(x.product.rate / x.bare.transformImage.rate)} |`);
    });
  }
  const breakdown = FORMATS.map((format) => {
    const rounds = r.transforms[format];
    const m = (f: (x: FormatRound) => number) => f0(median(rounds.map(f)));
    const withHops = rounds.filter((x) => x.product.hops !== undefined);
    const h = (f: (x: NonNullable<ProductBatch['hops']>) => number) => (withHops.length ? f0(median(withHops.map((x) => f(x.product.hops!) * 1000))) : '-');
    const other = withHops.length ? f0(median(withHops.map((x) => (x.product.hops!.originUrt - x.product.originTransformS) * 1000))) : '-';
    return `| ${format.toUpperCase()} | ${m((x) => x.product.meanMs)} | ${h((x) => x.balancerRt)} | ${h((x) => x.edgeRt)} | ${h((x) => x.originUrt)} | ${m((x) => x.product.originTransformS * 1000)} | ${other} | ${m((x) => x.bare.transformImage.meanMs)} |`;
  });
  const w = r.warm;
  const mem = r.memory;
  return [
    '# Image variants benchmark',
    '',
    `Command: \`${r.command}\`. Commit \`${r.commit}\`, ${r.date}. Machine: ${r.machine.nproc} CPUs (nproc), ${r.machine.model}, ${r.machine.memGiB} GiB, kernel ${r.machine.kernel}. ${r.versions}.`,
    `A native stack with the default spec (\`up\`: balancer, 4 edges, one origin with filesystem storage, \`images.concurrency\` ${CONCURRENCY}); only 127.0.0.1. The run took ${f0(r.runS)} s (of which ${f0(r.generateS)} s making the sources, and ${f0(r.quiet.waitedS)} s waiting before ${r.quiet.waits} measurements for a second in which other work on the machine took under ${QUIET_CORES} cores${r.quiet.notQuiet ? `; ${r.quiet.notQuiet} of them started after ${QUIET_MAX_S} s without one` : ''}).`,
    '',
    `Sources: ${SOURCE_WIDTH}x${SOURCE_HEIGHT} JPEGs (quality 90, ${r.sourceMB.toFixed(1)} MB each on average), a fresh Gaussian-noise mix per source (upscaled 24x18 colour field, overlaid 160x120 texture, blurred full-size grain), so every source has its own sha256 and the encoders get photo-like detail; uploaded through the origin API (\`image/jpeg\`, \`Cache-Control: public, max-age=3600\`).`,
    '',
    '## 1-2. Cold transforms: product path against bare sharp',
    '',
    `${ROUNDS} round(s); each round has ${PER_ROUND} new sources, and for each format the three paths take turns on chunks of ${CHUNK} of them (product path, transformImage in this process, hand-written pipeline, product path, ...), so that every path transforms every source of the round once, always ${CONCURRENCY} in flight, and load from elsewhere on the machine falls on all three alike. Product: \`GET <balancer>/<key>?w=${WIDTH}&fmt=<format>\` with \`Accept: ${ACCEPT}\`; every response was checked to be a 200 of that type with a miss in \`Cache-Status\`, and \`cdn_origin_image_transforms_total{format}\` rose by exactly the chunk's size for each product chunk (no reserve hits, no refusals). transformImage: the origin's exported function with the request \`parseImageQuery\` makes of the same query and the limits the origin gets from the default spec. Hand-written: \`sharp(input).rotate().resize(${WIDTH}).avif({ quality: 75, effort: 4 })\` (or \`.webp({ quality: 75 })\`). Transforms/s = sources / the summed wall time of the path's chunks; latency per request (product: from fetch to the last body byte; bare: the call). Medians of the rounds.`,
    '',
    '| format | path | transforms/s | p50 ms | p99 ms | CPU ms / transform | other load (cores) | mean output bytes |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `| format | product / bare transformImage | product / hand-written sharp | bar | verdict (vs transformImage) | CPU per transform: bare transformImage / origin | bare transformImage / whole stack |`,
    '|---|---|---|---|---|---|---|',
    ...FORMATS.map((format) => {
      const a = ratioOf(r.transforms[format], 'transformImage');
      const b = ratioOf(r.transforms[format], 'hand-written sharp');
      const rounds = r.transforms[format];
      const c = median(rounds.map((x) => x.bare.transformImage.cpuS / x.product.cpuS));
      const d = median(rounds.map((x) => x.bare.transformImage.cpuS / x.product.stackCpuS));
      return `| ${format.toUpperCase()} | **${f2(a)}** | ${f2(b)} | ≥ ${BAR_TRANSFORMS} | ${pass(a, BAR_TRANSFORMS)} | ${f2(c)} | ${f2(d)} |`;
    }),
    '',
    `Ratios are medians of the per-round ratios. CPU ms / transform: utime + stime (/proc) of the process that transformed, over the batch, divided by the transforms: the origin for the product path (in brackets, the whole stack: origin, balancer and edges with their workers, Redis), this benchmark's own process for the bare references. "Other load": cores busy with anything but the stack and this process during the batch (/proc/stat), i.e. other work on the machine; with ${r.machine.nproc} CPUs and ${CONCURRENCY} transforms in flight, every core it takes slows the batch it falls in, so the CPU ratios are the steadier comparison: at full load on an otherwise idle machine transforms/s goes as 1 / CPU per transform.`,
    '',
    '### Every round: transforms/s (p50 / p99 ms; CPU per transform; other load in cores)',
    '',
    `| format | round | product | ${BARES.map((b) => `bare ${b}`).join(' | ')} | product / transformImage |`,
    `|---|---|---|${BARES.map(() => '---').join('|')}|---|`,
    ...perRound,
    '',
    '### Where a product request\'s time goes (ms, mean per request, median of rounds)',
    '',
    'From the client\'s clock, the balancer\'s and the edge\'s access logs (`rt`, and the edge\'s `urt`: the origin\'s whole answer, joined by `X-Request-Id`) and the origin\'s `cdn_origin_image_transform_duration_seconds` (transformImage alone: probe, decode, resize, encode). "Origin other" is the origin\'s answer minus its transform: the queue, the storage calls before the transform (reserve stat, source stat and read), Nest and HTTP, and the reserve write if the answer waits for it.',
    '',
    '| format | client | balancer rt | edge rt | origin (edge urt) | transform in origin | origin other | bare transformImage call |',
    '|---|---|---|---|---|---|---|---|',
    ...breakdown,
    '',
    'The same requests by CPU (ms per transform, median of rounds): the origin process against this process running transformImage, with garbage-collection pauses (the origin\'s `nodejs_gc_duration_seconds`; here a `gc` PerformanceObserver; "major" is mark-compact) and what the origin\'s own metrics say of its storage calls and requests.',
    '',
    '| format | origin CPU | bare transformImage CPU | difference | origin GC pauses (major) | bare GC pauses (major) | origin reserve put (its own histogram) | storage stats per request | origin requests per request |',
    '|---|---|---|---|---|---|---|---|---|',
    ...FORMATS.map((format) => {
      const rounds = r.transforms[format];
      const m = (f: (x: FormatRound) => number) => median(rounds.map(f));
      return `| ${format.toUpperCase()} | ${f0(m((x) => x.product.cpuS * 1000))} | ${f0(m((x) => x.bare.transformImage.cpuS * 1000))} | ${f0(m((x) => (x.product.cpuS - x.bare.transformImage.cpuS) * 1000))} | ${f1(m((x) => x.product.originGcMs))} (${f1(m((x) => x.product.originMajorGcMs))}) | ${f1(m((x) => x.bare.transformImage.gcMs ?? NaN))} (${f1(m((x) => x.bare.transformImage.majorGcMs ?? NaN))}) | ${f1(m((x) => x.product.originPutMs))} ms | ${f1(m((x) => x.product.originStatsPerRequest))} | ${f2(m((x) => x.product.originRequestsPerRequest))} |`;
    }),
    '',
    `No product request waits in the origin's queue: the client keeps ${CONCURRENCY} in flight and the queue runs ${CONCURRENCY}. The storage calls, timed alone with the origin's own FilesystemStorageDriver on the stack's filesystem, ${CONCURRENCY} at a time, on copies of the last round's sources and variants of the measured mean size (ms per request, mean):`,
    '',
    '| format | reserve stat (miss) | source stat + read whole | reserve write (put: temp file, fsyncs, renames) | origin other (above) | origin other minus reserve stat and source read (Nest, HTTP, event loop) |',
    '|---|---|---|---|---|---|',
    ...FORMATS.map((format) => {
      const st = r.storage[format];
      const rounds = r.transforms[format].filter((x) => x.product.hops !== undefined);
      const other = rounds.length ? median(rounds.map((x) => (x.product.hops!.originUrt - x.product.originTransformS) * 1000)) : NaN;
      return `| ${format.toUpperCase()} | ${f1(st.reserveStatMs)} | ${f1(st.sourceReadMs)} | ${f1(st.reserveWriteMs)} | ${f1(other)} | ${f1(other - st.reserveStatMs - st.sourceReadMs)} |`;
    }),
    '',
    `## 3. Origin memory under ${BURST} concurrent cold transforms`,
    '',
    `${BURST} new sources, each asked for once as a ${WIDTH} px AVIF through the balancer, all ${BURST} requests sent at once (the origin runs ${CONCURRENCY} and queues the rest); the origin's VmRSS read from /proc/<pid>/status every ${SAMPLE_MS} ms from before the first request until the last response, VmHWM (peak since the process started) before and after.`,
    '',
    '| RSS before | max sampled RSS | increase | RSS after | VmHWM before | VmHWM after | samples | burst | latency p50 / p99 |',
    '|---|---|---|---|---|---|---|---|---|',
    `| ${mib(mem.rssBeforeKiB)} MiB | **${mib(mem.maxRssKiB)} MiB** | ${mib(mem.maxRssKiB - mem.rssBeforeKiB)} MiB | ${mib(mem.rssAfterKiB)} MiB | ${mib(mem.hwmBeforeKiB)} MiB | ${mib(mem.hwmAfterKiB)} MiB | ${mem.samples} | ${f1(mem.burstS)} s | ${f0(mem.p50)} / ${f0(mem.p99)} ms |`,
    '',
    '## 4. Warm variant HITs against a plain asset HIT',
    '',
    `\`wrk -t1 -c${WRK_CONNECTIONS} -d${WRK_SECONDS}s\` against edge ${w.edge} directly, with the headers the balancer adds (X-Request-Id, X-Forwarded-For, X-Forwarded-Proto) and \`Accept: ${ACCEPT}\`: the variant \`${w.variantPath}\` (${w.contentType}, ${f0(w.bytes)} bytes; requested until a HIT first) against \`${w.plainPath}\`, the same bytes uploaded as a plain asset of the same type (no query, no \`Vary\`). ${ROUNDS} round(s), alternating which goes first; CPU µs per request is the edge worker's utime + stime (/proc) over the run. No transform ran meanwhile, and the variant was still a HIT after.`,
    '',
    '| round | variant req/s | plain req/s | variant / plain | variant CPU µs/req | plain CPU µs/req |',
    '|---|---|---|---|---|---|',
    ...w.rounds.map((x, i) => `| ${i + 1} | ${f0(x.variant.rps)} | ${f0(x.plain.rps)} | ${f2(x.variant.rps / x.plain.rps)} | ${f1(x.variant.cpuUsPerRequest)} | ${f1(x.plain.cpuUsPerRequest)} |`),
    `| **median** | ${f0(median(w.rounds.map((x) => x.variant.rps)))} | ${f0(median(w.rounds.map((x) => x.plain.rps)))} | **${f2(w.ratio)}** | ${f1(median(w.rounds.map((x) => x.variant.cpuUsPerRequest)))} | ${f1(median(w.rounds.map((x) => x.plain.cpuUsPerRequest)))} |`,
    '',
    `"A variant HIT costs what any other HIT costs": variant / plain req/s ${f2(w.ratio)}, edge worker CPU per request ${f2(w.cpuRatio)}x.`,
    '',
    'The two HIT responses (headers):',
    '',
    ...(['variant', 'plain'] as const).flatMap((k) => [`${k} \`${k === 'variant' ? w.variantPath : w.plainPath}\`:`, '', '```', ...Object.entries(w.headers[k]).map(([h, v]) => `${h}: ${v}`), '```', '']),
  ].join('\n');
}

// ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!fs.existsSync('/usr/bin/wrk')) throw new Error('/usr/bin/wrk is missing: install wrk with ./scripts/setup.sh --bench');
  const started = Date.now();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-images-'));
  let upResult: UpResult | undefined;
  try {
    upResult = await up({ spec: SPEC, stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
    const origin = upResult.state.services.find((s) => s.role === 'origin');
    if (!origin) throw new Error('the stack has no origin service');
    const stack: Stack = { up: upResult, token: fs.readFileSync(upResult.state.adminTokenFile, 'utf8').trim(), originPid: origin.pid };

    // Every source made before anything is measured (two at a time: the machine's cores).
    const count = ROUNDS * PER_ROUND + BURST + 1;
    process.stderr.write(`images benchmark: making ${count} ${SOURCE_WIDTH}x${SOURCE_HEIGHT} sources\n`);
    const genStart = Date.now();
    const run = randomBytes(4).toString('hex');
    const all = await pool(Array.from({ length: count }, (_, i) => i), 2, async (i) => ({ key: `bench/images/${run}-${i}.jpg`, bytes: await photo() }));
    const generateS = (Date.now() - genStart) / 1000;
    for (const s of all) await upload(stack, s.key, s.bytes, 'image/jpeg');
    const roundSources = Array.from({ length: ROUNDS }, (_, r) => all.slice(r * PER_ROUND, (r + 1) * PER_ROUND));
    const burstSources = all.slice(ROUNDS * PER_ROUND, ROUNDS * PER_ROUND + BURST);
    const warmSource = all[all.length - 1];
    const sourceMB = all.reduce((a, s) => a + s.bytes.length, 0) / all.length / 1e6;
    process.stderr.write(`  ${count} sources in ${generateS.toFixed(0)} s, ${sourceMB.toFixed(1)} MB each on average\n`);

    // One transform of each format in the origin and in this process first (libheif and
    // the encoders' one-off set-up), on the warm-up source, not counted.
    for (const format of FORMATS) {
      await coldRequest(stack, warmSource.key, format);
      for (const bare of BARES) await bareTransform(bare, warmSource.bytes, format);
    }

    const transforms: Record<Format, FormatRound[]> = { avif: [], webp: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const format of FORMATS) {
        await waitForQuiet(stack);
        const products: ProductBatch[] = [];
        const bares: Record<Bare, Batch[]> = { transformImage: [], 'hand-written sharp': [] };
        for (let c = 0; c < roundSources[r].length; c += CHUNK) {
          const chunk = roundSources[r].slice(c, c + CHUNK);
          products.push(await productBatch(stack, chunk, format));
          for (const kind of BARES) bares[kind].push(await bareBatch(stack, kind, chunk, format));
        }
        const product = mergeProduct(products);
        const bare = Object.fromEntries(BARES.map((kind) => [kind, mergeBatches(bares[kind])])) as Record<Bare, Batch>;
        transforms[format].push({ product, bare });
        process.stderr.write(`  round ${r + 1}/${ROUNDS} ${format}: product ${product.rate.toFixed(2)}/s, ${BARES.map((b) => `${b} ${bare[b].rate.toFixed(2)}/s`).join(', ')}; origin answer ${((product.hops?.originUrt ?? NaN) * 1000).toFixed(0)} ms = transform ${(product.originTransformS * 1000).toFixed(0)} + other (reserve put ${product.originPutMs.toFixed(1)} ms)\n`);
      }
    }

    process.stderr.write('  storage steps alone\n');
    const storage = {} as Record<Format, StorageSteps>;
    for (const format of FORMATS) {
      await waitForQuiet(stack);
      storage[format] = await storageSteps(path.join(stateDir, `bench-storage-${format}`), roundSources[ROUNDS - 1], Math.round(median(transforms[format].map((x) => x.product.meanBytes))));
    }

    process.stderr.write(`  memory: ${BURST} concurrent cold AVIF requests\n`);
    await waitForQuiet(stack);
    const memory = await memoryBurst(stack, burstSources);

    process.stderr.write('  warm HITs\n');
    const warm = await warmHits(stack, warmSource);

    const sharpVersions = sharp.versions as Record<string, string | undefined>;
    const report: Report = {
      command: `npm run bench:images${QUICK ? ' -- --quick' : ''}`,
      commit: commit(),
      date: new Date().toISOString(),
      machine: { nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()), model: cpuModel(), memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
      versions: `sharp ${sharpVersions.sharp}, libvips ${sharpVersions.vips}, libheif ${sharpVersions.heif}, aom ${sharpVersions.aom}, libwebp ${sharpVersions.webp}; sharp.concurrency() ${sharp.concurrency()} (libvips threads per pipeline, the same in the origin, which leaves sharp's default), Node ${process.version}`,
      generateS,
      sourceMB,
      runS: 0,
      transforms,
      storage,
      quiet,
      memory,
      warm,
    };
    report.runS = (Date.now() - started) / 1000;
    fs.mkdirSync(OUT, { recursive: true });
    const md = render(report);
    fs.writeFileSync(path.join(OUT, 'images.md'), md);
    process.stdout.write(md);
  } finally {
    await upResult?.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
