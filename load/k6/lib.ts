/**
 * Shared by the k6 scenarios: the target from the environment, the storefront
 * catalogue (the same keys as load/storefront.ts and load/load_tests.lua) and a Zipf
 * sampler. k6 runs on staged stacks only:
 *   k6 run -e BASE_URL=$(pulumi stack output -s dev balancerUrl) load/k6/storefront.ts
 */
/// <reference types="k6" />
import exec from 'k6/execution';
import { zipf as zipfWith } from '../zipf.ts';

export function env(name: string, fallback?: string): string {
  const v = __ENV[name] ?? fallback;
  if (v === undefined || v === '') {
    exec.test.abort(`set ${name} (k6 run -e ${name}=...)`);
    throw new Error(`${name} is not set`);
  }
  return v.replace(/\/$/, '');
}

/** The public front door: `pulumi stack output balancerUrl`. */
export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080');
export const PREFIX = __ENV.CDN_LOAD_PREFIX ?? 'shop';
export const IMAGES = Number(__ENV.CDN_LOAD_IMAGES ?? 200);
export const BUNDLES = Number(__ENV.CDN_LOAD_BUNDLES ?? 50);

export interface Item {
  path: string;
  tag: string;
}

/** Images and bundles, interleaved so both kinds have popular members. */
export function catalogue(prefix = PREFIX, images = IMAGES, bundles = BUNDLES): Item[] {
  const items: Item[] = [];
  for (let i = 0; i < Math.max(images, bundles); i++) {
    if (i < images) items.push({ path: `/${prefix}/products/p-${i}.jpg`, tag: `product-${i}` });
    if (i < bundles) items.push({ path: `/${prefix}/bundles/b-${i}.js`, tag: `bundle-${i}` });
  }
  return items;
}

/** Zipf(s) ranks 0..n-1 (the same sampler as the Node load generator). */
export function zipf(n: number, s = 0.9): () => number {
  return zipfWith(n, s, Math.random);
}

export const VARIANTS = ['', '', '', '?w=200', '?w=800', '?utm_source=newsletter'];

/** True when the edge's Cache-Status (RFC 9211) says the response came from its cache. */
export function isHit(cacheStatus: string | undefined): boolean {
  return /;\s*hit/.test(cacheStatus ?? '');
}

export function authHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${env('ADMIN_TOKEN')}`, 'Content-Type': 'application/json' };
}
