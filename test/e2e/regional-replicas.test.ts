/**
 * Invalidation across regions: the second region's edge follows the purge stream
 * from a Redis replica of its own (a second redis-server replicating from the
 * first, as the aws target runs one per region), acknowledges to the primary, keeps
 * serving while the link between the two is down, and catches up when it returns.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { parseSpec } from '../../infra/model/spec';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { get, waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

let stack: UpResult;
let stateDir: string;
let token: string;
let primary: Redis;
let replica: Redis;

const edge = (region: string) => stack.state.edges.find((e) => e.region === region)!;
const auth = () => ({ Authorization: `Bearer ${token}` });

async function upload(key: string, body: string, tags: string) {
  const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, { method: 'PUT', headers: { ...auth(), 'Content-Type': 'text/plain', 'Surrogate-Key': tags, 'Cache-Control': 'public, max-age=3600' }, body });
  expect(res.status).toBeLessThan(300);
}

async function purgeTag(tag: string): Promise<string> {
  const res = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: [tag] }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** The primary's TLS port, which the replica and the us edge dial (the links that cross regions), from its rendered redis.conf. */
const primaryTlsPort = () => Number(/^tls-port (\d+)$/m.exec(fs.readFileSync(path.join(stateDir, 'redis', 'redis.conf'), 'utf8'))![1]);

const cacheStatus = async (base: string, key: string) => (await get(`${base}/${key}`)).headers.get('cache-status') ?? '';

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-replicas-'));
  stack = await up({ spec: parseSpec({ regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }] }), stateDir, repoRoot: REPO_ROOT, prometheus: false, regionalReplicas: true, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  primary = new Redis(stack.state.redis);
  const replicaUnit = stack.services.find((s) => s.unit.name === 'redis-us')!.unit;
  replica = new Redis(replicaUnit.url!);
}, 90000);

afterAll(async () => {
  primary?.disconnect();
  replica?.disconnect();
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('the second region reads from its replica and acknowledges to the primary; the first reads the primary', async () => {
  const settings = (id: string) => JSON.parse(fs.readFileSync(path.join(stateDir, `edge-${id}`, 'edge.json'), 'utf8'));
  const primaryPort = Number(new URL(stack.state.redis).port);
  const replicaPort = Number(new URL(stack.services.find((s) => s.unit.name === 'redis-us')!.unit.url!).port);
  expect(settings('eu-1').redis.port).toBe(primaryPort);
  expect(settings('eu-1').acknowledge).toBeUndefined();
  expect(settings('us-1').redis.port).toBe(replicaPort);
  // across regions, over TLS: the us edge acknowledges, and the replica replicates, on the primary's TLS port
  expect(primaryTlsPort()).not.toBe(primaryPort);
  expect(settings('us-1').acknowledge).toEqual({ host: '127.0.0.1', port: primaryTlsPort(), tls: { serverName: 'redis.cdn.internal' } });
  expect(await replica.config('GET', 'tls-replication')).toEqual(['tls-replication', 'yes']);
  // the replica's first sync
  expect(await waitFor(async () => /role:slave[\s\S]*master_link_status:up/.test(await replica.info('replication')), 5000)).toBeGreaterThanOrEqual(0);
  expect(await replica.info('replication')).toContain(`master_port:${primaryTlsPort()}`);
});

test('a purge reaches both regions, and the purge API reports both edges applied it', async () => {
  await upload('replicas/a.txt', 'v1', 'replicated');
  for (const r of ['eu', 'us']) {
    await get(`${edge(r).url}/replicas/a.txt`);
    expect(await cacheStatus(edge(r).url, 'replicas/a.txt')).toContain('hit');
  }
  const id = await purgeTag('replicated');
  for (const r of ['eu', 'us']) {
    expect(await waitFor(async () => !(await cacheStatus(edge(r).url, 'replicas/a.txt')).includes('hit'), 3000)).toBeGreaterThanOrEqual(0);
  }
  // the us edge's acknowledgement went to the primary (the replica is read-only)
  const complete = await waitFor(async () => {
    const res = await fetch(`${stack.state.origin}/v1/purge/${id}`, { headers: auth() });
    return ((await res.json()) as { complete: boolean }).complete;
  }, 3000);
  expect(complete).toBeGreaterThanOrEqual(0);
});

test('while the link between the regions is down the second region keeps serving; it catches up when the link returns', async () => {
  await upload('replicas/b.txt', 'v1', 'flapping');
  await get(`${edge('us').url}/replicas/b.txt`);
  expect(await cacheStatus(edge('us').url, 'replicas/b.txt')).toContain('hit');
  // cut the link: the replica now waits for a primary that is not there
  await replica.call('REPLICAOF', '127.0.0.1', '1');
  await purgeTag('flapping');
  await new Promise((r) => setTimeout(r, 500));
  // the us edge never heard of it: it keeps serving its stored copy
  expect(await cacheStatus(edge('us').url, 'replicas/b.txt')).toContain('hit');
  expect(await cacheStatus(edge('eu').url, 'replicas/b.txt')).not.toContain('hit');
  // the link returns: the replica resyncs, the edge applies the purge it missed
  const back = Date.now();
  await replica.call('REPLICAOF', '127.0.0.1', String(primaryTlsPort()));
  const caughtUp = await waitFor(async () => !(await cacheStatus(edge('us').url, 'replicas/b.txt')).includes('hit'), 10000);
  expect(caughtUp).toBeGreaterThanOrEqual(0);
  expect(await replica.info('replication')).toMatch(/master_link_status:up/);
  process.stdout.write(`replica link restored; the us edge applied the missed purge ${Date.now() - back} ms later\n`);
});
