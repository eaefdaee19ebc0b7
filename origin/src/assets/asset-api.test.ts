/**
 * The asset API of issue #3 on both storage drivers (a real filesystem, and s3rver as
 * MinIO), with a real Redis: verified uploads (checksums, content sniffing), the
 * response shape, metadata, listing, ranges, conditionals, versioned URLs, and the
 * storage going away (503, never a false 2xx).
 */
import { createHash } from 'node:crypto';
import Redis from 'ioredis';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { startS3rver, type S3rverHandle } from '../../../test/support/s3rver';
import { PUBLIC_BASE_URL, startOrigin, type OriginUnderTest } from '../../test/harness';

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const md5 = (data: Buffer | string): string => createHash('md5').update(data).digest('base64');
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(2000, 7)]);
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 3)]);
const MAX_UPLOAD = 256 * 1024;

let redisServer: RedisHandle;
let redis: Redis;
let s3: S3rverHandle;

beforeAll(async () => {
  [redisServer, s3] = await Promise.all([startRedis(), startS3rver()]);
  redis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis?.disconnect();
  await Promise.all([redisServer?.stop(), s3?.stop()]);
});

describe.each(['filesystem', 's3'] as const)('asset API on %s storage', (kind) => {
  let origin: OriginUnderTest;
  const put = (key: string, body: Buffer | string, headers: Record<string, string> = {}) =>
    origin.request('PUT', `/v1/assets/${key}`, { auth: true, body, headers });
  const stored = async (key: string) => (await origin.request('GET', `/v1/assets/${key}`, { auth: true })).status;

  beforeAll(async () => {
    origin = await startOrigin(redisServer.url, {
      CDN_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
      CDN_PURGE_STREAM: `test:${kind}:purges`,
      ...(kind === 's3' ? s3.env(`bucket-${Date.now()}`) : {}),
    });
  });

  afterAll(async () => {
    await origin?.close();
  });

  describe('upload verification', () => {
    test('a matching Content-SHA256, x-amz-checksum-sha256 or Content-MD5 is accepted', async () => {
      expect((await put('ok/a.png', PNG, { 'content-type': 'image/png', 'content-sha256': sha256(PNG).toUpperCase() })).status).toBe(201);
      const amz = Buffer.from(sha256(PNG), 'hex').toString('base64');
      expect((await put('ok/b.png', PNG, { 'content-type': 'image/png', 'x-amz-checksum-sha256': amz })).status).toBe(201);
      expect((await put('ok/c.png', PNG, { 'content-type': 'image/png', 'content-md5': md5(PNG) })).status).toBe(201);
    });

    test.each([
      ['Content-SHA256', { 'content-sha256': sha256('something else') }],
      ['x-amz-checksum-sha256', { 'x-amz-checksum-sha256': createHash('sha256').update('x').digest('base64') }],
      ['Content-MD5', { 'content-md5': md5('something else') }],
    ])('a wrong %s is 400 CDN_ERR_CHECKSUM_MISMATCH and nothing is stored (not even over an old asset)', async (_name, headers) => {
      await put('bad/sum.png', PNG, { 'content-type': 'image/png' });
      const res = await put('bad/sum.png', JPEG, { 'content-type': 'image/jpeg', ...headers });
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_CHECKSUM_MISMATCH');
      const get = await origin.request('GET', '/bad/sum.png');
      expect(get.body.equals(PNG)).toBe(true);
      expect(await stored('bad/never.png')).toBe(404);
      const never = await put('bad/never.png', PNG, { 'content-type': 'image/png', ...headers });
      expect(never.status).toBe(400);
      expect(await stored('bad/never.png')).toBe(404);
    });

    test.each([
      ['content-sha256', 'abc'],
      ['content-md5', 'not base64!'],
      ['content-md5', Buffer.alloc(15).toString('base64')],
      ['x-amz-checksum-sha256', 'AAAA'],
    ])('a malformed %s header is 400 CDN_ERR_HEADER_INVALID', async (header, value) => {
      const res = await put('bad/header.png', PNG, { 'content-type': 'image/png', [header]: value });
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_HEADER_INVALID');
      expect(await stored('bad/header.png')).toBe(404);
    });

    test.each([
      ['HTML declared as an image', '<!DOCTYPE html><script>alert(1)</script>', 'image/png'],
      ['a JPEG declared as PNG', JPEG, 'image/png'],
      ['text declared as SVG', 'just text', 'image/svg+xml'],
      ['HTML declared as JavaScript', '<html><body>x</body></html>', 'text/javascript'],
      ['a PNG declared as CSS', PNG, 'text/css'],
      ['a PNG declared as HTML', PNG, 'text/html; charset=utf-8'],
    ])('content sniffing refuses %s: 400 CDN_ERR_CONTENT_TYPE_MISMATCH, nothing stored', async (_name, body, type) => {
      const res = await put('sniff/x', body, { 'content-type': type });
      expect(res.status).toBe(400);
      expect(res.json()).toEqual({ error: 'CDN_ERR_CONTENT_TYPE_MISMATCH', message: expect.stringContaining('declared') });
      expect(await stored('sniff/x')).toBe(404);
    });

    test.each([
      ['an SVG with an XML prolog', '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', 'image/svg+xml'],
      ['JavaScript', 'export const x = 1;', 'application/javascript'],
      ['HTML', '\ufeff  <!doctype html><title>x</title>', 'text/html'],
      ['a binary download', JPEG, 'application/octet-stream'],
      ['a PDF declared as such', '%PDF-1.7 ...', 'application/pdf'],
    ])('content sniffing accepts %s', async (_name, body, type) => {
      expect((await put(`sniff/ok-${sha256(type).slice(0, 6)}`, body, { 'content-type': type })).status).toBe(201);
    });

    test('over the size limit is 413 and nothing is stored', async () => {
      const res = await put('big/too.bin', Buffer.alloc(MAX_UPLOAD + 1));
      expect(res.status).toBe(413);
      expect(res.json().error).toBe('CDN_ERR_BODY_TOO_LARGE');
      expect(await stored('big/too.bin')).toBe(404);
    });
  });

  describe('metadata and listing', () => {
    beforeAll(async () => {
      for (const key of ['cat/b.png', 'cat/a.png', 'cat/sub/c.png', 'dog/d.png']) {
        expect((await put(key, PNG, { 'content-type': 'image/png', 'surrogate-key': `animal ${key.split('/')[0]}` })).status).toBeLessThan(300);
      }
    });

    test('GET /v1/assets/{key} is the metadata; HEAD has its validators; unknown is 404', async () => {
      const res = await origin.request('GET', '/v1/assets/cat/a.png', { auth: true });
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({
        key: 'cat/a.png',
        size: PNG.length,
        sha256: sha256(PNG),
        contentType: 'image/png',
        etag: `"${sha256(PNG)}"`,
        url: `${PUBLIC_BASE_URL}/cat/a.png`,
        versionedUrl: `${PUBLIC_BASE_URL}/_v/${sha256(PNG)}/cat/a.png`,
        cacheControl: null,
        effectiveCacheControl: 'public, max-age=86400',
        tags: ['animal', 'cat'],
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
      });
      const head = await origin.request('HEAD', '/v1/assets/cat/a.png', { auth: true });
      expect(head.status).toBe(200);
      expect(head.headers.etag).toBe(`"${sha256(PNG)}"`);
      expect((await origin.request('GET', '/v1/assets/cat/none.png', { auth: true })).status).toBe(404);
      expect((await origin.request('HEAD', '/v1/assets/cat/none.png', { auth: true })).status).toBe(404);
      expect((await origin.request('GET', '/v1/assets/cat/a.png')).status).toBe(401);
    });

    test('listing by prefix pages in key order with an opaque cursor', async () => {
      const first = await origin.request('GET', '/v1/assets?prefix=cat/&limit=2', { auth: true });
      expect(first.status).toBe(200);
      const page1 = first.json<{ items: { key: string }[]; nextCursor: string | null }>();
      expect(page1.items.map((i) => i.key)).toEqual(['cat/a.png', 'cat/b.png']);
      expect(page1.nextCursor).toEqual(expect.any(String));
      const second = await origin.request('GET', `/v1/assets?prefix=cat/&limit=2&cursor=${page1.nextCursor}`, { auth: true });
      const page2 = second.json<{ items: { key: string }[]; nextCursor: string | null }>();
      expect(page2.items.map((i) => i.key)).toEqual(['cat/sub/c.png']);
      expect(page2.nextCursor).toBeNull();
    });

    test('listing by tag uses the tag index, and follows overwrites and deletes', async () => {
      const list = async () => (await origin.request('GET', '/v1/assets?tag=cat', { auth: true })).json<{ items: { key: string }[] }>().items.map((i) => i.key);
      expect(await list()).toEqual(['cat/a.png', 'cat/b.png', 'cat/sub/c.png']);
      await put('cat/b.png', PNG, { 'content-type': 'image/png', 'surrogate-key': 'animal' });
      await origin.request('DELETE', '/v1/assets/cat/sub/c.png', { auth: true });
      expect(await list()).toEqual(['cat/a.png']);
    });

    test.each([
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=x', 'limit'],
      ['prefix=a%20b', 'prefix'],
      ['cursor=!!!', 'cursor'],
      ['sort=key', 'unknown parameter "sort"'],
      ['prefix=a&prefix=b', 'prefix'],
      ['tag=x&prefix=cat/', 'cannot be combined'],
    ])('a bad query (%s) is 400 CDN_ERR_QUERY_INVALID naming it', async (query, named) => {
      const res = await origin.request('GET', `/v1/assets?${query}`, { auth: true });
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_QUERY_INVALID');
      expect(res.json().message).toContain(named);
    });
  });

  describe('public delivery', () => {
    const BYTES = Buffer.from('0123456789abcdefghij');
    let lastModified: string;

    beforeAll(async () => {
      expect((await put('dl/file.txt', BYTES, { 'content-type': 'text/plain' })).status).toBe(201);
      lastModified = (await origin.request('HEAD', '/dl/file.txt')).headers['last-modified']!;
    });

    test.each([
      ['bytes=0-3', 206, '0123', 'bytes 0-3/20'],
      ['bytes=15-', 206, 'fghij', 'bytes 15-19/20'],
      ['bytes=-1', 206, 'j', 'bytes 19-19/20'],
      ['bytes=10-1000', 206, 'abcdefghij', 'bytes 10-19/20'],
      ['bytes=abc', 200, BYTES.toString(), undefined],
      ['bytes=5-2', 200, BYTES.toString(), undefined],
      ['bytes=0-1,4-5', 200, BYTES.toString(), undefined],
      ['items=0-1', 200, BYTES.toString(), undefined],
    ])('Range %s -> %i', async (range, status, body, contentRange) => {
      const res = await origin.request('GET', '/dl/file.txt', { headers: { range } });
      expect(res.status).toBe(status);
      expect(res.body.toString()).toBe(body);
      expect(res.headers['content-range']).toBe(contentRange);
      expect(res.headers['content-length']).toBe(String(body.length));
      expect(res.headers['accept-ranges']).toBe('bytes');
    });

    test('a range past the end is 416 with bytes */size', async () => {
      for (const range of ['bytes=20-', 'bytes=-0']) {
        const res = await origin.request('GET', '/dl/file.txt', { headers: { range } });
        expect(res.status).toBe(416);
        expect(res.headers['content-range']).toBe('bytes */20');
        expect(res.json().error).toBe('CDN_ERR_RANGE_NOT_SATISFIABLE');
      }
    });

    test('If-Range: a current validator keeps the range, a stale one gets the whole body', async () => {
      const etag = `"${sha256(BYTES)}"`;
      expect((await origin.request('GET', '/dl/file.txt', { headers: { range: 'bytes=0-1', 'if-range': etag } })).status).toBe(206);
      expect((await origin.request('GET', '/dl/file.txt', { headers: { range: 'bytes=0-1', 'if-range': lastModified } })).status).toBe(206);
      const stale = await origin.request('GET', '/dl/file.txt', { headers: { range: 'bytes=0-1', 'if-range': '"old"' } });
      expect(stale.status).toBe(200);
      expect(stale.body.equals(BYTES)).toBe(true);
    });

    test('If-None-Match wins over If-Modified-Since', async () => {
      const res = await origin.request('GET', '/dl/file.txt', { headers: { 'if-none-match': '"other"', 'if-modified-since': lastModified } });
      expect(res.status).toBe(200);
      const notModified = await origin.request('GET', '/dl/file.txt', { headers: { 'if-modified-since': lastModified } });
      expect(notModified.status).toBe(304);
      expect(notModified.headers['cache-control']).toBe('public, max-age=3600');
    });

    test('the versioned URL serves the same bytes immutable, and 404 once the key holds other bytes', async () => {
      const res = await put('dl/app.js', 'console.log(1)', { 'content-type': 'text/javascript' });
      const { versionedUrl } = res.json<{ versionedUrl: string }>();
      const path = new URL(versionedUrl).pathname;
      const get = await origin.request('GET', path);
      expect(get.status).toBe(200);
      expect(get.body.toString()).toBe('console.log(1)');
      expect(get.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(get.headers.etag).toBe(`"${sha256('console.log(1)')}"`);
      await put('dl/app.js', 'console.log(2)', { 'content-type': 'text/javascript' });
      const gone = await origin.request('GET', path);
      expect(gone.status).toBe(404);
      expect(gone.headers['cache-control']).toBe('public, max-age=5');
      expect((await origin.request('GET', `/_v/${'0'.repeat(63)}/dl/app.js`)).status).toBe(400);
      expect((await origin.request('GET', `/_v/${sha256('x')}/../etc/passwd`)).status).toBe(400);
    });

    // Not on s3rver: its own object replacement is not atomic (a HEAD racing a copy can
    // see no object at all), where S3 and MinIO replace atomically. The driver's share,
    // pinning a read to the version it stat'ed, is tested in s3-storage.driver.test.ts.
    (kind === 's3' ? test.skip : test)('readers during overwrites see a whole old or a whole new asset, never a mix', async () => {
      const versions = [Buffer.alloc(60_000, 'A'), Buffer.alloc(45_000, 'B')];
      await put('race/r.bin', versions[0]);
      const writes = (async () => {
        for (let i = 1; i <= 8; i++) expect((await put('race/r.bin', versions[i % 2])).status).toBe(200);
      })();
      const reads = (async () => {
        for (let i = 0; i < 30; i++) {
          const res = await origin.request('GET', '/race/r.bin');
          expect(res.status).toBe(200);
          expect(versions.some((v) => v.equals(res.body))).toBe(true);
          expect(res.headers.etag).toBe(`"${sha256(res.body)}"`);
        }
      })();
      await Promise.all([writes, reads]);
    });
  });
});

test('S3 storage down: readyz names it, uploads and reads are 503, never a false 2xx', async () => {
  const down = await startS3rver();
  const origin = await startOrigin(redisServer.url, { ...down.env('bucket-down'), CDN_PURGE_STREAM: 'test:down:purges' });
  try {
    expect((await origin.request('PUT', '/v1/assets/a.txt', { auth: true, body: 'x' })).status).toBe(201);
    await down.stop();
    const ready = await origin.request('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json()).toMatchObject({ checks: { storage: { status: 'fail' }, redis: { status: 'ok' } } });
    const putRes = await origin.request('PUT', '/v1/assets/b.txt', { auth: true, body: 'x' });
    expect(putRes.status).toBe(503);
    expect(putRes.json().error).toBe('CDN_ERR_STORAGE_UNAVAILABLE');
    const get = await origin.request('GET', '/a.txt');
    expect(get.status).toBe(503);
    expect(get.json().error).toBe('CDN_ERR_STORAGE_UNAVAILABLE');
    // The storage's cause stays in the log, never in the answer.
    expect(get.body.toString()).not.toContain('127.0.0.1');
  } finally {
    await origin.close();
    await down.stop();
  }
});
