/**
 * Storefront mix with a burst of purges: shoppers browse Zipf-distributed product
 * images and bundles (a few variants) at a constant arrival rate while the shop
 * purges popular products' tags, as a price change during a sale does.
 *
 *   k6 run -e BASE_URL=$(pulumi stack output -s dev balancerUrl) \
 *          -e ORIGIN_URL=$(pulumi stack output -s dev originApiUrl) \
 *          -e ADMIN_TOKEN=$(pulumi stack output -s dev --show-secrets adminToken) \
 *          load/k6/storefront.ts
 *
 * Thresholds are the SLOs: a failed threshold makes k6 exit non-zero.
 */
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
// k6 resolves local modules by their exact file name; load/k6/tsconfig.json allows the
// extension, the repository's tsconfig (which also sees load/) does not: hence the ignore.
import { authHeaders, BASE_URL, catalogue, env, isHit, VARIANTS, zipf } from './lib.ts';

const RATE = Number(__ENV.RATE ?? 200);
const items = catalogue();
const pick = zipf(items.length, Number(__ENV.ZIPF_S ?? 0.9));

const hits = new Rate('cdn_hits');
const hitDuration = new Trend('cdn_hit_duration', true);
const missDuration = new Trend('cdn_miss_duration', true);
const purges = new Counter('cdn_purges_accepted');

export const options: Options = {
  discardResponseBodies: true,
  scenarios: {
    browse: {
      executor: 'constant-arrival-rate',
      exec: 'browse',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION ?? '3m',
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
    purge_burst: {
      executor: 'constant-arrival-rate',
      exec: 'purge',
      rate: 5,
      timeUnit: '1s',
      startTime: '1m',
      duration: '30s',
      preAllocatedVUs: 5,
      maxVUs: 20,
    },
  },
  thresholds: {
    'http_req_failed{scenario:browse}': ['rate<0.01'],
    'http_req_duration{scenario:browse}': ['p(95)<200', 'p(99)<400'],
    cdn_hit_duration: ['p(99)<100'],
    cdn_miss_duration: ['p(99)<800'],
    // the hit ratio the shoppers see, purges included
    cdn_hits: ['rate>0.85'],
    cdn_purges_accepted: ['count>100'],
    // an open model drops iterations when it runs out of VUs: that is a failure too
    dropped_iterations: ['count<100'],
  },
};

export function browse(): void {
  const item = items[pick()];
  const res = http.get(`${BASE_URL}${item.path}${VARIANTS[Math.floor(Math.random() * VARIANTS.length)]}`, { tags: { name: 'asset' } });
  check(res, { 'status 200': (r) => r.status === 200 });
  const hit = isHit(res.headers['Cache-Status']);
  hits.add(hit);
  (hit ? hitDuration : missDuration).add(res.timings.duration);
}

export function purge(): void {
  // popular products are the ones whose prices change
  const item = items[Math.floor(Math.random() * 20)];
  const res = http.post(`${env('ORIGIN_URL')}/v1/purge`, JSON.stringify({ tags: [item.tag] }), { headers: authHeaders(), tags: { name: 'purge' } });
  check(res, { 'purge accepted': (r) => r.status === 202 });
  if (res.status === 202) purges.add(1);
}
