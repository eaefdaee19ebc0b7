/**
 * Invalidation by writes across the fleet (RFC 9111 §4.4, issue #16) through a
 * native stack with the default spec (two regions of two edges) and an external
 * origin: a successful unsafe request whose Location or Content-Location names
 * another path of the same host invalidates that path on the edges that hold it,
 * not only on the edge that answered the write (balancer/lua/cdn/balancer/writes.lua,
 * the edges' POST /invalidate). The paths are chosen so that the write and its
 * target live on different edges, where the writer's own invalidation misses.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { REPO_ROOT } from '../support/nginx-lua';

let stack: UpResult;
let stateDir: string;
let origin: http.Server;
let originUrl: string;
// keep-alive, as browsers and the conformance suite: the next request follows at once
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let run = 0;

/**
 * The origin: GETs are cacheable for an hour (their body counts the fetches);
 * any other method answers ?status (201) with the Location / Content-Location
 * the query names.
 */
function startOrigin(): Promise<void> {
  let fetches = 0;
  origin = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const u = new URL(req.url!, 'http://origin');
      if (req.method === 'GET' || req.method === 'HEAD') {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'max-age=3600' });
        res.end(`${u.pathname} #${++fetches}`);
        return;
      }
      const headers: Record<string, string> = { 'Content-Type': 'text/plain' };
      if (u.searchParams.get('loc')) headers.Location = u.searchParams.get('loc')!;
      if (u.searchParams.get('cl')) headers['Content-Location'] = u.searchParams.get('cl')!;
      res.writeHead(Number(u.searchParams.get('status') ?? 201), headers);
      res.end('written');
    });
  });
  return new Promise((resolve) =>
    origin.listen(0, '127.0.0.1', () => {
      originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
      resolve();
    }),
  );
}

interface Answer {
  status: number;
  /** The edge that answered (the last Cache-Status member's name). */
  edge: string;
  hit: boolean;
  body: string;
}

/** A request through the balancer from `region` (the test is a trusted proxy). */
function request(region: string, target: string, method = 'GET'): Promise<Answer> {
  const u = new URL(stack.state.balancer);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: target, method, agent, headers: { 'X-CDN-Region': region, ...(method === 'GET' ? {} : { 'Content-Length': '0' }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const cs = String(res.headers['cache-status'] ?? '').split(',').pop()!.trim();
        resolve({ status: res.statusCode ?? 0, edge: cs.split(';')[0].trim(), hit: /;\s*hit\b/.test(cs), body: Buffer.concat(chunks).toString() });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Stores `target` in `region` and checks that it is served from there. */
async function stored(region: string, target: string): Promise<Answer> {
  await request(region, target);
  const second = await request(region, target);
  expect(second).toMatchObject({ status: 200, hit: true });
  return second;
}

/**
 * A fresh directory's target and a write path whose home edges in `region`
 * differ (found by storing candidates and reading who answered).
 */
async function pathsOnTwoEdges(region: string): Promise<{ dir: string; target: string; write: string; targetEdge: string }> {
  const dir = `/w/${Date.now()}-${++run}`;
  const target = `${dir}/target`;
  const targetEdge = (await stored(region, target)).edge;
  for (let i = 0; i < 64; i++) {
    const write = `${dir}/form-${i}`;
    if ((await request(region, write)).edge !== targetEdge) return { dir, target, write, targetEdge };
  }
  throw new Error('no write path on another edge');
}

/** The internal listener of the first service with `role`. */
const internalOf = (role: string) => new URL((stack.services.find((s) => s.unit.role === role)!.unit.health as { url: string }).url).origin;

beforeAll(async () => {
  await startOrigin();
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-writes-'));
  stack = await up({
    spec: parseSpec({ origins: [{ match: '*', url: originUrl }], balancer: { trustedProxies: ['127.0.0.1/32'] } }),
    stateDir,
    repoRoot: REPO_ROOT,
    prometheus: false,
    detached: true,
  });
}, 90000);

afterAll(async () => {
  agent.destroy();
  await stack?.stop();
  origin?.close();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('invalidation by writes across edges', () => {
  // each case 10 times over: the invalidation races the client's next request
  const cases: [string, (t: string) => string][] = [
    ['POST', (t) => `loc=${encodeURIComponent(t)}`],
    ['PUT', (t) => `cl=${encodeURIComponent(t)}`],
    ['DELETE', (t) => `cl=${encodeURIComponent(`http://${new URL(stack.state.balancer).host}${t}`)}`],
    ['M-SEARCH', (t) => `loc=${encodeURIComponent(t)}`],
  ];
  test.each(cases)('a successful %s naming a path stored on another edge: the next GET is not served from cache', async (method, query) => {
    for (let i = 0; i < 10; i++) {
      const { target, write, targetEdge } = await pathsOnTwoEdges('eu');
      const w = await request('eu', `${write}?${query(target)}`, method);
      expect(w.status).toBe(201);
      expect(w.edge).not.toBe(targetEdge);
      const after = await request('eu', target);
      expect(after).toMatchObject({ status: 200, hit: false });
    }
  });

  test('a relative Location is resolved against the write, and every region forgets the path', async () => {
    for (let i = 0; i < 5; i++) {
      const { target, write } = await pathsOnTwoEdges('eu');
      await stored('us', target);
      const w = await request('eu', `${write}?loc=target`, 'PATCH');
      expect(w.status).toBe(201);
      expect(await request('eu', target)).toMatchObject({ status: 200, hit: false });
      expect(await request('us', target)).toMatchObject({ status: 200, hit: false });
    }
  });

  test('a failed write, or one naming another host, invalidates nothing', async () => {
    const { target, write } = await pathsOnTwoEdges('eu');
    expect((await request('eu', `${write}?loc=${encodeURIComponent(target)}&status=500`, 'POST')).status).toBe(500);
    expect((await request('eu', `${write}?loc=${encodeURIComponent(`http://elsewhere.example${target}`)}`, 'POST')).status).toBe(201);
    // give a wrongly sent invalidation the time to land
    await new Promise((r) => setTimeout(r, 200));
    expect(await request('eu', target)).toMatchObject({ status: 200, hit: true });
  });

  test("the edges' internal POST /invalidate refuses anything else, with a reason", async () => {
    const base = internalOf('edge');
    const get = await fetch(`${base}/invalidate?path=/x`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const none = await fetch(`${base}/invalidate`, { method: 'POST' });
    expect(none.status).toBe(400);
    expect(await none.text()).toMatch(/path/);
    const relative = await fetch(`${base}/invalidate?path=x`, { method: 'POST' });
    expect(relative.status).toBe(400);
    expect((await fetch(`${base}/invalidate?path=%2Fnever%2Fstored`, { method: 'POST' })).status).toBe(204);
  });

  test('no invalidation failed', async () => {
    const metrics = await (await fetch(`${internalOf('balancer')}/metrics`)).text();
    expect(metrics).not.toMatch(/^cdn_balancer_invalidation_failures_total\{[^}]*\} [1-9]/m);
    const balancer = stack.services.find((s) => s.unit.role === 'balancer')!;
    expect(fs.readFileSync(path.join(balancer.unit.dir, 'logs', 'error.log'), 'utf8')).not.toMatch(/failed to invalidate/);
  });
});
