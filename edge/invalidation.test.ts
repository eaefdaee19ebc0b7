/**
 * Invalidation caused by traffic and by the purge stream, through a real nginx with
 * the real Lua and a real Redis, with zones small enough to fill.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { startEdge, type EdgeHarness } from '../test/support/edge-harness';
import { rawRequest, waitFor } from '../test/support/http';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function unexpectedErrors(log: string): string[] {
  return log.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
}

describe('unsafe methods', () => {
  let edge: EdgeHarness;
  // body per path; POSTs change nothing at the origin unless a test says so
  const versions = new Map<string, string>();

  beforeAll(async () => {
    // a generations zone that a few hundred counters would fill
    edge = await startEdge({}, { dicts: { cdn_gens: '12k' } });
    edge.setOrigin((req) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'POST') {
        // the test names the Location / Content-Location the origin answers with
        const headers: Record<string, string> = {};
        if (req.headers['x-test-location']) headers.Location = String(req.headers['x-test-location']);
        if (req.headers['x-test-content-location']) headers['Content-Location'] = String(req.headers['x-test-content-location']);
        return { status: headers.Location ? 201 : 200, headers, body: 'ok' };
      }
      // the body is read when the request arrives; a slow path answers later
      return { headers: { 'Cache-Control': 'public, max-age=300' }, body: versions.get(path) ?? 'v1', delayMs: path.startsWith('/slow') ? 400 : 0 };
    });
  });

  afterAll(async () => {
    const log = edge.errorLog();
    await edge.stop();
    expect(unexpectedErrors(log)).toEqual([]);
  });

  const get = async (path: string) => {
    const r = await rawRequest(edge.url, path);
    return { body: r.body.toString(), cacheStatus: String(r.headers['cache-status'] ?? '') };
  };
  const post = (path: string, headers: Record<string, string> = {}) => rawRequest(edge.url, path, { method: 'POST', headers, body: 'x' });

  test('POSTs to many never-fetched paths cost no counters: the zone is not reset and cached objects stay hits', async () => {
    const cached = `/cached-${randomUUID()}`;
    await get(cached);
    expect((await get(cached)).cacheStatus).toContain('hit');
    for (let i = 0; i < 400; i++) {
      expect((await post(`/form/${randomUUID()}`)).status).toBe(200);
    }
    expect((await get(cached)).cacheStatus).toContain('hit');
    expect(edge.errorLog()).not.toContain('shared zone full');
  });

  test('a POST to a stored path still invalidates it', async () => {
    const path = `/product-${randomUUID()}`;
    await get(path);
    expect((await get(path)).cacheStatus).toContain('hit');
    versions.set(path, 'v2');
    expect((await post(path)).status).toBe(200);
    const after = await get(path);
    expect(after.body).toBe('v2');
    expect(after.cacheStatus).toContain('fwd=uri-miss');
  });

  test('a write that succeeds while the path is first being fetched still invalidates what that fetch stores', async () => {
    const path = `/slow-${randomUUID()}`;
    const inFlight = get(path); // the origin reads v1 now and answers in 400 ms
    await sleep(100);
    versions.set(path, 'v2');
    expect((await post(path)).status).toBe(200);
    expect((await inFlight).body).toBe('v1');
    const after = await get(path);
    expect(after.body).toBe('v2');
  });

  test('Location and Content-Location on the same host are invalidated; another host is not', async () => {
    const target = `/orders/${randomUUID()}`;
    const relative = `/orders/${randomUUID()}`;
    const elsewhere = `/orders/${randomUUID()}`;
    for (const p of [target, relative, elsewhere]) {
      await get(p);
      expect((await get(p)).cacheStatus).toContain('hit');
      versions.set(p, 'changed');
    }
    const host = new URL(edge.url).host;
    expect((await post(`/orders-${randomUUID()}`, { 'X-Test-Location': `http://${host}${target}?from=post` })).status).toBe(201);
    expect((await get(target)).body).toBe('changed');
    // relative to the request's directory
    expect((await post(`/orders/new-${randomUUID()}`, { 'X-Test-Content-Location': relative.slice('/orders/'.length) })).status).toBe(200);
    expect((await get(relative)).body).toBe('changed');
    await post(`/orders-${randomUUID()}`, { 'X-Test-Location': `https://other.example${elsewhere}` });
    expect((await get(elsewhere)).cacheStatus).toContain('hit');
  });
});

describe('purge stream', () => {
  let edge: EdgeHarness;

  beforeAll(async () => {
    edge = await startEdge();
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: `${req.url} at ${Date.now()}` }));
  });

  afterAll(async () => {
    const log = edge.errorLog();
    await edge.stop();
    expect(unexpectedErrors(log)).toEqual([]);
  });

  const cacheStatus = async (path: string) => String((await rawRequest(edge.url, path)).headers['cache-status'] ?? '');
  const applied = async () => Number(/^cdn_edge_purges_applied_total (\d+)/m.exec(await (await fetch(`${edge.internalUrl}/metrics`)).text())?.[1] ?? 0);

  test('entries trimmed before the edge read them are detected while it follows the stream: everything is invalidated', async () => {
    const redis = new Redis(edge.redis.url);
    try {
      const purge = (urls: string[]) => JSON.stringify({ id: randomUUID(), urls, prefixes: [], tags: [], at: Date.now() });
      const kept = `/trim-kept-${randomUUID()}`;
      const trimmedAway = `/trimmed-away-${randomUUID()}`;
      for (const p of [kept, trimmedAway]) {
        await rawRequest(edge.url, p);
        expect(await cacheStatus(p)).toContain('hit');
      }
      const before = await applied();
      await redis.xadd('cdn:purges', '*', 'purge', purge([`/nothing-${randomUUID()}`]));
      expect(await waitFor(async () => (await applied()) > before, 3000)).toBeGreaterThanOrEqual(0);
      // two purges published and trimmed away in one transaction: the edge,
      // blocked in XREAD, is only woken once they are gone
      await redis.multi().xadd('cdn:purges', '*', 'purge', purge([trimmedAway])).xadd('cdn:purges', '*', 'purge', purge([])).xadd('cdn:purges', '*', 'purge', purge([])).xtrim('cdn:purges', 'MAXLEN', 1).exec();
      expect(await waitFor(async () => (await cacheStatus(trimmedAway)).includes('fwd=uri-miss'), 3000)).toBeGreaterThanOrEqual(0);
      expect(await cacheStatus(kept)).toContain('fwd=uri-miss');
      expect(edge.errorLog()).toContain('stream trimmed past');
    } finally {
      redis.disconnect();
    }
  });

  test('a stream deleted and recreated with lower ids is detected: everything held is invalidated and the new purges applied', async () => {
    const redis = new Redis(edge.redis.url);
    try {
      const purge = (urls: string[]) => JSON.stringify({ id: randomUUID(), urls, prefixes: [], tags: [], at: Date.now() });
      const kept = `/kept-${randomUUID()}`;
      const purgedLater = `/purged-later-${randomUUID()}`;
      for (const p of [kept, purgedLater]) {
        await rawRequest(edge.url, p);
        expect(await cacheStatus(p)).toContain('hit');
      }
      // the edge follows the stream and has applied an entry of it
      const before = await applied();
      await redis.xadd('cdn:purges', '*', 'purge', purge([`/nothing-${randomUUID()}`]));
      expect(await waitFor(async () => (await applied()) >= before + 1, 3000)).toBeGreaterThanOrEqual(0);
      expect(await cacheStatus(kept)).toContain('hit');

      // recreated: its ids start far below the last one the edge applied
      await redis.del('cdn:purges');
      await redis.xadd('cdn:purges', '1-1', 'purge', purge([purgedLater]));
      expect(await waitFor(async () => (await applied()) >= before + 2, 6000)).toBeGreaterThanOrEqual(0);
      expect(await cacheStatus(purgedLater)).toContain('fwd=uri-miss');
      // what it missed between the two streams is unknown: nothing old is served
      expect(await cacheStatus(kept)).toContain('fwd=uri-miss');
      expect(edge.errorLog()).toContain('recreated');

      // and it goes on following the new stream
      const next = `/next-${randomUUID()}`;
      await rawRequest(edge.url, next);
      expect(await cacheStatus(next)).toContain('hit');
      await redis.xadd('cdn:purges', '1-2', 'purge', purge([next]));
      expect(await waitFor(async () => (await cacheStatus(next)).includes('fwd=uri-miss'), 3000)).toBeGreaterThanOrEqual(0);
      await sleep(10);
    } finally {
      redis.disconnect();
    }
  });
});
