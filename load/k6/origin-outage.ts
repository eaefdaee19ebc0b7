/**
 * Origin outage: the catalogue is warmed, then the origin goes away for the middle
 * of the run (stop it yourself when the script logs "outage window": on aws
 * `sudo systemctl stop cdn-origin` on the origin instance through SSM, on docker
 * `docker stop shop-origin`; start it again when it logs "recovery"). Edges must
 * keep serving what they hold (stale-if-error), so cached objects stay available.
 *
 *   k6 run -e BASE_URL=$(pulumi stack output -s dev balancerUrl) load/k6/origin-outage.ts
 */
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';
import type { Options } from 'k6/options';
// k6 resolves local modules by their exact file name; load/k6/tsconfig.json allows the
// extension, the repository's tsconfig (which also sees load/) does not: hence the ignore.
import { BASE_URL, catalogue, zipf } from './lib.ts';

const WARM = Number(__ENV.WARM_OBJECTS ?? 100);
const items = catalogue().slice(0, WARM);
const pick = zipf(items.length, 0.9);
const served = new Rate('cdn_cached_served');

export const options: Options = {
  discardResponseBodies: true,
  scenarios: {
    warm: { executor: 'shared-iterations', exec: 'warm', vus: 10, iterations: WARM * 2, maxDuration: '1m' },
    before: { executor: 'constant-arrival-rate', exec: 'shop', startTime: '1m', duration: '1m', rate: 100, timeUnit: '1s', preAllocatedVUs: 20, maxVUs: 200, tags: { phase: 'before' } },
    outage: { executor: 'constant-arrival-rate', exec: 'shop', startTime: '2m', duration: '3m', rate: 100, timeUnit: '1s', preAllocatedVUs: 20, maxVUs: 200, tags: { phase: 'outage' } },
    recovery: { executor: 'constant-arrival-rate', exec: 'shop', startTime: '5m', duration: '1m', rate: 100, timeUnit: '1s', preAllocatedVUs: 20, maxVUs: 200, tags: { phase: 'recovery' } },
  },
  thresholds: {
    // objects the edges hold stay available while the origin is down
    'cdn_cached_served{phase:outage}': ['rate>0.999'],
    'http_req_failed{phase:outage}': ['rate<0.001'],
    'http_req_duration{phase:outage}': ['p(99)<300'],
    'cdn_cached_served{phase:recovery}': ['rate>0.999'],
    dropped_iterations: ['count<100'],
  },
};

export function warm(): void {
  const item = items[exec.scenario.iterationInTest % items.length];
  check(http.get(`${BASE_URL}${item.path}`), { 'warmed 200': (r) => r.status === 200 });
}

let announced = '';
export function shop(): void {
  const phase = exec.scenario.name;
  if (phase !== announced && exec.vu.idInTest === 1) {
    announced = phase;
    console.log(phase === 'outage' ? 'outage window: stop the origin now' : phase === 'recovery' ? 'recovery: start the origin again' : `phase ${phase}`);
  }
  const res = http.get(`${BASE_URL}${items[pick()].path}`, { tags: { name: 'asset' } });
  served.add(res.status === 200);
}
