/**
 * HTTP caching at the edge (RFC 9111, 5861, 9211, 9213), driven through a real
 * nginx with the real Lua in front of a scripted origin.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { DEBUG_TOKEN, startEdge, type EdgeHarness, type OriginReply } from '../test/support/edge-harness';
import { rawRequest, waitFor } from '../test/support/http';

let edge: EdgeHarness;

beforeAll(async () => {
  edge = await startEdge({ cache: { grace: 3600, bypassCookies: ['session', 'cart_id'], slice: { prefixes: ['/downloads/'], size: '1m' } } });
});

afterAll(async () => {
  const log = edge.errorLog();
  await edge.stop();
  // Expected by design: the origin refusing connections, and the internal hop
  // dropping a failed revalidation so the stale copy is used.
  const expected = /connect\(\) failed|upstream prematurely closed connection/;
  const unexpected = log.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l) && !expected.test(l));
  expect(unexpected).toEqual([]);
});

/** A fresh path per test, so tests never see each other's cache entries. */
const fresh = (name: string) => `/${name}-${randomUUID()}`;

async function get(path: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await fetch(`${edge.url}${path}`, { headers, method });
  const body = method === 'HEAD' ? '' : await res.text();
  return { status: res.status, headers: res.headers, body, cacheStatus: res.headers.get('cache-status') ?? '' };
}

function originHits(path: string): number {
  return edge.originRequests.filter((r) => r.url === path).length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('freshness', () => {
  test('a public response is stored: MISS, then HIT with Age and ttl; browsers see the origin Cache-Control', async () => {
    const path = fresh('public');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'p1 p2', ETag: '"v1"', 'X-Request-Id': 'the-first-request' }, body: 'hello' }));
    const first = await get(path);
    expect(first.cacheStatus).toBe('lab-1; fwd=uri-miss; fwd-status=200; stored');
    expect(first.headers.get('cache-control')).toBe('public, max-age=300');
    const second = await get(path);
    expect(second.body).toBe('hello');
    expect(second.cacheStatus).toMatch(/^lab-1; hit; ttl=(29\d|300)$/);
    expect(Number(second.headers.get('age'))).toBeGreaterThanOrEqual(0);
    expect(Number(second.headers.get('age'))).toBeLessThanOrEqual(2);
    expect(second.headers.get('cache-control')).toBe('public, max-age=300');
    expect(second.headers.get('surrogate-key')).toBeNull();
    expect(second.headers.get('x-cdn-meta')).toBeNull();
    expect(second.headers.get('x-accel-expires')).toBeNull();
    // the id of the request that fetched the object is not replayed on hits
    expect(second.headers.get('x-request-id')).toBeNull();
    expect(originHits(path)).toBe(1);
  });

  test.each([
    ['private', { 'Cache-Control': 'private, max-age=300' }],
    ['no-store', { 'Cache-Control': 'public, no-store, max-age=300' }],
    ['Vary: *', { 'Cache-Control': 'public, max-age=300', Vary: '*' }],
    ['no explicit freshness', {}],
  ])('%s is never stored', async (_name, headers) => {
    const path = fresh('nostore');
    edge.setOrigin(() => ({ headers, body: 'secret' }));
    await get(path);
    const second = await get(path);
    expect(second.cacheStatus).toContain('fwd=uri-miss');
    expect(second.cacheStatus).not.toContain('stored');
    expect(originHits(path)).toBe(2);
  });

  test('max-age=0 is stored stale: every reuse goes back to the origin first', async () => {
    const path = fresh('max-age-0');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=0' }, body: 'always fresh' }));
    await get(path);
    const second = await get(path);
    expect(second.cacheStatus).toBe('lab-1; fwd=stale; fwd-status=200');
    expect(originHits(path)).toBe(2);
  });

  test('responses to requests with Authorization are stored only when the origin allows it', async () => {
    const plain = fresh('auth-plain');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300' }, body: 'mine' }));
    await get(plain, { Authorization: 'Bearer a' });
    await get(plain, { Authorization: 'Bearer a' });
    expect(originHits(plain)).toBe(2);

    const shared = fresh('auth-public');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: 'everyone' }));
    await get(shared, { Authorization: 'Bearer a' });
    expect((await get(shared, { Authorization: 'Bearer a' })).cacheStatus).toContain('hit');
    expect(originHits(shared)).toBe(1);
  });

  test.each([
    ['CDN-Cache-Control max-age beside Cache-Control no-cache', { 'Cache-Control': 'no-cache', 'CDN-Cache-Control': 'max-age=300' }],
    ['Surrogate-Control max-age beside Cache-Control private', { 'Cache-Control': 'private', 'Surrogate-Control': 'max-age=300' }],
    ['CDN-Cache-Control private', { 'CDN-Cache-Control': 'private, max-age=300' }],
  ])('a private answer is never served to the next client: %s on a request with Authorization', async (_, headers) => {
    const path = fresh('auth-cdn-field');
    edge.setOrigin((req) => ({ headers, body: req.headers.authorization ? 'victim data' : 'anonymous' }));
    await get(path, { Authorization: 'Bearer victim' });
    const next = await get(path);
    expect(next.body).toBe('anonymous');
    expect(originHits(path)).toBe(2);
  });

  test('private in CDN-Cache-Control forbids storing, also without Authorization', async () => {
    const path = fresh('cdn-cc-private');
    edge.setOrigin(() => ({ headers: { 'CDN-Cache-Control': 'private, max-age=300', 'Cache-Control': 'public, max-age=300' }, body: 'x' }));
    await get(path);
    await get(path);
    expect(originHits(path)).toBe(2);
  });

  test('CDN-Cache-Control wins over Cache-Control for the edge and is passed on (for a CDN in front); Surrogate-Control is not', async () => {
    const path = fresh('cdn-cc');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'private, no-cache', 'CDN-Cache-Control': 'max-age=120' }, body: 'page' }));
    await get(path);
    const second = await get(path);
    expect(second.cacheStatus).toMatch(/hit; ttl=1[12]\d/);
    expect(second.headers.get('cache-control')).toBe('private, no-cache');
    expect(second.headers.get('cdn-cache-control')).toBe('max-age=120');

    const sc = fresh('surrogate-control');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=0', 'Surrogate-Control': 'max-age=90' }, body: 'sc' }));
    await get(sc);
    const again = await get(sc);
    expect(again.cacheStatus).toMatch(/hit; ttl=(8\d|90)/);
    expect(again.headers.get('surrogate-control')).toBeNull();
  });

  test('s-maxage beats max-age, and the Age the origin sent counts against freshness', async () => {
    const path = fresh('smaxage');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=5, s-maxage=100', Age: '40' }, body: 'x' }));
    await get(path);
    const second = await get(path);
    expect(second.cacheStatus).toMatch(/hit; ttl=(59|60)$/);
    expect(Number(second.headers.get('age'))).toBeGreaterThanOrEqual(40);
  });

  test('Expires counts from the origin Date', async () => {
    const path = fresh('expires');
    const date = new Date(Date.now() - 10_000);
    const expires = new Date(date.getTime() + 70_000);
    edge.setOrigin(() => ({ headers: { Date: date.toUTCString(), Expires: expires.toUTCString() }, body: 'x' }));
    await get(path);
    const second = await get(path);
    // lifetime 70 s, already 10 s old when received
    expect(second.cacheStatus).toMatch(/hit; ttl=(5\d|60)$/);
    expect(second.headers.get('expires')).toBe(expires.toUTCString());
  });

  test('no-cache is stored but revalidated before every reuse (304 from the origin)', async () => {
    const path = fresh('no-cache');
    edge.setOrigin((req) =>
      req.headers['if-none-match'] === '"v7"'
        ? { status: 304, headers: { ETag: '"v7"', 'Cache-Control': 'no-cache' } }
        : { headers: { 'Cache-Control': 'no-cache', ETag: '"v7"' }, body: 'price: 10' },
    );
    await get(path);
    const second = await get(path);
    expect(second.status).toBe(200);
    expect(second.body).toBe('price: 10');
    expect(second.cacheStatus).toBe('lab-1; fwd=stale; fwd-status=304');
    const conditional = edge.originRequests.filter((r) => r.url === path)[1];
    expect(conditional.headers['if-none-match']).toBe('"v7"');
  });

  test('a 304 revalidation renews the stored response: Age, ttl and Cache-Control follow the 304 (RFC 9111 §4.3.4)', async () => {
    const path = fresh('renewed');
    edge.setOrigin((req) =>
      req.headers['if-none-match'] === '"r1"'
        ? { status: 304, headers: { ETag: '"r1"', 'Cache-Control': 'public, max-age=300' } }
        : { headers: { 'Cache-Control': 'public, max-age=1', ETag: '"r1"' }, body: 'renew me' },
    );
    await get(path);
    await sleep(3100); // the stored copy (max-age=1) and its second of stale use have run out
    const revalidated = await get(path);
    expect(revalidated.body).toBe('renew me');
    expect(revalidated.cacheStatus).toBe('lab-1; fwd=stale; fwd-status=304');
    expect(revalidated.headers.get('cache-control')).toBe('public, max-age=300');
    expect(Number(revalidated.headers.get('age') ?? '0')).toBeLessThanOrEqual(1);
    const hit = await get(path);
    expect(hit.body).toBe('renew me');
    expect(hit.cacheStatus).toMatch(/^lab-1; hit; ttl=(29\d|300)$/);
    expect(hit.headers.get('age')).not.toBeNull();
    expect(Number(hit.headers.get('age'))).toBeLessThanOrEqual(1);
    expect(hit.headers.get('cache-control')).toBe('public, max-age=300');
    expect(originHits(path)).toBe(2);
    // the cache key the internal hop records it under never reaches the origin
    for (const r of edge.originRequests.filter((o) => o.url === path)) expect(r.headers['x-cdn-key']).toBeUndefined();
  });

  test('each Vary variant is renewed by its own 304: one variant\'s revalidation says nothing about another\'s Age', async () => {
    const path = fresh('renewed-variants');
    edge.setOrigin((req) => {
      const etag = `"${String(req.headers['accept-encoding'] ?? 'identity')}"`;
      return req.headers['if-none-match'] === etag
        ? { status: 304, headers: { ETag: etag, 'Cache-Control': 'public, max-age=30', Vary: 'Accept-Encoding' } }
        : { headers: { 'Cache-Control': 'public, max-age=1', ETag: etag, Vary: 'Accept-Encoding' }, body: 'variant' };
    });
    await get(path, { 'Accept-Encoding': 'br' });
    await get(path, { 'Accept-Encoding': 'gzip' });
    await sleep(3100);
    expect((await get(path, { 'Accept-Encoding': 'br' })).cacheStatus).toBe('lab-1; fwd=stale; fwd-status=304');
    await sleep(2100);
    expect((await get(path, { 'Accept-Encoding': 'gzip' })).cacheStatus).toBe('lab-1; fwd=stale; fwd-status=304');
    const br = await get(path, { 'Accept-Encoding': 'br' });
    // renewed about 2 s before gzip was: its own Age, not gzip's ~0
    expect(Number(br.headers.get('age'))).toBeGreaterThanOrEqual(2);
    expect(br.cacheStatus).toMatch(/^lab-1; hit; ttl=2[5-8]$/);
  });
});

describe('conformance defects (http-cache-tests, npm run conformance)', () => {
  test.each([
    ['a fraction', '7200.0'],
    ['a sign', '-7200'],
    ['letters', 'abc'],
    ['a list', '7200, 0'],
    ['a list of zeros', '0, 0'],
    ['a parameter', '7200;foo=bar'],
    ['two lines', ['0', '7200']],
  ])('an Age that is not one plain integer (%s) makes the response stale from the start', async (_name, age) => {
    const path = fresh('age');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=3600', Age: age }, body: 'x' }));
    expect((await get(path)).cacheStatus).toContain('stored');
    const second = await get(path);
    expect(second.cacheStatus).not.toContain('hit');
    expect(originHits(path)).toBe(2);
  });

  test('a plain Age still counts, and one larger than any date keeps the stored record whole', async () => {
    const plain = fresh('age-plain');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=3600', Age: '600' }, body: 'x' }));
    await get(plain);
    expect((await get(plain)).cacheStatus).toMatch(/; hit; ttl=(299\d|300\d)$/);
    // born would be before the epoch: the record stays fixed-width, so browsers
    // still get the origin's Cache-Control
    const huge = fresh('age-huge');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=3600', Age: '99999999999' }, body: 'x' }));
    const first = await get(huge);
    expect(first.cacheStatus).toContain('stored');
    expect(first.headers.get('cache-control')).toBe('public, max-age=3600');
  });

  test.each([301, 302, 307, 400, 404, 410])('a %i with explicit freshness is stored (RFC 9111 §3)', async (status) => {
    const path = fresh(`status-${status}`);
    edge.setOrigin(() => ({ status, headers: { 'Cache-Control': 'max-age=300', Location: '/elsewhere' }, body: 'x' }));
    // (redirects are not followed: the response itself is what is stored)
    const once = async () => {
      const res = await fetch(`${edge.url}${path}`, { redirect: 'manual' });
      await res.arrayBuffer();
      return { status: res.status, cacheStatus: res.headers.get('cache-status') ?? '' };
    };
    await once();
    const second = await once();
    expect(second.status).toBe(status);
    expect(second.cacheStatus).toContain('hit');
    expect(originHits(path)).toBe(1);
  });

  test('a 5xx with explicit freshness is stored, fresh for at most cache.max5xxTtl (10 s by default)', async () => {
    const path = fresh('status-503');
    edge.setOrigin(() => ({ status: 503, headers: { 'Cache-Control': 'max-age=300' }, body: 'down' }));
    expect((await get(path)).cacheStatus).toContain('stored');
    const second = await get(path);
    expect(second.status).toBe(503);
    // the origin said 300 s; the cap says 10
    expect(second.cacheStatus).toMatch(/; hit; ttl=(9|10)$/);
    expect(originHits(path)).toBe(1);
  });

  test('an unknown method (M-SEARCH) that succeeds invalidates the URL (RFC 9111 §4.4)', async () => {
    const path = fresh('m-search');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300' }, body: 'x' }));
    await get(path);
    expect((await get(path)).cacheStatus).toContain('hit');
    expect((await get(path, {}, 'M-SEARCH')).status).toBe(200);
    expect((await get(path)).cacheStatus).not.toContain('hit');
    expect(originHits(path)).toBe(3);
  });

  test('If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2)', async () => {
    const path = fresh('inm');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300', ETag: '"v1"', 'Last-Modified': 'Mon, 07 Dec 2026 07:00:00 GMT' }, body: 'x' }));
    await get(path);
    // the date alone says "modified" (nginx compares it exactly); the tag matches
    const res = await get(path, { 'If-None-Match': '"v1"', 'If-Modified-Since': 'Mon, 07 Dec 2026 08:00:00 GMT' });
    expect(res.status).toBe(304);
    // a tag that does not match: the whole response, whatever the date says
    const other = await get(path, { 'If-None-Match': '"v0"', 'If-Modified-Since': 'Mon, 07 Dec 2026 07:00:00 GMT' });
    expect(other.status).toBe(200);
  });

  test.each([
    ['in the past', 'Thu, 01 Jan 2015 00:00:00 GMT'],
    ['invalid', 'never'],
  ])('an Expires %s beside max-age does not stop the response being stored (max-age wins)', async (_name, expires) => {
    const path = fresh('expires-old');
    edge.setOrigin(() => ({ headers: { Expires: expires, 'Cache-Control': 'max-age=300' }, body: 'x' }));
    expect((await get(path)).cacheStatus).toContain('stored');
    const second = await get(path);
    expect(second.cacheStatus).toContain('hit');
    expect(second.headers.get('expires')).toBe(expires);
    expect(originHits(path)).toBe(1);
  });

  test('a 304 renews the other fields it carries, on that response and the HITs after it (RFC 9111 §4.3.4)', async () => {
    const path = fresh('renew-fields');
    edge.setOrigin((req): OriginReply =>
      req.headers['if-none-match'] === '"f1"'
        ? { status: 304, headers: { ETag: '"f1"', 'Cache-Control': 'max-age=300', 'X-Frame-Options': 'sameorigin', 'Content-Security-Policy': "default-src 'none'", Expires: 'Mon, 11 Jan 2038 11:11:11 GMT', 'Content-MD5': 'bmV3', 'Content-Encoding': 'gzip' } }
        : { headers: { 'Cache-Control': 'max-age=1', ETag: '"f1"', 'X-Frame-Options': 'deny', 'Content-Security-Policy': "default-src 'self'", Expires: 'Fri, 01 Jan 2038 01:01:01 GMT', 'Content-MD5': 'b2xk' }, body: 'x' },
    );
    await get(path);
    // Past max-age=1: the lone request after expiry waits for the 304 and gets
    // what it renewed (cache.staleWhileUpdating serves a stale copy only to
    // requests that arrive while another refreshes it).
    await sleep(2100);
    const revalidated = await get(path);
    expect(revalidated.cacheStatus).toContain('fwd-status=304');
    const hit = await get(path);
    expect(hit.cacheStatus).toContain('hit');
    for (const res of [revalidated, hit]) {
      expect(res.headers.get('x-frame-options')).toBe('sameorigin');
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'");
      expect(res.headers.get('expires')).toBe('Mon, 11 Jan 2038 11:11:11 GMT');
      // fields about the stored bytes themselves are not the 304's to change
      expect(res.headers.get('content-md5')).toBe('b2xk');
      expect(res.headers.get('content-encoding')).toBeNull();
    }
  });

  test.each([
    ['If-None-Match', '"r1"'],
    ['If-Modified-Since', 'Mon, 07 Dec 2026 07:00:00 GMT'],
  ])('a conditional request (%s) for an expired object gets 304 once the origin has revalidated it', async (name, value) => {
    const path = fresh('conditional-expired');
    const validators = { 'Last-Modified': 'Mon, 07 Dec 2026 07:00:00 GMT', ETag: '"r1"' };
    edge.setOrigin((req) =>
      req.headers['if-none-match'] === '"r1"' || req.headers['if-modified-since']
        ? { status: 304, headers: { ...validators, 'Cache-Control': 'max-age=1' } }
        : { headers: { 'Cache-Control': 'max-age=1', ...validators }, body: 'x' },
    );
    await get(path);
    await sleep(2100);
    const res = await get(path, { [name]: value });
    expect(res.cacheStatus).toContain('fwd-status=304');
    expect(res.status).toBe(304);
  });

  test('a 304 that says nothing of freshness leaves the stored max-age in force: the refreshed copy is reused (RFC 9111 §4.3.4)', async () => {
    const path = fresh('bare-304');
    edge.setOrigin((req): OriginReply =>
      req.headers['if-none-match'] === '"b1"'
        ? { status: 304, headers: { ETag: '"b1"' } }
        : { headers: { 'Cache-Control': 'max-age=2', ETag: '"b1"', 'Last-Modified': 'Mon, 07 Dec 2026 07:00:00 GMT' }, body: 'x' },
    );
    await get(path);
    await sleep(3100);
    // a browser revalidating its own copy: 304 from the edge, after the origin's bare 304
    const conditional = await get(path, { 'If-Modified-Since': 'Mon, 07 Dec 2026 07:00:00 GMT' });
    expect(conditional.cacheStatus).toContain('fwd-status=304');
    expect(conditional.status).toBe(304);
    // fresh again for the stored max-age: a HIT, not another trip to the origin
    const next = await get(path);
    expect(next.cacheStatus).toMatch(/; hit; ttl=[12]$/);
    expect(originHits(path)).toBe(2);
  });

  test('a 103 Early Hints from the origin gets a prompt 502 (nginx 1.22 cannot relay 1xx), not a wait for the read timeout', async () => {
    const path = fresh('early-hints');
    edge.setOrigin(() => ({ earlyHints: { link: '</style.css>; rel=preload; as=style' }, headers: { 'Cache-Control': 'max-age=300' }, body: 'final', delayMs: 100 }));
    const started = Date.now();
    const first = await get(path);
    expect(first.status).toBe(502);
    // (the read timeout is 30 s)
    expect(Date.now() - started).toBeLessThan(10000);
    // nothing stored, and the edge answers the next request as well
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300' }, body: 'plain' }));
    const second = await get(path);
    expect(second.status).toBe(200);
    expect(second.body).toBe('plain');
  });

  test('must-understand: an unknown status is not stored; a known one is, despite no-store (RFC 9111 §5.2.2.3)', async () => {
    const unknown = fresh('must-understand-599');
    edge.setOrigin(() => ({ status: 299, headers: { 'Cache-Control': 'max-age=300, must-understand, no-store' }, body: 'x' }));
    await get(unknown);
    expect((await get(unknown)).cacheStatus).not.toContain('hit');
    const known = fresh('must-understand-200');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300, must-understand, no-store' }, body: 'x' }));
    await get(known);
    expect((await get(known)).cacheStatus).toContain('hit');
  });

  test.each([
    ['an uppercase key', 'MAX-AGE=300'],
    ['a trailing comma', 'max-age=300,'],
    ['two members without a comma', 'max-age=300 public'],
  ])('a CDN-Cache-Control that is not a valid dictionary (%s) is ignored as a whole: Cache-Control decides (RFC 9213, RFC 8941)', async (_name, cdnCc) => {
    const path = fresh('cdn-cc-invalid');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'no-store', 'CDN-Cache-Control': cdnCc }, body: 'x' }));
    await get(path);
    expect((await get(path)).cacheStatus).not.toContain('hit');
    expect(originHits(path)).toBe(2);
  });

  test('a valid CDN-Cache-Control dictionary with parameters still counts; a String is not a number of seconds', async () => {
    const valid = fresh('cdn-cc-params');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'no-store', 'CDN-Cache-Control': 'max-age=300;origin=1,  stale-if-error=60' }, body: 'x' }));
    await get(valid);
    expect((await get(valid)).cacheStatus).toContain('hit');
    const quoted = fresh('cdn-cc-string');
    edge.setOrigin(() => ({ headers: { 'CDN-Cache-Control': 'max-age="300"' }, body: 'x' }));
    await get(quoted);
    expect((await get(quoted)).cacheStatus).not.toContain('hit');
  });

  test('fields the origin names in Connection are neither stored nor passed on', async () => {
    const path = fresh('connection');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'max-age=300', Connection: 'a, keep-alive', a: '1', b: '2' }, body: 'x' }));
    const first = await get(path);
    const second = await get(path);
    for (const res of [first, second]) {
      expect(res.headers.get('a')).toBeNull();
      expect(res.headers.get('b')).toBe('2');
    }
    expect(second.cacheStatus).toContain('hit');
  });
});

describe('open cache files', () => {
  /** Descriptors the edge's processes hold on files under its cache directory. */
  function openCacheFiles(): number {
    const children = execFileSync('pgrep', ['-P', String(edge.pid)], { encoding: 'utf8' }).trim().split('\n');
    let n = 0;
    for (const pid of children) {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).includes('/cache/')) n++;
        } catch {
          // closed meanwhile
        }
      }
    }
    return n;
  }

  test('HITs keep a hot object\'s file open, and a file replaced under the same key is never served from the old descriptor', async () => {
    const path = fresh('open-file');
    let version = 'v1';
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1' }, body: version }));
    await get(path);
    for (let i = 0; i < 4; i++) expect((await get(path)).body).toBe('v1');
    // open_file_cache: no open, fstat and close per HIT
    expect(openCacheFiles()).toBeGreaterThan(0);
    // nginx counts freshness in whole seconds
    await sleep(2100);
    // the refresh gets a new 200: nginx writes a new file over the old name
    // (the stale copy may be served once meanwhile: this edge has a grace)
    version = 'v2';
    const elapsed = await waitFor(async () => (await get(path)).body === 'v2', 3000);
    expect(elapsed).toBeGreaterThanOrEqual(0);
    for (let i = 0; i < 6; i++) {
      const hit = await get(path);
      expect(hit.cacheStatus).toContain('hit');
      expect(hit.body).toBe('v2');
    }
  });
});

describe('errors and stale', () => {
  test('a stored 5xx is never served once it ran out: not in the background, not while the origin fails', async () => {
    const path = fresh('five-hundred');
    edge.setOrigin(() => ({ status: 500, headers: { 'Cache-Control': 'public, max-age=1' }, body: 'boom' }));
    expect((await get(path)).status).toBe(500);
    await sleep(2100);
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=60' }, body: 'recovered' }));
    // (the grace of cache.grace and a stale-while-revalidate window are not given to errors)
    expect((await get(path)).body).toBe('recovered');
    const failing = fresh('five-hundred-outage');
    edge.setOrigin(() => ({ status: 503, headers: { 'Cache-Control': 'public, max-age=1, stale-if-error=600' }, body: 'sold out' }));
    await get(failing);
    await sleep(2100);
    await edge.stopOrigin();
    try {
      const r = await get(failing);
      expect(r.status).toBe(502);
      expect(r.body).not.toContain('sold out');
    } finally {
      await edge.startOrigin();
    }
  });

  test('an expired stored 5xx is refreshed with the origin\'s 5xx (stored again), not the edge\'s own 502', async () => {
    const path = fresh('five-hundred-again');
    edge.setOrigin(() => ({ status: 503, headers: { 'Cache-Control': 'public, max-age=1', 'Retry-After': '30', ETag: '"sold-out"' }, body: 'sold out' }));
    expect((await get(path)).status).toBe(503);
    await sleep(2100);
    const again = await get(path);
    expect(again.status).toBe(503);
    expect(again.body).toBe('sold out');
    expect(again.headers.get('retry-after')).toBe('30');
    expect(again.cacheStatus).toContain('fwd-status=503');
    // stored again: the next request is a HIT
    expect((await get(path)).cacheStatus).toContain('hit');
    expect(originHits(path)).toBe(2);
  });

  test('a soft purge\'s refresh that gets a 5xx keeps the good copy', async () => {
    const path = fresh('soft-5xx');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'soft-5xx-tag' }, body: 'good' }));
    await get(path);
    edge.setOrigin(() => ({ status: 503, headers: { 'Cache-Control': 'public, max-age=3600' }, body: 'down' }));
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 's5', urls: [], prefixes: [], tags: ['soft-5xx-tag'], soft: true, at: Date.now() }));
    } finally {
      redis.disconnect();
    }
    await sleep(200);
    // the refreshing request gets the origin's answer; the stored copy stays
    expect((await get(path)).status).toBe(503);
    const after = await get(path);
    expect(after.status).toBe(200);
    expect(after.body).toBe('good');
  });

  test('stale-while-revalidate without stale-if-error does not serve stale while the origin fails', async () => {
    const path = fresh('swr-no-sie');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1, stale-while-revalidate=30, stale-if-error=0' }, body: 'x' }));
    await get(path);
    await sleep(2100);
    await edge.stopOrigin();
    try {
      expect((await get(path)).status).toBe(502);
    } finally {
      await edge.startOrigin();
    }
  });

  test('an expired object is served stale while the origin fails (stale-if-error), and the error is not stored', async () => {
    const path = fresh('stale-if-error');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1, stale-if-error=600' }, body: 'good' }));
    await get(path);
    await sleep(2100);
    edge.setOrigin(() => ({ status: 503, body: 'down' }));
    const stale = await get(path);
    expect(stale.status).toBe(200);
    expect(stale.body).toBe('good');
    expect(stale.cacheStatus).toMatch(/^lab-1; hit; ttl=-\d+$/);
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=60' }, body: 'fixed' }));
    expect(await waitFor(async () => (await get(path)).body === 'fixed', 3000)).toBeGreaterThanOrEqual(0);
  });

  test('the configured grace applies when the origin does not say, and must-revalidate forbids stale', async () => {
    const graced = fresh('grace');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1' }, body: 'graced' }));
    await get(graced);
    const strict = fresh('must-revalidate');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1, must-revalidate' }, body: 'strict' }));
    await get(strict);
    await sleep(2100);
    edge.setOrigin(() => ({ status: 502, body: 'bad gateway' }));
    expect((await get(graced)).body).toBe('graced');
    const r = await get(strict);
    expect(r.status).toBe(502);
  });

  test('serves stale when the origin is unreachable', async () => {
    const path = fresh('unreachable');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1' }, body: 'cached' }));
    await get(path);
    await sleep(2100);
    await edge.stopOrigin();
    try {
      const r = await get(path);
      expect(r.status).toBe(200);
      expect(r.body).toBe('cached');
      const cold = await get(fresh('cold'));
      expect(cold.status).toBeGreaterThanOrEqual(502);
    } finally {
      await edge.startOrigin();
    }
  });

  test('500 concurrent requests for one cold object reach the origin once, all get the same bytes, and the waiters say "collapsed"', async () => {
    const path = fresh('collapse');
    const collapsedTotal = async () =>
      Number(/^cdn_edge_collapsed_total (\d+)/m.exec(await (await fetch(`${edge.internalUrl}/metrics`)).text())?.[1] ?? 0);
    const before = await collapsedTotal();
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: 'x'.repeat(5000), delayMs: 300 }));
    const responses = await Promise.all(Array.from({ length: 500 }, () => get(path)));
    expect(new Set(responses.map((r) => r.body))).toEqual(new Set(['x'.repeat(5000)]));
    expect(originHits(path)).toBe(1);
    // one request fetched; those that arrived during its fetch waited for it
    // (RFC 9211 collapsed: forwarded, answered with the other request's response)
    const statuses = responses.map((r) => r.cacheStatus.replace(/ttl=\d+/, 'ttl=N'));
    expect(statuses.filter((s) => s.includes('fwd=uri-miss; fwd-status=200') && s.includes('stored'))).toHaveLength(1);
    const collapsed = statuses.filter((s) => s === 'lab-1; fwd=uri-miss; collapsed; ttl=N');
    expect(collapsed.length).toBeGreaterThan(0);
    expect(collapsed.length + 1 + statuses.filter((s) => s === 'lab-1; hit; ttl=N').length).toBe(500);
    // counted once each (the counters are flushed once a second)
    const elapsed = await waitFor(async () => (await collapsedTotal()) - before === collapsed.length, 3000);
    expect(elapsed).toBeGreaterThanOrEqual(0);
    // a later request is a plain hit
    expect((await get(path)).cacheStatus).toMatch(/^lab-1; hit; ttl=\d+$/);
  });
});

describe('requests the edge refuses or passes through', () => {
  test('a client\'s X-Cdn-Slice cannot get a 206 stored as the whole object', async () => {
    const path = fresh('slice-header');
    edge.setOrigin(() => ({ status: 206, headers: { 'Cache-Control': 'public, max-age=300', 'Content-Range': 'bytes 0-4/100' }, body: 'part!' }));
    await get(path, { 'X-Cdn-Slice': '1' });
    expect((await get(path)).cacheStatus).toContain('fwd=uri-miss');
    expect(originHits(path)).toBe(2);
  });

  test('PURGE and BAN get 405; traversal gets 400 with a reason and no Cache-Status', async () => {
    expect((await rawRequest(edge.url, '/a', { method: 'PURGE' })).status).toBe(405);
    expect((await rawRequest(edge.url, '/a', { method: 'BAN' })).status).toBe(405);
    const r = await rawRequest(edge.url, '/a/%2e%2e/etc/passwd');
    expect(r.status).toBe(400);
    expect(r.body.toString()).toContain('dot segment');
    expect(r.headers['cache-status']).toBeUndefined();
  });

  test('a successful POST invalidates the stored response for its URL', async () => {
    const path = fresh('unsafe');
    let version = 1;
    edge.setOrigin((req) => (req.method === 'POST' ? { status: 204 } : { headers: { 'Cache-Control': 'public, max-age=300' }, body: `v${version}` }));
    await get(path);
    expect((await get(path)).cacheStatus).toContain('hit');
    version = 2;
    const post = await fetch(`${edge.url}${path}`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(204);
    expect(post.headers.get('cache-status')).toContain('fwd=method');
    expect((await get(path)).body).toBe('v2');
  });

  test('marketing parameters and parameter order share one entry', async () => {
    const path = fresh('query');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: 'q' }));
    await get(`${path}?b=2&a=1`);
    expect((await get(`${path}?a=1&b=2&utm_source=mail&gclid=x`)).cacheStatus).toContain('hit');
    expect(edge.originRequests.filter((r) => r.url.startsWith(path))).toHaveLength(1);
  });
});

/** The header block of the cache file stored for `path` (nginx writes "KEY: <key>" before it). */
function storedHeaders(path: string): string {
  const files = (fs.readdirSync(`${edge.dir}/cache`, { recursive: true }) as string[])
    .map((f) => `${edge.dir}/cache/${f}`)
    .filter((f) => fs.statSync(f).isFile());
  const stored = files.map((f) => fs.readFileSync(f, 'latin1')).filter((t) => t.includes(`${path}?#`));
  expect(stored).toHaveLength(1);
  return stored[0].slice(stored[0].indexOf('\nKEY: '), stored[0].indexOf('\r\n\r\n'));
}

describe('invalidation', () => {
  test('a purge published on the stream reaches the edge within a second', async () => {
    const path = fresh('purged');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'sku-9', 'Accept-Ranges': 'bytes' }, body: 'old' }));
    await get(path);
    const hit = await get(path);
    expect(hit.cacheStatus).toContain('hit');
    expect(hit.headers.get('accept-ranges')).toBe('bytes');
    // Surrogate-Key is indexed as the response arrives, not stored; nginx adds its
    // own Accept-Ranges: each stored line would be parsed on every HIT for nothing
    const stored = storedHeaders(path);
    expect(stored).toMatch(/\r\nX-Cdn-Meta: /);
    expect(stored).not.toMatch(/surrogate-key|accept-ranges/i);
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: 'new' }));
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 'x', urls: [], prefixes: [], tags: ['sku-9'], at: Date.now() }));
    } finally {
      redis.disconnect();
    }
    expect(await waitFor(async () => (await get(path)).body === 'new', 1000)).toBeGreaterThanOrEqual(0);
  });
});

describe('external origins', () => {
  let routed: EdgeHarness;
  const servers: http.Server[] = [];
  const seen: string[] = [];

  async function server(name: string): Promise<string> {
    const s = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        seen.push(`${name} ${req.method} ${req.url} ${req.headers.host}`);
        res.writeHead(200, { 'Cache-Control': 'public, max-age=60', 'Content-Type': 'text/plain' });
        res.end(`${name}:${req.method}:${body}`);
      });
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  }

  beforeAll(async () => {
    const shop = await server('shop');
    const api = await server('api');
    const other = await server('other');
    routed = await startEdge({
      origins: [
        { match: '*', url: other },
        { match: '/api/', url: api },
        { match: 'shop.example', url: shop },
      ],
    });
  });

  afterAll(async () => {
    await routed.stop();
    for (const s of servers) s.close();
  });

  test('hosts, then path prefixes, then the catch-all; every method passes through', async () => {
    // (fetch cannot set Host; http.request can)
    const viaHost = await rawRequest(routed.url, '/p/1', { headers: { Host: 'SHOP.example' } });
    expect(viaHost.body.toString()).toBe('shop:GET:');
    const viaPrefix = await fetch(`${routed.url}/api/cart`, { method: 'POST', body: 'item=1' });
    expect(await viaPrefix.text()).toBe('api:POST:item=1');
    const put = await fetch(`${routed.url}/api/cart`, { method: 'PUT', body: 'x' });
    expect(await put.text()).toBe('api:PUT:x');
    const del = await fetch(`${routed.url}/api/cart`, { method: 'DELETE' });
    expect(await del.text()).toBe('api:DELETE:');
    const rest = await fetch(`${routed.url}/anything`);
    expect(await rest.text()).toBe('other:GET:');
    expect((await fetch(`${routed.url}/anything`)).headers.get('cache-status')).toContain('hit');
    expect(seen).toContain('shop GET /p/1 SHOP.example'); // the Host the key was built from
    // the scripted CDN origin was never asked: every route went to an external one
    expect(routed.originRequests).toHaveLength(0);
  });

  test('an external origin receives exactly the query the key holds: sorted, marketing parameters dropped', async () => {
    await fetch(`${routed.url}/search?utm_source=%3Cscript%3E&q=shoes&page=2&gclid=x`);
    expect(seen).toContain(`other GET /search?page=2&q=shoes ${new URL(routed.url).host}`);
    expect((await fetch(`${routed.url}/search?q=shoes&page=2`)).headers.get('cache-status')).toContain('hit');
    // image parameters mean nothing special to an external origin: passed on as they are
    await fetch(`${routed.url}/shop/photo.jpg?w=201&junk=1`);
    expect(seen).toContain(`other GET /shop/photo.jpg?junk=1&w=201 ${new URL(routed.url).host}`);
  });
});

describe('variants', () => {
  test('junk Accept-Encoding values cannot multiply variants: br, gzip, identity (and no header) only', async () => {
    const path = fresh('vary-ae');
    edge.setOrigin((req) => ({
      headers: { 'Cache-Control': 'public, max-age=300', Vary: 'Accept-Encoding' },
      body: `encoding=${req.headers['accept-encoding']}`,
    }));
    const values = ['gzip, deflate, br', 'br', 'gzip', 'identity', '', 'x-junk-1', 'x-junk-2', 'GZIP;q=1', 'br, zstd', 'deflate', 'gzip, deflate, br, zstd'];
    for (let i = 0; i < 200; i++) {
      const v = i < values.length ? values[i] : `junk-${i}`;
      await rawRequest(edge.url, path, { headers: v ? { 'Accept-Encoding': v } : {} });
    }
    const seen = edge.originRequests.filter((r) => r.url === path).map((r) => r.headers['accept-encoding'] ?? '(none)');
    expect([...new Set(seen)].sort()).toEqual(['(none)', 'br', 'gzip', 'identity']);
    expect(seen).toHaveLength(4);
    // browsers keep being served from the cache
    const hit = await rawRequest(edge.url, path, { headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
    expect(hit.headers['cache-status']).toContain('hit');
    expect(hit.body.toString()).toBe('encoding=br');
    expect(hit.headers.vary).toBe('Accept-Encoding');
  });

  test('image Accept is reduced to avif, webp or anything; page Accept is left alone', async () => {
    const img = fresh('vary-accept');
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'public, max-age=300', Vary: 'Accept' }, body: String(req.headers.accept) }));
    const chrome = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
    expect((await rawRequest(edge.url, img, { headers: { Accept: chrome } })).body.toString()).toBe('image/avif,*/*');
    expect((await rawRequest(edge.url, img, { headers: { Accept: 'image/avif,image/webp,*/*' } })).headers['cache-status']).toContain('hit');
    expect((await rawRequest(edge.url, img, { headers: { Accept: 'image/webp,*/*' } })).body.toString()).toBe('image/webp,*/*');
    const page = fresh('page-accept');
    const nav = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
    expect((await rawRequest(edge.url, page, { headers: { Accept: nav } })).body.toString()).toBe(nav);
  });
});

describe('purge stream outage', () => {
  test('while Redis is down the edge keeps serving, caps freshness and reports its lag', async () => {
    const cut = await startEdge({ purge: { busDownMaxTtl: 5 } });
    try {
      const path = fresh('bus-down');
      cut.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=3600' }, body: 'product' }));
      await fetch(`${cut.url}${path}`);
      await cut.redis.stop();
      const cutOff = await waitFor(async () => /cdn_edge_invalidation_connected 0/.test(await (await fetch(`${cut.internalUrl}/metrics`)).text()), 5000);
      expect(cutOff).toBeGreaterThanOrEqual(0);
      // stored before the outage: still a hit
      expect((await fetch(`${cut.url}${path}`)).headers.get('cache-status')).toContain('hit; ttl=');
      // stored during the outage: fresh for the cap at most
      const during = fresh('during-outage');
      await fetch(`${cut.url}${during}`);
      expect((await fetch(`${cut.url}${during}`)).headers.get('cache-status')).toMatch(/hit; ttl=[0-5]$/);
      await sleep(1100);
      const lag = /cdn_edge_invalidation_lag_seconds (\d+(\.\d+)?)/.exec(await (await fetch(`${cut.internalUrl}/metrics`)).text());
      expect(Number(lag?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      const log = cut.errorLog();
      await cut.stop();
      expect(log).not.toMatch(/\[(crit|alert|emerg)\]/);
    }
  });
});

describe('ranges', () => {
  test('ranges are served from the stored object: 206, suffix ranges, 416, If-Range', async () => {
    const path = fresh('range');
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', ETag: '"r1"', 'Content-Type': 'application/octet-stream' }, body }));
    // a range request on a miss still stores the whole object
    const first = await rawRequest(edge.url, path, { headers: { Range: 'bytes=0-99' } });
    expect(first.status).toBe(206);
    expect(first.body.equals(body.subarray(0, 100))).toBe(true);
    expect(first.headers['content-range']).toBe('bytes 0-99/1048576');
    const last = await rawRequest(edge.url, path, { headers: { Range: 'bytes=-1' } });
    expect(last.status).toBe(206);
    expect(last.body.equals(body.subarray(body.length - 1))).toBe(true);
    expect(last.headers['cache-status']).toContain('hit');
    const junk = await rawRequest(edge.url, path, { headers: { Range: 'bytes=abc' } });
    expect(junk.status).toBe(200);
    expect(junk.body.length).toBe(body.length);
    const beyond = await rawRequest(edge.url, path, { headers: { Range: 'bytes=2000000-' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe('bytes */1048576');
    // nginx's own 416 passes the header filters a second time: each field once
    // (Node joins repeated lines with ", ")
    expect(beyond.headers['cache-control']).toBe('public, max-age=300');
    expect(beyond.headers['cache-status']).toMatch(/^lab-1; hit; ttl=\d+$/);
    const missBeyond = await rawRequest(edge.url, fresh('range-miss'), { headers: { Range: 'bytes=2000000-' } });
    expect(missBeyond.status).toBe(416);
    expect(missBeyond.headers['cache-control']).toBe('public, max-age=300');
    expect(missBeyond.headers['cache-status']).toBe('lab-1; fwd=uri-miss; fwd-status=200; stored');
    const staleIfRange = await rawRequest(edge.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': '"old"' } });
    expect(staleIfRange.status).toBe(200);
    expect(staleIfRange.body.length).toBe(body.length);
    const currentIfRange = await rawRequest(edge.url, path, { headers: { Range: 'bytes=0-9', 'If-Range': '"r1"' } });
    expect(currentIfRange.status).toBe(206);
    expect(originHits(path)).toBe(1);
  });

  test('conditional requests: If-None-Match answers 304 from the cache', async () => {
    const path = fresh('conditional');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', ETag: '"c1"', 'Last-Modified': 'Wed, 01 Jan 2025 00:00:00 GMT' }, body: 'x' }));
    await get(path);
    const r = await rawRequest(edge.url, path, { headers: { 'If-None-Match': '"c1"' } });
    expect(r.status).toBe(304);
    expect(r.body.length).toBe(0);
    expect(r.headers.etag).toBe('"c1"');
    const ims = await rawRequest(edge.url, path, { headers: { 'If-Modified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' } });
    expect(ims.status).toBe(304);
    // If-None-Match wins over If-Modified-Since
    const both = await rawRequest(edge.url, path, { headers: { 'If-None-Match': '"other"', 'If-Modified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' } });
    expect(both.status).toBe(200);
    expect(originHits(path)).toBe(1);
  });
});

describe('soft purge', () => {
  test('a soft purge keeps the stored copy in use until one request has refreshed it', async () => {
    const path = fresh('soft');
    let version = 'old';
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'soft-tag' }, body: version, delayMs: version === 'new' ? 300 : 0 }));
    await get(path);
    expect((await get(path)).cacheStatus).toContain('hit');
    version = 'new';
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 's', urls: [], prefixes: [], tags: ['soft-tag'], soft: true, at: Date.now() }));
    } finally {
      redis.disconnect();
    }
    await sleep(200);
    // one request refreshes (and waits for the slow origin); the others meanwhile get the stored copy at once
    const refreshing = get(path);
    await sleep(50);
    const meanwhile = await get(path);
    expect(meanwhile.body).toBe('old');
    expect(meanwhile.cacheStatus).toContain('hit');
    const refreshed = await refreshing;
    expect(refreshed.body).toBe('new');
    expect(refreshed.cacheStatus).toContain('fwd=bypass');
    const after = await get(path);
    expect(after.body).toBe('new');
    expect(after.cacheStatus).toContain('hit');
    expect(originHits(path)).toBe(2);
  });
});

describe('debug headers', () => {
  test('X-Cdn-Debug with the debug token shows the key, variant and tags; without it, nothing', async () => {
    const path = fresh('debug');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'sku-1 shoes' }, body: 'x' }));
    await get(`${path}?b=2&a=1&utm_source=x`);
    const shown = await rawRequest(edge.url, `${path}?b=2&a=1&utm_source=x`, { headers: { 'X-Cdn-Debug': DEBUG_TOKEN, 'Accept-Encoding': 'gzip, br' } });
    expect(shown.status).toBe(200);
    expect(shown.headers['cache-status']).toContain('hit');
    // (the CDN's own origin reads no query but the image parameters: none is in the key)
    expect(String(shown.headers['x-cdn-debug-key'])).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+${path}\\?#`));
    expect(shown.headers['x-cdn-debug-variant']).toBe('accept-encoding=br; accept=*/*');
    expect(shown.headers['x-cdn-debug-tags']).toBe('sku-1 shoes');
    const denied = await rawRequest(edge.url, path, { headers: { 'X-Cdn-Debug': 'guess' } });
    expect(denied.headers['x-cdn-debug-key']).toBeUndefined();
    expect(denied.headers['x-cdn-debug']).toContain('denied');
    // the debug location is internal: it cannot be requested by its name
    expect((await rawRequest(edge.url, '/__cdn_debug')).headers['x-cdn-debug-key']).toBeUndefined();
  });
});

describe('review findings (regressions)', () => {
  async function publish(msg: Record<string, unknown>) {
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 'r', urls: [], prefixes: [], tags: [], at: Date.now(), ...msg }));
    } finally {
      redis.disconnect();
    }
  }

  test('X-Cdn-Debug neither reaches the origin nor opens its operational endpoints', async () => {
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'no-store' }, body: `origin saw ${req.url} debug=${req.headers['x-cdn-debug'] ?? '-'}` }));
    expect((await rawRequest(edge.url, '/metrics', { headers: { 'X-Cdn-Debug': 'x' } })).status).toBe(404);
    const r = await rawRequest(edge.url, fresh('dbg'), { headers: { 'X-Cdn-Debug': DEBUG_TOKEN } });
    expect(r.body.toString()).toContain('debug=-');
  });

  test("the CDN's own origin receives exactly the query the key holds: only image parameters (docs/images.md)", async () => {
    const path = fresh('query-forwarded');
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: String(req.url) }));
    const r = await get(`${path}?utm_source=%3Cscript%3E&b=2&a=1`);
    expect(r.body).toBe(path);
    expect((await get(`${path}?a=1&b=2`)).cacheStatus).toContain('hit');
    const image = await get(`${path}?b=2&w=200&a=1`);
    expect(image.body).toBe(`${path}?fmt=auto&q=75&w=256`);
    expect((await get(`${path}?w=256&q=75`)).cacheStatus).toContain('hit');
  });

  test('"+" in a path is not a space', async () => {
    const plus = fresh('a+b');
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: String(req.url) }));
    await get(`${plus}%2Ejpg`);
    const space = await get(`${plus.replace('+', '%20')}.jpg`);
    expect(space.cacheStatus).toContain('fwd=uri-miss');
  });

  test('duplicate header lines from the origin are joined, not a 502', async () => {
    const path = fresh('dup-vary');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', Vary: ['Accept-Encoding', 'Origin'] }, body: 'ok' }));
    const r = await get(path);
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok');
  });

  test('the first prefix purge leaves unrelated objects cached', async () => {
    const path = fresh('unrelated');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: 'stay' }));
    await get(path);
    await publish({ prefixes: [`/nothing-here-${randomUUID()}/`] });
    await sleep(200);
    expect((await get(path)).cacheStatus).toContain('hit');
  });

  test('s-maxage implies proxy-revalidate: no stale copy once it ran out', async () => {
    const path = fresh('s-maxage-strict');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, s-maxage=1' }, body: 'shared' }));
    await get(path);
    await sleep(2100);
    edge.setOrigin(() => ({ status: 503, body: 'down' }));
    expect((await get(path)).status).toBe(502);
  });

  test('a hot object expiring is refreshed by one request, not by all of them', async () => {
    const path = fresh('expiry-collapse');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1' }, body: 'p', delayMs: 300 }));
    await get(path);
    await sleep(1500);
    await Promise.all(Array.from({ length: 50 }, () => get(path)));
    await sleep(400);
    expect(originHits(path)).toBeLessThanOrEqual(3);
  });

  test('cache.staleWhileUpdating: requests during a refresh get the stored copy; the one that refreshes waits for it', async () => {
    const path = fresh('while-updating');
    let version = 1;
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1, must-revalidate' }, body: `v${version}`, delayMs: version === 1 ? 0 : 500 }));
    await get(path);
    await sleep(2100);
    version = 2;
    const refreshing = get(path);
    await sleep(150);
    // arrives while the refresh is in flight: the stored copy, at once (also
    // for must-revalidate: for as long as the one refresh takes)
    const during = await get(path);
    expect(during.body).toBe('v1');
    expect(during.cacheStatus).toMatch(/; hit; ttl=-\d+$/);
    const first = await refreshing;
    expect(first.body).toBe('v2');
    expect(first.cacheStatus).toContain('fwd=stale');
    expect(originHits(path)).toBe(2);
  });

  test('a tag purge that lands while the object is being fetched is not lost', async () => {
    const path = fresh('purge-in-flight');
    let version = 1;
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Surrogate-Key': 'in-flight' }, body: `v${version}`, delayMs: 400 }));
    const inFlight = get(path);
    await sleep(150);
    version = 2;
    await publish({ tags: ['in-flight'] });
    expect((await inFlight).body).toBe('v1');
    expect(await waitFor(async () => (await get(path)).body === 'v2', 2000)).toBeGreaterThanOrEqual(0);
  });
});

describe('metrics', () => {
  test('the edge reports the filesystem under its cache', async () => {
    const text = await (await fetch(`${edge.internalUrl}/metrics`)).text();
    const size = Number(/^cdn_edge_cache_filesystem_size_bytes (\d+)/m.exec(text)?.[1]);
    const avail = Number(/^cdn_edge_cache_filesystem_avail_bytes (\d+)/m.exec(text)?.[1]);
    expect(size).toBeGreaterThan(0);
    expect(avail).toBeGreaterThan(0);
    expect(avail).toBeLessThanOrEqual(size);
    expect(text).toMatch(/^cdn_edge_requests_total\{cache_status="HIT",status_class="2xx"\} \d+/m);
  });
});

describe('cookies', () => {
  test('a request with a bypass cookie skips the cache (fwd=bypass) and its response is never stored', async () => {
    const path = fresh('cookie-bypass');
    edge.setOrigin((req) => ({ headers: { 'Cache-Control': 'public, max-age=300' }, body: `for ${req.headers.cookie ?? 'everyone'}` }));
    await get(path);
    expect((await get(path)).cacheStatus).toContain('hit');
    const personal = await get(path, { Cookie: 'theme=dark; session=abc' });
    expect(personal.body).toBe('for theme=dark; session=abc');
    expect(personal.cacheStatus).toBe('lab-1; fwd=bypass; fwd-status=200');
    // the stored copy was neither used nor replaced
    expect((await get(path)).body).toBe('for everyone');
    // names match whole: "xsession" is not "session"
    expect((await get(path, { Cookie: 'xsession=1; cart_idx=2' })).cacheStatus).toContain('hit');

    const cold = fresh('cookie-cold');
    expect((await get(cold, { Cookie: 'cart_id=42' })).cacheStatus).toContain('fwd=bypass');
    const next = await get(cold);
    expect(next.body).toBe('for everyone');
    expect(next.cacheStatus).toContain('fwd=uri-miss');
    expect(originHits(cold)).toBe(2);
  });

  test('a response that sets a cookie is never stored, and the cookie reaches the client', async () => {
    const path = fresh('set-cookie');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', 'Set-Cookie': 'session=new; Path=/' }, body: 'welcome' }));
    const first = await get(path);
    expect(first.headers.get('set-cookie')).toBe('session=new; Path=/');
    expect(first.cacheStatus).not.toContain('stored');
    const second = await get(path);
    expect(second.cacheStatus).toContain('fwd=uri-miss');
    expect(second.headers.get('set-cookie')).toBe('session=new; Path=/');
    expect(originHits(path)).toBe(2);
  });
});

describe('large objects in slices', () => {
  const MIB = 1024 * 1024;
  const big = Buffer.alloc(3.5 * MIB);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 253;

  /** An origin that answers Range requests, as sliced prefixes require. */
  function rangeOrigin(req: http.IncomingMessage) {
    const headers = { 'Cache-Control': 'public, max-age=300', ETag: '"big-1"', 'Content-Type': 'application/octet-stream' };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) return { headers, body: big };
    const start = Number(m[1]);
    const end = Math.min(m[2] ? Number(m[2]) : big.length - 1, big.length - 1);
    return { status: 206, headers: { ...headers, 'Content-Range': `bytes ${start}-${end}/${big.length}` }, body: big.subarray(start, end + 1) };
  }

  const rangesAsked = (path: string) => edge.originRequests.filter((r) => r.url === path).map((r) => r.headers.range);

  test('only the slices a range covers are fetched; each slice is stored once and the whole object is assembled from them', async () => {
    const path = `/downloads/${randomUUID()}.bin`;
    edge.setOrigin(rangeOrigin);
    const part = await rawRequest(edge.url, path, { headers: { Range: 'bytes=2097152-2097161' } });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 2097152-2097161/${big.length}`);
    expect(part.body.equals(big.subarray(2097152, 2097162))).toBe(true);
    expect(rangesAsked(path)).toEqual(['bytes=2097152-3145727']);

    const whole = await rawRequest(edge.url, path);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(big)).toBe(true);
    // the third slice came from the cache
    expect(rangesAsked(path).slice(1).sort()).toEqual(['bytes=0-1048575', 'bytes=1048576-2097151', 'bytes=3145728-4194303']);

    const again = await rawRequest(edge.url, path);
    expect(again.body.equals(big)).toBe(true);
    expect(again.headers['cache-status']).toMatch(/^lab-1; hit; ttl=/);
    expect(again.headers['content-length']).toBe(String(big.length));
    expect(rangesAsked(path)).toHaveLength(4);
    // the slice marker is for the edge's own hop only
    expect(edge.originRequests.filter((r) => r.url === path).every((r) => r.headers['x-cdn-slice'] === undefined)).toBe(true);

    // purges reach every slice: hard (a write), then soft (one request refreshes them all)
    expect((await rawRequest(edge.url, path, { method: 'DELETE' })).status).toBe(200);
    expect((await rawRequest(edge.url, path)).body.equals(big)).toBe(true);
    expect(rangesAsked(path)).toHaveLength(4 + 1 + 4);
    expect(rangesAsked(path)[4]).toBeUndefined(); // the DELETE, once and whole
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 'slices', urls: [path], prefixes: [], tags: [], soft: true, at: Date.now() }));
    } finally {
      redis.disconnect();
    }
    await sleep(200);
    const refreshed = await rawRequest(edge.url, path);
    expect(refreshed.headers['cache-status']).toContain('fwd=bypass');
    expect(refreshed.body.equals(big)).toBe(true);
    expect(rangesAsked(path)).toHaveLength(9 + 4);
    expect((await rawRequest(edge.url, path)).headers['cache-status']).toContain('hit');
    expect(rangesAsked(path)).toHaveLength(13);
  });

  test('paths outside the sliced prefixes are fetched whole', async () => {
    const path = fresh('not-sliced');
    edge.setOrigin(rangeOrigin);
    const part = await rawRequest(edge.url, path, { headers: { Range: 'bytes=0-9' } });
    expect(part.status).toBe(206);
    expect(rangesAsked(path)).toEqual([undefined]);
  });
});

describe('bytes sent', () => {
  const hitBytes = async () =>
    Number(/^cdn_edge_response_bytes_total\{cache_status="HIT"\} (\d+)/m.exec(await (await fetch(`${edge.internalUrl}/metrics`)).text())?.[1] ?? 0);

  test('cdn_edge_response_bytes_total counts what is sent: the range of a 206, nothing for a 304 or a HEAD', async () => {
    const path = fresh('bytes');
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=300', ETag: '"b1"' }, body: 'b'.repeat(1000) }));
    await get(path);
    const before = await hitBytes();
    const range = await rawRequest(edge.url, path, { headers: { Range: 'bytes=0-99' } });
    expect(range.status).toBe(206);
    expect(range.headers['cache-status']).toContain('hit');
    expect(await hitBytes()).toBe(before + 100);
    const notModified = await rawRequest(edge.url, path, { headers: { 'If-None-Match': '"b1"' } });
    expect(notModified.status).toBe(304);
    expect(await hitBytes()).toBe(before + 100);
    const head = await get(path, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.cacheStatus).toContain('hit');
    expect(head.headers.get('content-length')).toBe('1000');
    expect(await hitBytes()).toBe(before + 100);
    expect((await get(path)).body).toHaveLength(1000);
    expect(await hitBytes()).toBe(before + 1100);
  });
});

describe('soft purge per variant', () => {
  test('every stored variant is refreshed once, by its own first request', async () => {
    const path = fresh('soft-variants');
    let version = 'old';
    edge.setOrigin((req) => ({
      headers: { 'Cache-Control': 'public, max-age=300', Vary: 'Accept-Encoding', 'Surrogate-Key': 'soft-variant-tag' },
      body: `${version}:${req.headers['accept-encoding'] ?? '-'}`,
    }));
    for (const ae of ['br', 'gzip']) await rawRequest(edge.url, path, { headers: { 'Accept-Encoding': ae } });
    version = 'new';
    const redis = new Redis(edge.redis.url);
    try {
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: 'sv', urls: [path], prefixes: [], tags: [], soft: true, at: Date.now() }));
    } finally {
      redis.disconnect();
    }
    await sleep(200);
    for (const ae of ['br', 'gzip']) {
      const first = await rawRequest(edge.url, path, { headers: { 'Accept-Encoding': ae } });
      expect(first.body.toString()).toBe(`new:${ae}`);
      expect(first.headers['cache-status']).toContain('fwd=bypass');
      const second = await rawRequest(edge.url, path, { headers: { 'Accept-Encoding': ae } });
      expect(second.body.toString()).toBe(`new:${ae}`);
      expect(second.headers['cache-status']).toContain('hit');
    }
    expect(originHits(path)).toBe(4);
  });
});

describe('cache.forwardCdnCacheControl: false', () => {
  let stripping: EdgeHarness;
  beforeAll(async () => {
    stripping = await startEdge({ cache: { forwardCdnCacheControl: false } });
  });
  afterAll(async () => {
    await stripping.stop();
  });

  test('CDN-Cache-Control still decides, but is not passed on', async () => {
    stripping.setOrigin(() => ({ headers: { 'Cache-Control': 'no-cache', 'CDN-Cache-Control': 'max-age=120' }, body: 'page' }));
    const path = fresh('cdn-cc-stripped');
    await fetch(`${stripping.url}${path}`).then((r) => r.text());
    const res = await fetch(`${stripping.url}${path}`);
    await res.text();
    expect(res.headers.get('cache-status')).toMatch(/hit; ttl=1[12]\d/);
    expect(res.headers.get('cdn-cache-control')).toBeNull();
  });
});

describe('cache.staleWhileUpdating: false', () => {
  let background: EdgeHarness;
  beforeAll(async () => {
    background = await startEdge({ cache: { staleWhileUpdating: false } });
  });
  afterAll(async () => {
    await background.stop();
  });

  test("the origin's stale-while-revalidate is served at once and refreshed in the background", async () => {
    let version = 1;
    background.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=1, stale-while-revalidate=30' }, body: `v${version}`, delayMs: version === 1 ? 0 : 300 }));
    const path = fresh('background');
    const at = async () => {
      const res = await fetch(`${background.url}${path}`);
      return { body: await res.text(), cacheStatus: res.headers.get('cache-status') ?? '' };
    };
    await at();
    await sleep(2100);
    version = 2;
    const stale = await at();
    expect(stale.body).toBe('v1');
    // from the cache, not after the origin's answer
    expect(stale.cacheStatus).toMatch(/; hit; ttl=-\d+$/);
    expect(await waitFor(async () => (await at()).body === 'v2', 3000)).toBeGreaterThanOrEqual(0);
  });
});

describe('cache.storeSetCookie: true', () => {
  let cookies: EdgeHarness;
  beforeAll(async () => {
    cookies = await startEdge({ cache: { storeSetCookie: true } });
  });
  afterAll(async () => {
    await cookies.stop();
  });

  test('a response that sets a cookie is stored and its cookie replayed; a 304 renews the cookie', async () => {
    const path = fresh('stored-cookie');
    cookies.setOrigin((req) =>
      req.headers['if-none-match'] === '"c1"'
        ? { status: 304, headers: { ETag: '"c1"', 'Cache-Control': 'max-age=300', 'Set-Cookie': 'consent=renewed' } }
        : { headers: { 'Cache-Control': 'max-age=1', ETag: '"c1"', 'Set-Cookie': 'consent=default' }, body: 'banner' },
    );
    const at = async () => {
      const res = await fetch(`${cookies.url}${path}`);
      return { body: await res.text(), cookie: res.headers.get('set-cookie'), cacheStatus: res.headers.get('cache-status') ?? '' };
    };
    expect((await at()).cacheStatus).toContain('stored');
    const hit = await at();
    expect(hit.cacheStatus).toContain('hit');
    expect(hit.cookie).toBe('consent=default');
    await sleep(2100);
    const renewed = await at();
    expect(renewed.cacheStatus).toContain('fwd-status=304');
    expect(renewed.cookie).toBe('consent=renewed');
    expect(cookies.originRequests.filter((r) => r.url === path)).toHaveLength(2);
  });
});
