/**
 * Scheduled launches (issue #19) through a native stack, with two origin processes on
 * one Redis and one store: the stack's origin and a second one started here from the
 * same unit (its environment, other ports). A launch scheduled 3 s ahead through the
 * second origin, which is then stopped and started again, runs exactly once: one
 * purge on the stream at its time, one warming job ahead of it; every edge fetches the
 * purged object again, and the warmed objects are HITs for the first shopper in each
 * region.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { isAlive, startUnit, stopPid, waitHealthy, writeUnitFiles, type RunningService } from '../../infra/targets/native/supervisor';
import type { ServiceUnit } from '../../infra/units/units';
import { parseSpec } from '../../infra/model/spec';
import type { Launch } from '../../origin/src/launches/launches.service';
import { freePort } from '../support/ports';
import { get, rawRequest, waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

const STREAM = 'cdn:purges';
const WARMED = ['/spring/dress.txt', '/spring/coat.txt'];
const PURGED = '/home/featured.json';

let stack: UpResult;
let stateDir: string;
let token: string;
let redis: Redis;
/** The second origin process: its unit (the stack's origin's, other ports) and what runs. */
let secondUnit: ServiceUnit;
let second: RunningService;
let secondUrl: string;

const auth = () => ({ Authorization: `Bearer ${token}` });

/** A shopper's GET through the balancer from a region (the test is a trusted proxy that says which). */
async function shopper(region: string, p: string) {
  const r = await rawRequest(stack.state.balancer, p, { headers: { 'X-CDN-Region': region, Host: new URL(stack.state.balancer).host } });
  return { status: r.status, cacheStatus: String(r.headers['cache-status'] ?? '') };
}

async function launch(base: string, id: string): Promise<Launch> {
  const res = await fetch(`${base}/v1/launches/${id}`, { headers: auth() });
  expect(res.status).toBe(200);
  return (await res.json()) as Launch;
}

async function startSecond(): Promise<RunningService> {
  const svc = startUnit(secondUnit);
  await waitHealthy(svc, 30000);
  return svc;
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-launch-'));
  stack = await up({ spec: parseSpec({ balancer: { trustedProxies: ['127.0.0.1/32'] } }), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  redis = new Redis(stack.state.redis);
  const uploads: [string, string][] = [
    ['spring/dress.txt', 'spring-launch'],
    ['spring/coat.txt', 'spring-launch'],
    ['home/featured.json', 'homepage'],
  ];
  for (const [key, tag] of uploads) {
    const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, {
      method: 'PUT',
      headers: { ...auth(), 'Content-Type': 'text/plain', 'Cache-Control': 'public, max-age=3600', 'Surrogate-Key': tag },
      body: `${key} v1`,
    });
    expect(res.status).toBe(201);
  }

  // the second origin: the stack's origin unit as it is (same Redis, same storage
  // directory, same tokens), on ports of its own, in a directory of its own
  const origin = stack.services.find((s) => s.unit.role === 'origin')!.unit;
  const [port, apiPort] = [await freePort(), await freePort()];
  secondUrl = `http://127.0.0.1:${apiPort}`;
  secondUnit = {
    ...origin,
    name: 'origin-2',
    dir: path.join(stateDir, 'origin-2'),
    env: { ...origin.env, CDN_ORIGIN_PORT: String(port), CDN_ORIGIN_API_PORT: String(apiPort) },
    health: { kind: 'http', url: `${secondUrl}/readyz` },
    url: secondUrl,
  };
  expect(secondUnit.env.CDN_STORAGE_PATH).toBe(origin.env.CDN_STORAGE_PATH);
  writeUnitFiles(secondUnit);
  second = await startSecond();
}, 120000);

afterAll(async () => {
  if (second) await stopPid(second.pid);
  redis?.disconnect();
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('scheduled launches', () => {
  test('a launch 3 s ahead, with two origins and one of them restarted, warms once ahead and purges once at its time', async () => {
    // the object the launch purges is on every edge; the ones it warms on none
    for (const edge of stack.state.edges) {
      expect(await waitFor(async () => (await get(`${edge.url}${PURGED}`)).headers.get('cache-status')?.includes('; hit') ?? false, 2000)).toBeGreaterThanOrEqual(0);
    }
    const streamBefore = (await redis.xrange(STREAM, '-', '+')).length;
    expect(await redis.keys(`${STREAM}:warm:*`)).toEqual([]);
    const originPids = [stack.services.find((s) => s.unit.role === 'origin')!.pid, second.pid];

    const at = new Date(Date.now() + 3000).toISOString();
    const res = await fetch(`${secondUrl}/v1/launches`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ at, warm: { tags: ['spring-launch'] }, purge: { tags: ['homepage'] }, warmLeadSeconds: 2 }),
    });
    expect(res.status).toBe(201);
    const { id, status } = (await res.json()) as Launch;
    expect(status).toBe('scheduled');

    // the origin it was scheduled through goes away and comes back: the launch is in Redis
    await stopPid(second.pid);
    expect(isAlive(second.pid)).toBe(false);
    second = await startSecond();
    originPids.push(second.pid);
    expect(['scheduled', 'warming', 'purged', 'done']).toContain((await launch(secondUrl, id)).status);

    let done: Launch | undefined;
    expect(
      await waitFor(async () => {
        done = await launch(stack.state.origin, id);
        return done.status === 'done' || done.status === 'failed';
      }, 15000, 100),
    ).toBeGreaterThanOrEqual(0);
    const l = done!;
    expect(l).toMatchObject({ status: 'done', warmError: null, purgeError: null, warmInterruptions: 0, warmResult: { total: 4, warmed: 4, failed: 0 } });
    // at its time: never early, within 1 s (by the origin's clock, and by Redis's stream id)
    const atMs = Date.parse(l.at);
    expect(l.purgeLateMs).toBe(Date.parse(l.purgedAt!) - atMs);
    expect(l.purgeLateMs).toBeGreaterThanOrEqual(0);
    expect(l.purgeLateMs).toBeLessThan(1000);
    expect(Date.parse(l.warmStartedAt!)).toBeLessThan(atMs);
    // run by origin processes of this stack (host:pid)
    for (const by of [l.warmStartedBy!, l.purgedBy!]) expect(originPids).toContain(Number(by.split(':').pop()));

    // exactly once: one new entry on the stream, the launch's purge; one warming job
    const entries = (await redis.xrange(STREAM, '-', '+')).slice(streamBefore);
    const messages = entries.map(([, fields]) => JSON.parse(fields[1]) as { id: string; tags: string[] });
    expect(messages).toEqual([expect.objectContaining({ id: l.purgeId, tags: ['homepage'] })]);
    expect(Math.abs(Number(entries[0][0].split('-')[0]) - atMs)).toBeLessThan(1000);
    expect(await redis.keys(`${STREAM}:warm:*`)).toEqual([`${STREAM}:warm:${l.warmId}`]);
    const job = (await (await fetch(`${stack.state.origin}/v1/warm/${l.warmId}`, { headers: auth() })).json()) as { status: string; total: number; warmed: number; failures: unknown[] };
    expect(job).toMatchObject({ status: 'done', total: 4, warmed: 4, failures: [] });
    expect(await redis.zcard(`${STREAM}:launches:due`)).toBe(0);

    // every edge saw the purge: it fetches the object again
    for (const edge of stack.state.edges) {
      const r = await get(`${edge.url}${PURGED}`);
      expect([edge.id, r.status, r.headers.get('cache-status')]).toEqual([edge.id, 200, expect.stringMatching(/fwd=uri-miss/)]);
    }
    // and the warmed objects are HITs for the first shopper in each region
    for (const region of ['eu', 'us']) {
      for (const p of WARMED) {
        expect([region, p, (await shopper(region, p)).cacheStatus]).toEqual([region, p, expect.stringMatching(/; hit/)]);
      }
    }
  });
});
