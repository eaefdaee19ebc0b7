/**
 * A storefront mix in Node (fetch), for tests and `npm run bench`: product images and
 * bundles drawn from a Zipf distribution, a few variants (`?w=`), some marketing
 * query strings (dropped from the cache key), a trickle of 404s and, optionally, a
 * burst of tag purges during the run. The same mix as load/load_tests.lua (wrk) and
 * load/k6/storefront.ts (k6). Bounded in time and concurrency; 127.0.0.1 only in this
 * repository's tests and benchmarks.
 */

import sharp from 'sharp';
import { zipf } from './zipf';

export { zipf };

/** A seeded PRNG (mulberry32): the same run draws the same keys. */
export function rng(seed = 42): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}


export interface CatalogueItem {
  key: string;
  tag: string;
  bytes: number;
}

/** The catalogue's keys: images (2-48 KiB) and bundles (16-96 KiB), each with a product tag. */
export function catalogue(o: { images: number; bundles: number; prefix?: string }): CatalogueItem[] {
  const r = rng(7);
  const prefix = o.prefix ?? 'shop';
  const items: CatalogueItem[] = [];
  for (let i = 0; i < Math.max(o.images, o.bundles); i++) {
    if (i < o.images) items.push({ key: `${prefix}/products/p-${i}.jpg`, tag: `product-${i}`, bytes: 2048 + Math.floor(r() * 46) * 1024 });
    if (i < o.bundles) items.push({ key: `${prefix}/bundles/b-${i}.js`, tag: `bundle-${i}`, bytes: 16384 + Math.floor(r() * 80) * 1024 });
  }
  return items;
}

/** Uploads the catalogue to the origin (cacheable for a day), a few at a time. */
export async function seedCatalogue(origin: string, token: string, items: CatalogueItem[], concurrency = 8): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      const res = await fetch(`${origin}/v1/assets/${item.key}`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': item.key.endsWith('.jpg') ? 'image/jpeg' : 'application/octet-stream', 'Cache-Control': 'public, max-age=86400', 'Surrogate-Key': item.tag },
        body: item.key.endsWith('.jpg') ? await jpegOfSize(item.bytes, next) : Buffer.alloc(item.bytes, item.key.length % 250),
      });
      if (!res.ok) throw new Error(`PUT ${item.key}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * A real JPEG (a 1200x900 picture, so `?w=` variants are made from it) of exactly
 * `bytes` bytes when it fits: the picture is small, and JPEG comment segments (which
 * decoders skip and variants drop) make up the rest, so sizes stay what the mix says.
 */
export async function jpegOfSize(bytes: number, seed: number): Promise<Buffer> {
  const picture = await sharp({ create: { width: 1200, height: 900, channels: 3, background: { r: (seed * 37) % 256, g: (seed * 91) % 256, b: 120 } } })
    .jpeg({ quality: 80 })
    .toBuffer();
  const segments: Buffer[] = [];
  for (let missing = bytes - picture.length; missing >= 4; ) {
    const data = Math.min(missing - 4, 65533);
    const segment = Buffer.alloc(4 + data, 0x20);
    segment.writeUInt16BE(0xfffe, 0); // COM
    segment.writeUInt16BE(data + 2, 2);
    segments.push(segment);
    missing -= segment.length;
  }
  // after SOI, before everything else
  return Buffer.concat([picture.subarray(0, 2), ...segments, picture.subarray(2)]);
}

export interface StorefrontOptions {
  baseUrl: string;
  items: CatalogueItem[];
  /** Zipf exponent (default 0.9). */
  s?: number;
  concurrency?: number;
  /** Hard bound on the run (ms); `signal` may stop it earlier. */
  durationMs: number;
  /** Stop after this many requests (so that runs against different targets compare the same stream). */
  maxRequests?: number;
  signal?: AbortSignal;
  /** Share of requests for keys that do not exist (default 0.02). */
  notFoundShare?: number;
  /** Tag purges during the run: one every `everyMs` for a random popular item. */
  purges?: { origin: string; token: string; everyMs: number };
  seed?: number;
  /** Extra request headers (e.g. a region header through a trusted proxy). */
  headers?: Record<string, string>;
}

export interface StorefrontStats {
  requests: number;
  errors: number;
  byStatus: Record<string, number>;
  /** Responses whose Cache-Status says `hit` (served from an edge's cache). */
  hits: number;
  bytes: number;
  hitBytes: number;
  purges: number;
  seconds: number;
  latenciesMs: { hit: number[]; miss: number[] };
}

/** A hit: the edge's RFC 9211 `<edge>; hit`, or plain nginx's `HIT` ($upstream_cache_status, the bench reference). */
export function isCacheHit(cacheStatus: string | null | undefined): boolean {
  const v = (cacheStatus ?? '').trim();
  return /;\s*hit\b/.test(v) || v === 'HIT';
}

const VARIANTS = ['', '', '', '?w=200', '?w=800', '?utm_source=newsletter'];

/** Runs the mix until `durationMs` or the signal; returns what the clients saw. */
export async function runStorefront(o: StorefrontOptions): Promise<StorefrontStats> {
  const random = rng(o.seed ?? 42);
  const pick = zipf(o.items.length, o.s ?? 0.9, random);
  const stats: StorefrontStats = { requests: 0, errors: 0, byStatus: {}, hits: 0, bytes: 0, hitBytes: 0, purges: 0, seconds: 0, latenciesMs: { hit: [], miss: [] } };
  const started = Date.now();
  const deadline = started + o.durationMs;
  let issued = 0;
  const done = () => Date.now() >= deadline || o.signal?.aborted === true || (o.maxRequests !== undefined && issued >= o.maxRequests);
  const client = async () => {
    while (!done()) {
      issued++;
      const nf = random() < (o.notFoundShare ?? 0.02);
      const item = o.items[pick()];
      const p = nf ? `/shop/products/missing-${Math.floor(random() * 50)}.jpg` : `/${item.key}${VARIANTS[Math.floor(random() * VARIANTS.length)]}`;
      const t = performance.now();
      try {
        const res = await fetch(`${o.baseUrl}${p}`, { headers: o.headers, signal: AbortSignal.timeout(10000) });
        const body = await res.arrayBuffer();
        const ms = performance.now() - t;
        stats.requests++;
        stats.byStatus[res.status] = (stats.byStatus[res.status] ?? 0) + 1;
        stats.bytes += body.byteLength;
        const hit = isCacheHit(res.headers.get('cache-status'));
        if (hit) {
          stats.hits++;
          stats.hitBytes += body.byteLength;
        }
        (hit ? stats.latenciesMs.hit : stats.latenciesMs.miss).push(ms);
        if (res.status >= 500) stats.errors++;
      } catch {
        stats.requests++;
        stats.errors++;
      }
    }
  };
  const purger = async () => {
    if (!o.purges) return;
    const { origin, token, everyMs } = o.purges;
    while (!done()) {
      await new Promise((r) => setTimeout(r, Math.min(everyMs, Math.max(0, deadline - Date.now()))));
      if (done()) break;
      const item = o.items[pick()];
      const res = await fetch(`${origin}/v1/purge`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ tags: [item.tag] }),
      });
      await res.arrayBuffer();
      if (res.status === 202) stats.purges++;
    }
  };
  await Promise.all([...Array.from({ length: o.concurrency ?? 8 }, client), purger()]);
  stats.seconds = (Date.now() - started) / 1000;
  return stats;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
