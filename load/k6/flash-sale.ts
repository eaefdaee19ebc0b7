/**
 * Flash sale on cold objects: a new collection goes live (objects no edge holds yet)
 * and traffic jumps from nothing to a spike within seconds. Concurrent misses for one
 * key must collapse into one origin fetch per edge, so the origin sees about one
 * request per object and edge, not one per shopper.
 *
 *   k6 run -e BASE_URL=... -e ORIGIN_URL=... -e ADMIN_TOKEN=... [-e PROMETHEUS_URL=...] load/k6/flash-sale.ts
 *
 * setup() uploads the collection under a fresh prefix; with PROMETHEUS_URL the
 * teardown reads the origin's delivery requests during the spike and fails the run
 * when collapsing did not hold.
 */
import http from 'k6/http';
import { check, fail } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
// k6 resolves local modules by their exact file name; load/k6/tsconfig.json allows the
// extension, the repository's tsconfig (which also sees load/) does not: hence the ignore.
import { authHeaders, BASE_URL, env, isHit, zipf } from './lib.ts';

const OBJECTS = Number(__ENV.OBJECTS ?? 50);
const PEAK = Number(__ENV.PEAK ?? 1000);
const hits = new Rate('cdn_hits');
const coldDuration = new Trend('cdn_spike_duration', true);

export const options: Options = {
  discardResponseBodies: true,
  setupTimeout: '120s',
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: 200,
      maxVUs: 2000,
      stages: [
        { target: PEAK, duration: '10s' },
        { target: PEAK, duration: '50s' },
        { target: 0, duration: '10s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(99)<1000'],
    cdn_spike_duration: ['p(95)<300'],
    // after the first seconds nearly everything is a hit
    cdn_hits: ['rate>0.95'],
    dropped_iterations: ['count<500'],
  },
};

interface Data {
  prefix: string;
  since: number;
}

export function setup(): Data {
  const prefix = `sale-${Date.now()}`;
  const origin = env('ORIGIN_URL');
  for (let i = 0; i < OBJECTS; i++) {
    const res = http.put(`${origin}/v1/assets/${prefix}/p-${i}.jpg`, 'x'.repeat(20000 + i * 100), {
      headers: { ...authHeaders(), 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=86400', 'Surrogate-Key': `${prefix} product-${i}` },
    });
    if (res.status !== 200 && res.status !== 201) fail(`upload ${i}: ${res.status}`);
  }
  return { prefix, since: Date.now() };
}

const pick = zipf(OBJECTS, 1.1);

export default function (data: Data): void {
  const res = http.get(`${BASE_URL}/${data.prefix}/p-${pick()}.jpg`, { tags: { name: 'sale-asset' } });
  check(res, { 'status 200': (r) => r.status === 200 });
  hits.add(isHit(res.headers['Cache-Status']));
  coldDuration.add(res.timings.duration);
}

export function teardown(data: Data): void {
  const prom = __ENV.PROMETHEUS_URL;
  if (!prom) return;
  const seconds = Math.ceil((Date.now() - data.since) / 1000) + 30;
  const q = `sum(increase(cdn_origin_http_requests_total{route="/*",method="GET"}[${seconds}s]))`;
  const res = http.get(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`, { responseType: 'text' });
  const body = res.json() as { data?: { result?: { value: [number, string] }[] } };
  const originRequests = Number(body.data?.result?.[0]?.value[1] ?? NaN);
  const edges = Number(__ENV.EDGES ?? 4);
  // one fetch per object and edge, with slack for retries and Prometheus' extrapolation
  const bound = OBJECTS * edges * 2;
  console.log(`origin delivery requests during the spike: ${originRequests} (bound ${bound} for ${OBJECTS} objects x ${edges} edges)`);
  if (!(originRequests <= bound)) fail(`misses did not collapse: ${originRequests} origin requests for ${OBJECTS} cold objects`);
}
