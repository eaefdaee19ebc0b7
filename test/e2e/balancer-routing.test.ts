/**
 * The balancer in real nginx in front of stand-in edges: region choice (trusted
 * header, client network, default), consistent hashing, bounded load, region
 * fallback, retries, forwarding headers, host and connection limits.
 */
import * as http from 'node:http';
import { echo, startBalancer, startFakeEdge, stopBalancerAndEdges, type BalancerHandle, type FakeEdge } from './balancer-harness';
import { waitFor } from '../support/http';

let edges: FakeEdge[];
let balancer: BalancerHandle;

// 127.0.0.3 plays a trusted proxy in front; 127.0.0.2 a client network mapped to "us".
const SPEC = {
  regions: [
    { name: 'eu', edges: 2 },
    { name: 'us', edges: 2 },
  ],
  balancer: {
    trustedProxies: ['127.0.0.3/32'],
    cidrRegions: [
      { cidr: '127.0.0.2/32', region: 'us' },
      { cidr: '10.9.0.0/16', region: 'us' },
    ],
    health: { interval: 0.2, timeout: 0.5, fall: 2, rise: 2 },
    maxConnsPerClient: 4,
  },
};

const region = (id: string | null) => (id ?? '').split('-')[0];

// Each worker reads health into its routing view every 50 ms (balancer.lua), so
// routing follows /status.json within that; the bound leaves room for a busy machine.
const ROUTING_VIEW_MS = 500;

/** Waits until `path` is routed to `edgeId` again; ms taken, or -1. */
const routedBackTo = (path: string, edgeId: string) => waitFor(async () => (await echo(balancer.url, path)).edge === edgeId, ROUTING_VIEW_MS, 10);

beforeAll(async () => {
  edges = await Promise.all([startFakeEdge('eu-1', 'eu'), startFakeEdge('eu-2', 'eu'), startFakeEdge('us-1', 'us'), startFakeEdge('us-2', 'us')]);
  balancer = await startBalancer(SPEC, edges);
}, 30000);

afterAll(async () => {
  // killed edges leave the proxy's connection errors, by design
  expect(await stopBalancerAndEdges(balancer, edges, ['while connecting to upstream', 'upstream prematurely closed'])).toEqual([]);
});

describe('balancer routing', () => {
  test('an object always goes to the same edge of the default region, whatever its query', async () => {
    const seen = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const r = await echo(balancer.url, `/products/p-${i % 20}.jpg?w=${i}`);
      expect(r.status).toBe(200);
      expect(region(r.edge)).toBe('eu');
      const before = seen.get(`p-${i % 20}`);
      if (before) expect(r.edge).toBe(before);
      seen.set(`p-${i % 20}`, r.edge!);
    }
    // and the region's edges share the catalogue
    expect(new Set(seen.values()).size).toBe(2);
    // the host and the path's spelling are normalised as on the edge: same owner
    const a = await echo(balancer.url, '/products/p-1.jpg', { headers: { Host: 'SHOP.example:80' } });
    const b = await echo(balancer.url, '/products/%70-1.jpg', { headers: { Host: 'shop.example' } });
    expect(a.edge).toBe(b.edge);
  });

  test('a trusted proxy picks the region by header; anyone else\'s header is ignored', async () => {
    const trusted = await echo(balancer.url, '/r/1', { headers: { 'X-CDN-Region': 'us' }, localAddress: '127.0.0.3' });
    expect(region(trusted.edge)).toBe('us');
    // the header is not passed on to the edge
    expect(trusted.json.headers['x-cdn-region']).toBeUndefined();
    const untrusted = await echo(balancer.url, '/r/1', { headers: { 'X-CDN-Region': 'us' }, localAddress: '127.0.0.1' });
    expect(region(untrusted.edge)).toBe('eu');
    // an unknown region name from a trusted proxy falls through to the default
    const unknown = await echo(balancer.url, '/r/1', { headers: { 'X-CDN-Region': 'mars' }, localAddress: '127.0.0.3' });
    expect(region(unknown.edge)).toBe('eu');
  });

  test('a client network maps to its region; behind a trusted proxy, X-Forwarded-For names the client', async () => {
    expect(region((await echo(balancer.url, '/r/2', { localAddress: '127.0.0.2' })).edge)).toBe('us');
    expect(region((await echo(balancer.url, '/r/2', { localAddress: '127.0.0.3', headers: { 'X-Forwarded-For': '10.9.4.4' } })).edge)).toBe('us');
    // an untrusted client cannot claim another network
    expect(region((await echo(balancer.url, '/r/2', { localAddress: '127.0.0.1', headers: { 'X-Forwarded-For': '10.9.4.4' } })).edge)).toBe('eu');
  });

  test('forwarding headers and the request id are the balancer\'s, never the client\'s', async () => {
    const r = await echo(balancer.url, '/h', {
      headers: {
        'X-Forwarded-For': '6.6.6.6',
        'X-Forwarded-Host': 'evil.test',
        'X-Forwarded-Proto': 'https',
        'X-Request-Id': 'client-chosen-id-123',
        'X-Original-URL': '/admin',
        'X-HTTP-Method-Override': 'DELETE',
        Forwarded: 'for=6.6.6.6;host=evil.test',
      },
    });
    const h = r.json.headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBeUndefined();
    expect(h.forwarded).toBeUndefined();
    expect(h['x-original-url']).toBeUndefined();
    expect(h['x-http-method-override']).toBeUndefined();
    expect(h['x-request-id']).toMatch(/^[0-9a-f]{32}$/);
    expect(r.headers['x-request-id']).toBe(h['x-request-id']);
    // a trusted proxy's chain is extended
    const viaProxy = await echo(balancer.url, '/h', { localAddress: '127.0.0.3', headers: { 'X-Forwarded-For': '203.0.113.9' } });
    expect(viaProxy.json.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.3');
  });

  test('bounded load: below the floor an object stays on its home edge; a real rush spills to the next edge', async () => {
    const home = (await echo(balancer.url, '/hot/object.jpg')).edge!;
    // 100 clients at once (sent from the trusted proxy's address, which limit_conn
    // does not count) never leave the home edge: every repeat finds the object
    // where it was stored (spec balancer.boundedLoadFloor, 128 in flight)
    const calm = await Promise.all(Array.from({ length: 100 }, () => echo(balancer.url, '/hot/object.jpg?sleep=0.3', { localAddress: '127.0.0.3' })));
    expect(calm.map((r) => `${r.status} ${r.edge}`)).toEqual(calm.map(() => `200 ${home}`));
    // 192 at once: the owner holds at most max(128, ceil(1.25 x (in flight + 1) / 2))
    // of them, the rest go to the region's other edge
    const rush = await Promise.all(Array.from({ length: 192 }, () => echo(balancer.url, '/hot/object.jpg?sleep=0.5', { localAddress: '127.0.0.3' })));
    const counts = new Map<string, number>();
    for (const r of rush) {
      expect(r.status).toBe(200);
      counts.set(r.edge!, (counts.get(r.edge!) ?? 0) + 1);
    }
    expect([...counts.keys()].every((id) => region(id) === 'eu')).toBe(true);
    expect(counts.size).toBe(2);
    expect(counts.get(home)).toBeGreaterThanOrEqual(96);
    expect(counts.get(home)).toBeLessThanOrEqual(128);
    // once the rush is over, the object is back on its owner alone
    const owners = new Set<string>();
    for (let i = 0; i < 5; i++) owners.add((await echo(balancer.url, '/hot/object.jpg')).edge!);
    expect([...owners]).toEqual([home]);
    // in-flight counts went back to zero
    const settled = await waitFor(async () => (await balancer.status()).edges.every((e) => e.in_flight === 0), 2000, 50);
    expect(settled).toBeGreaterThanOrEqual(0);
  });

  test('limit_conn: requests in progress per client address are capped (429), trusted proxies exempt', async () => {
    const results = await Promise.all(Array.from({ length: 7 }, (_, i) => echo(balancer.url, `/slow/${i}?sleep=0.4`)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200).length).toBe(4);
    expect(statuses.filter((s) => s === 429).length).toBe(3);
    const proxied = await Promise.all(Array.from({ length: 7 }, (_, i) => echo(balancer.url, `/slow/${i}?sleep=0.3`, { localAddress: '127.0.0.3' })));
    expect(proxied.every((r) => r.status === 200)).toBe(true);
  });

  test('a dead edge: the request is retried on the next edge, and the checks mark it down in under 3 s', async () => {
    const victim = edges[0];
    // find an object the victim owns
    let owned = '';
    for (let i = 0; i < 50 && !owned; i++) {
      if ((await echo(balancer.url, `/own/${i}`)).edge === victim.id) owned = `/own/${i}`;
    }
    expect(owned).not.toBe('');
    await victim.kill();
    const killedAt = Date.now();
    // no traffic: only the active checks can notice
    const downAfter = await waitFor(async () => !(await balancer.status()).edges.find((e) => e.id === victim.id)!.up, 3000, 25);
    expect(downAfter).toBeGreaterThanOrEqual(0);
    expect(Date.now() - killedAt).toBeLessThan(3000);
    // its objects are served by the other eu edge meanwhile
    const r = await echo(balancer.url, owned);
    expect(r.status).toBe(200);
    expect(r.edge).toBe('eu-2');
    // back after `rise` good checks
    await victim.start();
    const back = await waitFor(async () => (await balancer.status()).edges.find((e) => e.id === victim.id)!.up, 3000, 25);
    expect(back).toBeGreaterThanOrEqual(0);
    expect(await routedBackTo(owned, victim.id)).toBeGreaterThanOrEqual(0);
  });

  test('a request whose body arrives after other requests were routed still goes to its own object\'s edge', async () => {
    // balance() reuses the route the front door just worked out when it is for
    // the same request; a POST waiting for its body must not take another's
    const ownerOf = async (p: string) => (await echo(balancer.url, p)).edge;
    let slow = '';
    let other = '';
    for (let i = 0; i < 50 && !(slow && other); i++) {
      const p = `/body/${i}`;
      if ((await ownerOf(p)) === 'eu-1') slow ||= p;
      else other ||= p;
    }
    const u = new URL(balancer.url);
    const posted = new Promise<{ status: number; edge: string }>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: slow, method: 'POST', headers: { 'Content-Length': '4' }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, edge: JSON.parse(Buffer.concat(chunks).toString()).edge }));
      });
      req.on('error', reject);
      req.flushHeaders();
      // (a failed check here fails the test at once, not by a hung POST's timeout)
      setTimeout(() => {
        (async () => {
          for (let i = 0; i < 5; i++) expect(await ownerOf(other)).not.toBe('eu-1');
          req.end('body');
        })().catch((err) => {
          req.destroy();
          reject(err);
        });
      }, 200);
    });
    expect(await posted).toEqual({ status: 200, edge: 'eu-1' });
  });

  test('GETs are retried on the next edge before any check notices; POSTs are not', async () => {
    const victim = edges[1]; // eu-2
    let owned = '';
    for (let i = 0; i < 50 && !owned; i++) {
      if ((await echo(balancer.url, `/own2/${i}`)).edge === victim.id) owned = `/own2/${i}`;
    }
    await victim.kill();
    const get = await echo(balancer.url, owned);
    expect(get.status).toBe(200);
    expect(get.edge).toBe('eu-1');
    const post = await echo(balancer.url, owned, { method: 'POST', body: 'x' });
    // the passive failure of the GET may already have taken the edge out; if not,
    // the POST must fail rather than be replayed on another edge
    expect([200, 502]).toContain(post.status);
    if (post.status === 200) expect(post.edge).toBe('eu-1');
    await victim.start();
    await waitFor(async () => (await balancer.status()).edges.find((e) => e.id === victim.id)!.up, 3000, 25);
    expect(await routedBackTo(owned, victim.id)).toBeGreaterThanOrEqual(0);
  });

  test('an edge answering 502 is not retried (an origin failing with 5xx is not asked twice), for GET or MKCOL', async () => {
    const owner = (await echo(balancer.url, '/webdav/folder')).edge;
    const get = await echo(balancer.url, '/webdav/folder?status=502');
    expect(get.status).toBe(502);
    expect(get.edge).toBe(owner); // one try: the answer is the owner's
    const mkcol = await echo(balancer.url, '/webdav/folder?status=502', { method: 'MKCOL' });
    expect(mkcol.status).toBe(502);
    expect(mkcol.edge).toBe(owner); // one try only
    // every try was given back: in-flight counts are published a few times a second
    const settled = await waitFor(async () => (await balancer.status()).edges.every((e) => e.in_flight === 0), 2000, 50);
    expect(settled).toBeGreaterThanOrEqual(0);
  });

  test("shoppers get the edge's Date (the stored response's, from the origin), not the time the balancer passed it on", async () => {
    const date = 'Tue, 01 Dec 2026 10:00:00 GMT';
    const res = await fetch(`${balancer.url}/dated/object.jpg?date=${encodeURIComponent(date)}`);
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get('date')).toBe(date);
  });

  test('a region with no edge left hands its traffic to the next region in order', async () => {
    await Promise.all([edges[0].kill(), edges[1].kill()]);
    const down = await waitFor(async () => (await balancer.status()).regions.find((r) => r.name === 'eu')!.edges_up === 0, 3000, 25);
    expect(down).toBeGreaterThanOrEqual(0);
    for (let i = 0; i < 10; i++) {
      const r = await echo(balancer.url, `/fallback/${i}`);
      expect(r.status).toBe(200);
      expect(region(r.edge)).toBe('us');
    }
    await Promise.all([edges[0].start(), edges[1].start()]);
    const up = await waitFor(async () => (await balancer.status()).regions.find((r) => r.name === 'eu')!.edges_up === 2, 3000, 25);
    expect(up).toBeGreaterThanOrEqual(0);
    expect(await waitFor(async () => region((await echo(balancer.url, '/fallback/1')).edge) === 'eu', ROUTING_VIEW_MS, 10)).toBeGreaterThanOrEqual(0);
  });
});
