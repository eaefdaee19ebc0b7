/**
 * Health with the spec's default settings (interval 1 s, timeout 0.5 s, fall 2,
 * rise 2): a dead edge is out in under 3 s with no traffic at all, sooner with
 * traffic (passive failures count), and back after `rise` good checks. And edges
 * are added and removed at run time by re-rendering and reloading (SIGHUP) without
 * dropping a request in flight.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { reloadUnit } from '../../infra/targets/native/supervisor';
import { parseSpec } from '../../infra/model/spec';
import { waitFor } from '../support/http';
import { echo, startBalancer, startFakeEdge, stopBalancerAndEdges, type BalancerHandle, type FakeEdge } from './balancer-harness';

let edges: FakeEdge[];
let balancer: BalancerHandle;

const edgeState = async (id: string) => (await balancer.status()).edges.find((e) => e.id === id);

beforeAll(async () => {
  edges = await Promise.all([startFakeEdge('eu-1', 'eu'), startFakeEdge('eu-2', 'eu'), startFakeEdge('eu-3', 'eu')]);
  balancer = await startBalancer({ regions: [{ name: 'eu', edges: 2 }] }, edges.slice(0, 2));
}, 30000);

afterAll(async () => {
  expect(await stopBalancerAndEdges(balancer, edges, ['while connecting to upstream'])).toEqual([]);
});

describe('balancer health (defaults)', () => {
  test('the defaults promise detection in under 3 s', () => {
    const h = parseSpec({}).balancer.health;
    expect(h).toEqual({ interval: 1, timeout: 0.5, fall: 2, rise: 2 });
    expect(h.interval * h.fall + h.timeout).toBeLessThan(3);
  });

  test('with no traffic, the active checks mark a killed edge down in under 3 s, and it rejoins after rise', async () => {
    expect((await edgeState('eu-1'))!.up).toBe(true);
    await edges[0].kill();
    const started = Date.now();
    const down = await waitFor(async () => !(await edgeState('eu-1'))!.up, 3000, 20);
    expect(down).toBeGreaterThanOrEqual(0);
    expect(Date.now() - started).toBeLessThan(3000);
    const state = await edgeState('eu-1');
    expect(state!.health.last_check).toMatch(/failed to connect/);
    expect(balancer.errorLog()).toMatch(/\[warn\].*balancer health: edge eu-1 is down after 2 failures/);

    await edges[0].start();
    const restarted = Date.now();
    const up = await waitFor(async () => (await edgeState('eu-1'))!.up, 4000, 20);
    expect(up).toBeGreaterThanOrEqual(0);
    // rise = 2 good checks, one interval apart
    expect(Date.now() - restarted).toBeLessThan(3000);
    expect(balancer.errorLog()).toMatch(/edge eu-1 is back after 2 good checks/);
  });

  test('under traffic, failed connections count too: the edge is out almost at once, and no GET fails', async () => {
    await edges[1].kill();
    const started = Date.now();
    let failed = 0;
    let sent = 0;
    let downAt = -1;
    while (Date.now() - started < 1500) {
      const r = await echo(balancer.url, `/t/${sent++}`);
      if (r.status !== 200) failed++;
      if (downAt < 0 && !(await edgeState('eu-2'))!.up) downAt = Date.now() - started;
    }
    expect(failed).toBe(0);
    expect(downAt).toBeGreaterThanOrEqual(0);
    expect(downAt).toBeLessThan(1000);
    await edges[1].start();
    expect(await waitFor(async () => (await edgeState('eu-2'))!.up, 4000, 20)).toBeGreaterThanOrEqual(0);
  });
});

describe('balancer reload', () => {
  test('adding an edge by re-render + SIGHUP keeps the request in flight and routes to the new edge', async () => {
    const before = await balancer.status();
    const inFlight = echo(balancer.url, '/slow/in-flight?sleep=1.5');
    await new Promise((r) => setTimeout(r, 200));
    await balancer.reload(edges, { regions: [{ name: 'eu', edges: 3 }] });
    const after = await balancer.status();
    expect(after.revision).not.toBe(before.revision);
    expect(after.edges.map((e) => e.id)).toEqual(['eu-1', 'eu-2', 'eu-3']);
    const slow = await inFlight;
    expect(slow.status).toBe(200);
    // the new edge owns about a third of the objects
    const owners = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const r = await echo(balancer.url, `/after-reload/${i}`);
      expect(r.status).toBe(200);
      owners.set(r.edge!, (owners.get(r.edge!) ?? 0) + 1);
    }
    expect(owners.get('eu-3') ?? 0).toBeGreaterThan(5);
    // counters survive the reload (they live in shared memory)
    const e1 = after.edges.find((e) => e.id === 'eu-1')!;
    expect(e1.requests).toBeGreaterThanOrEqual(before.edges.find((e) => e.id === 'eu-1')!.requests);
  });

  test('removing an edge moves only its objects', async () => {
    const owners = new Map<string, string>();
    for (let i = 0; i < 60; i++) owners.set(`/move/${i}`, (await echo(balancer.url, `/move/${i}`)).edge!);
    await balancer.reload(edges.slice(0, 2), { regions: [{ name: 'eu', edges: 2 }] });
    for (const [p, owner] of owners) {
      const now = (await echo(balancer.url, p)).edge!;
      if (owner !== 'eu-3') expect(now).toBe(owner);
      else expect(now).not.toBe('eu-3');
    }
  });

  test('a configuration nginx refuses is not applied, and the balancer keeps serving', async () => {
    const broken = { ...balancer.unit, files: balancer.unit.files.map((f) => (f.path === 'conf/nginx.conf' ? { ...f, content: f.content.replace('keepalive 64;', 'keepalive banana;') } : f)) };
    await expect(reloadUnit(balancer.svc, broken)).rejects.toThrow(/refused, the running one is kept/);
    expect((await echo(balancer.url, '/still')).status).toBe(200);
    const conf = fs.readFileSync(path.join(balancer.dir, 'conf', 'nginx.conf'), 'utf8');
    expect(conf).toContain('keepalive 64;');
  });
});
