/**
 * Cache warming (issue #19) through a native stack: POST /v1/warm for a tag warms
 * every object, image variants included, on its home edge in each region, so the
 * first shopper request there is a HIT and the origin served each object at most once
 * per region.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { rawRequest, waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

let stack: UpResult;
let stateDir: string;
let token: string;
const CHROME = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';

const auth = () => ({ Authorization: `Bearer ${token}` });

/** A shopper's GET through the balancer from a region (the test is a trusted proxy that says which). */
async function shopper(region: string, p: string, accept = '*/*') {
  const r = await rawRequest(stack.state.balancer, p, { headers: { 'X-CDN-Region': region, Accept: accept, Host: new URL(stack.state.balancer).host } });
  return { status: r.status, cacheStatus: String(r.headers['cache-status'] ?? '') };
}

/** GETs the origin's delivery listener answered, by path (its JSON log lines). */
function originFetches(): Map<string, number> {
  const origin = stack.services.find((s) => s.unit.role === 'origin')!;
  const counts = new Map<string, number>();
  for (const line of fs.readFileSync(origin.log, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { msg?: string; route?: string; method?: string; path?: string };
    if (entry.msg === 'request' && entry.route === '/*' && entry.method === 'GET' && entry.path) counts.set(entry.path, (counts.get(entry.path) ?? 0) + 1);
  }
  return counts;
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-warm-'));
  stack = await up({ spec: parseSpec({ balancer: { trustedProxies: ['127.0.0.1/32'] } }), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const photo = await sharp({ create: { width: 800, height: 600, channels: 3, background: { r: 200, g: 100, b: 0 } } }).jpeg().toBuffer();
  const uploads: [string, Buffer | string, string][] = [
    ['collection/hero.jpg', photo, 'image/jpeg'],
    ['collection/lookbook.txt', 'spring lookbook', 'text/plain'],
    ['collection/prices.json', '{"sku-1": 19.99}', 'application/json'],
    ['other/not-warmed.txt', 'cold', 'text/plain'],
  ];
  for (const [key, body, type] of uploads) {
    const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, {
      method: 'PUT',
      headers: { ...auth(), 'Content-Type': type, 'Cache-Control': 'public, max-age=3600', 'Surrogate-Key': key.startsWith('collection/') ? 'spring-collection' : 'other' },
      body,
    });
    expect(res.status).toBe(201);
  }
}, 90000);

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('cache warming', () => {
  test('after POST /v1/warm for a tag, the first shopper request in each region is a HIT, variants included', async () => {
    const res = await fetch(`${stack.state.origin}/v1/warm`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: ['spring-collection'] }) });
    expect(res.status).toBe(202);
    const { id, total } = (await res.json()) as { id: string; total: number };
    // 3 objects, and the photo's 11 widths, 16 to 828 (its own is 800) x 3 Accept classes, in 2 regions
    expect(total).toBe((3 + 11 * 3) * 2);
    let progress: { status: string; warmed: number; failed: number; edges: Record<string, { warmed: number }>; failures: unknown[] } | undefined;
    expect(
      await waitFor(async () => {
        progress = (await (await fetch(`${stack.state.origin}/v1/warm/${id}`, { headers: auth() })).json()) as typeof progress;
        return progress!.status === 'done';
      }, 60000, 200),
    ).toBeGreaterThanOrEqual(0);
    expect(progress!.failures).toEqual([]);
    expect([progress!.warmed, progress!.failed]).toEqual([total, 0]);
    // both regions' edges took part (each object went to its home edge there)
    expect(new Set(Object.keys(progress!.edges).map((e) => e.split('-')[0]))).toEqual(new Set(['eu', 'us']));

    const fetchedBefore = originFetches();
    for (const region of ['eu', 'us']) {
      for (const p of ['/collection/hero.jpg', '/collection/lookbook.txt', '/collection/prices.json']) {
        expect([region, p, (await shopper(region, p)).cacheStatus]).toEqual([region, p, expect.stringMatching(/; hit/)]);
      }
      // a storefront's srcset candidate, from a browser that takes AVIF
      expect((await shopper(region, '/collection/hero.jpg?w=640', CHROME)).cacheStatus).toMatch(/; hit/);
      expect((await shopper(region, '/collection/hero.jpg?w=256', 'image/webp,*/*')).cacheStatus).toMatch(/; hit/);
    }
    // nothing reached the origin for those requests, and warming itself fetched each object at most once per region
    expect(originFetches()).toEqual(fetchedBefore);
    for (const p of ['/collection/hero.jpg', '/collection/lookbook.txt', '/collection/prices.json']) {
      expect([p, fetchedBefore.get(p) ?? 0]).toEqual([p, expect.any(Number)]);
      expect(fetchedBefore.get(p)!).toBeLessThanOrEqual(2);
    }
    // what was not named stays cold
    expect((await shopper('eu', '/other/not-warmed.txt')).cacheStatus).toMatch(/fwd=uri-miss/);
  });

  test('bad requests get 400 with the reason; an unknown job 404', async () => {
    const post = (body: unknown) => fetch(`${stack.state.origin}/v1/warm`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const unknownRegion = await post({ tags: ['spring-collection'], regions: ['mars'] });
    expect(unknownRegion.status).toBe(400);
    expect(await unknownRegion.text()).toMatch(/unknown mars/);
    expect((await post({ tags: ['no-such-tag'] })).status).toBe(400);
    expect((await post({ urls: 'x' })).status).toBe(400);
    const relative = await post({ urls: ['a.jpg'] });
    expect(relative.status).toBe(400);
    expect(await relative.text()).toMatch(/must be a full http\(s\) URL or a path starting with/);
    expect((await post({ urls: ['/a b.jpg'] })).status).toBe(400);
    expect((await post({ urls: ['/v1/assets'] })).status).toBe(400);
    const unknownJob = await fetch(`${stack.state.origin}/v1/warm/nope`, { headers: auth() });
    expect(unknownJob.status).toBe(404);
    expect(await unknownJob.text()).toMatch(/CDN_ERR_WARM_NOT_FOUND/);
    expect((await fetch(`${stack.state.origin}/v1/warm`, { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } })).status).toBe(401);
  });
});
