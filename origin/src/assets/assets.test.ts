/**
 * The asset API end to end against the real app on a real port, a real Redis and a real
 * storage directory: uploads, reads, validators, overwrite and delete with their purges,
 * auth, key validation, size limits and interrupted uploads.
 */
import { createHash } from 'node:crypto';
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Redis from 'ioredis';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { eventually, listFiles, PUBLIC_BASE_URL, startOrigin, TEST_TOKEN, type OriginUnderTest } from '../../test/harness';

const MAX_UPLOAD = 64 * 1024;

let redisServer: RedisHandle;
let redis: Redis;
let origin: OriginUnderTest;

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Bytes that sniff as what they are declared to be (content sniffing refuses anything else). */
export const PNG_BYTES = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('hello, shoppers\n')]);
const jpeg = (text: string): Buffer => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from(text)]);

interface StreamEntry {
  id: string;
  fields: string[];
}

async function streamEntries(): Promise<StreamEntry[]> {
  const entries = await redis.xrange(origin.config.purge.stream, '-', '+');
  return entries.map(([id, fields]) => ({ id, fields }));
}

async function lastPurge(): Promise<Record<string, unknown>> {
  const entries = await streamEntries();
  const last = entries[entries.length - 1];
  expect(last.fields[0]).toBe('purge');
  expect(last.fields).toHaveLength(2);
  return JSON.parse(last.fields[1]) as Record<string, unknown>;
}

function put(key: string, body: string | Buffer, headers: Record<string, string> = {}) {
  return origin.request('PUT', `/v1/assets/${key}`, { auth: true, body, headers });
}

beforeAll(async () => {
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  origin = await startOrigin(redisServer.url, { CDN_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) });
});

afterAll(async () => {
  await origin?.close();
  if (redis && redis.status !== 'end') {
    redis.disconnect();
  }
  await redisServer?.stop();
});

describe('PUT /v1/assets/{key}', () => {
  test('stores an upload: 201 with key, size, sha256, contentType and the public url', async () => {
    const bytes = PNG_BYTES;
    const res = await put('img/products/shoe.png', bytes, { 'content-type': 'image/png' });
    expect(res.status).toBe(201);
    expect(res.json()).toEqual({
      key: 'img/products/shoe.png',
      size: bytes.length,
      sha256: sha256(bytes),
      contentType: 'image/png',
      etag: `"${sha256(bytes)}"`,
      url: `${PUBLIC_BASE_URL}/img/products/shoe.png`,
      versionedUrl: `${PUBLIC_BASE_URL}/_v/${sha256(bytes)}/img/products/shoe.png`,
    });
  });

  test('creating a key publishes a purge of its path (clears negative-cached 404s)', async () => {
    const res = await put('fresh/new.txt', 'new', { 'content-type': 'text/plain' });
    expect(res.status).toBe(201);
    const purge = await lastPurge();
    expect(purge).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), urls: ['/fresh/new.txt'], prefixes: [], tags: [], at: expect.any(Number) });
  });

  test('without Content-Type the asset is application/octet-stream', async () => {
    const res = await put('bin/blob', Buffer.from([0, 1, 2, 255]));
    expect(res.status).toBe(201);
    expect(res.json().contentType).toBe('application/octet-stream');
  });

  test('an empty body is a valid, empty asset', async () => {
    const res = await put('empty.txt', '', { 'content-type': 'text/plain' });
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({ size: 0, sha256: sha256('') });
    const get = await origin.request('GET', '/empty.txt');
    expect(get.status).toBe(200);
    expect(get.headers['content-length']).toBe('0');
  });

  test('a JSON upload is stored as bytes, not parsed', async () => {
    const body = '{"not": "parsed"}';
    const res = await put('data/x.json', body, { 'content-type': 'application/json' });
    expect(res.status).toBe(201);
    expect((await origin.request('GET', '/data/x.json')).body.toString()).toBe(body);
  });

  test('a chunked upload (no Content-Length) streams to storage', async () => {
    const parts = [Buffer.alloc(10_000, 'a'), Buffer.alloc(20_000, 'b')];
    const res = await origin.request('PUT', '/v1/assets/chunked.bin', {
      auth: true,
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from(parts),
    });
    expect(res.status).toBe(201);
    expect(res.json()).toMatchObject({ size: 30_000, sha256: sha256(Buffer.concat(parts)) });
  });

  test('rejects bad Content-Type, Cache-Control and Surrogate-Key headers with 400', async () => {
    const cases: Record<string, string>[] = [
      { 'content-type': 'not a media type' },
      { 'surrogate-key': 'ok ' + 'x'.repeat(129) },
      { 'surrogate-key': Array.from({ length: 65 }, (_, i) => `t${i}`).join(' ') },
      { 'surrogate-key': 'caf\u00e9' },
    ];
    for (const headers of cases) {
      const res = await put('headers/bad.txt', 'x', headers);
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_HEADER_INVALID');
    }
    expect((await origin.request('GET', '/headers/bad.txt')).status).toBe(404);
  });
});

describe('GET and HEAD /{key}', () => {
  const bytes = Buffer.from('<svg>logo</svg>');

  beforeAll(async () => {
    const res = await put('brand/logo.svg', bytes, {
      'content-type': 'image/svg+xml',
      'surrogate-key': 'brand logo',
    });
    expect(res.status).toBe(201);
  });

  test('serves the same bytes with the asset headers', async () => {
    const res = await origin.request('GET', '/brand/logo.svg');
    expect(res.status).toBe(200);
    expect(res.body.equals(bytes)).toBe(true);
    expect(res.headers['content-type']).toBe('image/svg+xml');
    expect(res.headers['content-length']).toBe(String(bytes.length));
    expect(res.headers.etag).toBe(`"${sha256(bytes)}"`);
    expect(new Date(res.headers['last-modified']!).getTime()).toBeGreaterThan(Date.now() - 60_000);
    // image/* default (CDN_CACHE_CONTROL_BY_TYPE's built-in table)
    expect(res.headers['cache-control']).toBe('public, max-age=86400');
    expect(res.headers['surrogate-key']).toBe('brand logo');
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toContain('sandbox');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('HEAD gives the same headers and no body', async () => {
    const res = await origin.request('HEAD', '/brand/logo.svg');
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(0);
    expect(res.headers['content-length']).toBe(String(bytes.length));
    expect(res.headers.etag).toBe(`"${sha256(bytes)}"`);
  });

  test('a query string does not change the asset', async () => {
    const res = await origin.request('GET', '/brand/logo.svg?v=3');
    expect(res.status).toBe(200);
    expect(res.body.equals(bytes)).toBe(true);
  });

  test('If-None-Match with the ETag gives 304 without a body', async () => {
    const etag = `"${sha256(bytes)}"`;
    for (const value of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await origin.request('GET', '/brand/logo.svg', { headers: { 'if-none-match': value } });
      expect(res.status).toBe(304);
      expect(res.body.length).toBe(0);
      expect(res.headers.etag).toBe(etag);
      expect(res.headers['cache-control']).toBe('public, max-age=86400');
    }
    const other = await origin.request('GET', '/brand/logo.svg', { headers: { 'if-none-match': '"other"' } });
    expect(other.status).toBe(200);
  });

  test('If-Modified-Since gives 304 when the asset is not newer', async () => {
    const first = await origin.request('GET', '/brand/logo.svg');
    const res = await origin.request('GET', '/brand/logo.svg', {
      headers: { 'if-modified-since': first.headers['last-modified']! },
    });
    expect(res.status).toBe(304);
  });

  test('the asset Cache-Control policy wins over the default', async () => {
    await put('css/app.css', 'body{}', { 'content-type': 'text/css', 'cache-control': 'public, max-age=31536000, immutable' });
    const res = await origin.request('GET', '/css/app.css');
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.headers['surrogate-key']).toBeUndefined();
  });

  test('an unknown key is 404 JSON with short negative caching', async () => {
    for (const method of ['GET', 'HEAD']) {
      const res = await origin.request(method, '/no/such/thing.png');
      expect(res.status).toBe(404);
      expect(res.headers['cache-control']).toBe('public, max-age=5');
    }
    const res = await origin.request('GET', '/no/such/thing.png');
    expect(res.json()).toEqual({ error: 'CDN_ERR_ASSET_NOT_FOUND', message: expect.stringContaining('no/such/thing.png') });
  });

  test('an invalid key is 400; the origin routes are not asset keys', async () => {
    for (const path of ['/a//b', '/a/../b', '/%2e%2e/x', '/a%2fb', '/.hidden']) {
      const res = await origin.request('GET', path);
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_KEY_INVALID');
    }
    for (const path of ['/v1/anything', '/', '/v1/assetsx']) {
      const res = await origin.request('GET', path);
      expect(res.status).toBe(404);
      expect(res.json().error).toBe('CDN_ERR_ROUTE_NOT_FOUND');
    }
  });
});

describe('overwrite and delete', () => {
  test('an overwrite returns 200, publishes a purge of the URL and the old tags, and serves the new bytes', async () => {
    const v1 = await put('products/hat.jpg', jpeg('hat v1'), { 'content-type': 'image/jpeg', 'surrogate-key': 'product-7 hats' });
    expect(v1.status).toBe(201);
    const before = (await streamEntries()).length;

    const v2Bytes = jpeg('hat v2!');
    const v2 = await put('products/hat.jpg', v2Bytes, { 'content-type': 'image/jpeg', 'surrogate-key': 'product-7 sale' });
    expect(v2.status).toBe(200);
    expect(v2.json()).toEqual({
      key: 'products/hat.jpg',
      size: v2Bytes.length,
      sha256: sha256(v2Bytes),
      contentType: 'image/jpeg',
      etag: `"${sha256(v2Bytes)}"`,
      url: `${PUBLIC_BASE_URL}/products/hat.jpg`,
      versionedUrl: `${PUBLIC_BASE_URL}/_v/${sha256(v2Bytes)}/products/hat.jpg`,
    });

    const entries = await streamEntries();
    expect(entries).toHaveLength(before + 1);
    const message = JSON.parse(entries[entries.length - 1].fields[1]) as Record<string, unknown>;
    expect(Object.keys(message).sort()).toEqual(['at', 'id', 'prefixes', 'tags', 'urls']);
    expect(message).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      urls: ['/products/hat.jpg'],
      prefixes: [],
      tags: ['product-7', 'hats'],
      at: expect.any(Number),
    });
    expect(Math.abs((message.at as number) - Date.now())).toBeLessThan(10_000);

    const get = await origin.request('GET', '/products/hat.jpg');
    expect(get.body.equals(v2Bytes)).toBe(true);
    expect(get.headers.etag).toBe(`"${sha256(v2Bytes)}"`);
    expect(get.headers['surrogate-key']).toBe('product-7 sale');
  });

  test('readers during overwrites see a whole old or a whole new asset, never a mix', async () => {
    const versions = ['A'.repeat(40_000), 'B'.repeat(30_000)];
    await put('race/file.txt', versions[0]);
    const writes = (async () => {
      for (let i = 1; i <= 10; i++) {
        expect([200, 201]).toContain((await put('race/file.txt', versions[i % 2])).status);
      }
    })();
    const reads = (async () => {
      for (let i = 0; i < 40; i++) {
        const res = await origin.request('GET', '/race/file.txt');
        expect(res.status).toBe(200);
        const body = res.body.toString();
        expect(versions).toContain(body);
        expect(res.headers.etag).toBe(`"${sha256(body)}"`);
        expect(res.headers['content-length']).toBe(String(body.length));
      }
    })();
    await Promise.all([writes, reads]);
  });

  test('delete: 204 and a purge with the tags, then 404 with max-age=5; deleting again is 404', async () => {
    await put('tmp/old-banner.jpg', 'banner', { 'surrogate-key': 'banner spring' });
    const versioned = `/_v/${sha256('banner')}/tmp/old-banner.jpg`;
    const del = await origin.request('DELETE', '/v1/assets/tmp/old-banner.jpg', { auth: true });
    expect(del.status).toBe(204);
    expect(del.body.length).toBe(0);
    expect(await lastPurge()).toEqual({
      id: expect.any(String),
      // the versioned URL too: a deleted asset must leave the edges entirely
      urls: ['/tmp/old-banner.jpg', versioned],
      prefixes: [],
      tags: ['banner', 'spring'],
      at: expect.any(Number),
    });

    const get = await origin.request('GET', '/tmp/old-banner.jpg');
    expect(get.status).toBe(404);
    expect(get.headers['cache-control']).toBe('public, max-age=5');

    const again = await origin.request('DELETE', '/v1/assets/tmp/old-banner.jpg', { auth: true });
    expect(again.status).toBe(404);
    expect(again.json().error).toBe('CDN_ERR_ASSET_NOT_FOUND');
  });
});

describe('authentication', () => {
  const variants: Record<string, Record<string, string>> = {
    'no token': {},
    'a wrong token': { authorization: 'Bearer not-the-token' },
    'a token prefix': { authorization: `Bearer ${TEST_TOKEN.slice(0, -1)}` },
    'another scheme': { authorization: `Basic ${Buffer.from(`admin:${TEST_TOKEN}`).toString('base64')}` },
    'the bare token': { authorization: TEST_TOKEN },
  };

  test.each(Object.entries(variants))('PUT, DELETE and purge with %s are 401', async (_name, headers) => {
    await put('auth/existing.txt', 'keep me');
    const before = (await streamEntries()).length;

    const putRes = await origin.request('PUT', '/v1/assets/auth/new.txt', { headers, body: 'x' });
    const delRes = await origin.request('DELETE', '/v1/assets/auth/existing.txt', { headers });
    const purgeRes = await origin.request('POST', '/v1/purge', {
      headers: { ...headers, 'content-type': 'application/json' },
      body: '{"urls":["/x"]}',
    });
    for (const res of [putRes, delRes, purgeRes]) {
      expect(res.status).toBe(401);
      expect(res.json()).toEqual({ error: 'CDN_ERR_UNAUTHORIZED', message: 'Missing or invalid bearer token' });
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect((await origin.request('GET', '/auth/new.txt')).status).toBe(404);
    expect((await origin.request('GET', '/auth/existing.txt')).status).toBe(200);
    expect(await streamEntries()).toHaveLength(before);
  });

  test('the scheme is case-insensitive', async () => {
    const res = await origin.request('PUT', '/v1/assets/auth/case.txt', {
      headers: { authorization: `bearer ${TEST_TOKEN}` },
      body: 'x',
    });
    expect(res.status).toBe(201);
  });
});

describe('key validation', () => {
  const badKeys: Record<string, string> = {
    'parent traversal': '../etc/passwd',
    'inner traversal': 'a/../b',
    'dot segment': 'a/./b',
    'encoded dots': '%2e%2e/x',
    'encoded inner dots': 'a/%2E%2E/b',
    'encoded slash': 'a%2fb',
    backslash: 'a\\b',
    'encoded backslash': 'a%5cb',
    'encoded NUL': 'a%00b',
    'too long (1025)': 'k'.repeat(1025),
    'empty segment': 'a//b',
    'trailing slash': 'a/b/',
    'leading dot': '.env',
    'leading dash': '-x',
    'semicolon': 'a;b',
    'space (encoded)': 'a%20b',
    'reserved v1': 'v1/purge',
    'reserved healthz': 'healthz',
    empty: '',
  };

  test.each(Object.entries(badKeys))('%s -> 400 CDN_ERR_KEY_INVALID and nothing written', async (_name, key) => {
    const before = await listFiles(origin.storageDir);
    for (const method of ['PUT', 'DELETE']) {
      const res = await origin.request(method, `/v1/assets/${key}`, { auth: true, body: method === 'PUT' ? 'payload' : undefined });
      expect(res.status).toBe(400);
      const body = res.json();
      expect(body.error).toBe('CDN_ERR_KEY_INVALID');
      expect(String(body.message).length).toBeGreaterThan('Invalid asset key: '.length);
    }
    expect(await listFiles(origin.storageDir)).toEqual(before);
  });

  test('the longest valid key (1024 characters) is accepted', async () => {
    const key = `k/${'x'.repeat(1022)}`;
    expect(key).toHaveLength(1024);
    expect((await put(key, 'long')).status).toBe(201);
    expect((await origin.request('GET', `/${key}`)).body.toString()).toBe('long');
  });
});

describe('size limit and interrupted uploads', () => {
  const committed = async (): Promise<string[]> =>
    (await listFiles(origin.storageDir)).filter((file) => !file.startsWith('tmp/'));

  test('a declared Content-Length over the limit is 413 and nothing is committed', async () => {
    const before = await committed();
    const res = await put('big/declared.bin', Buffer.alloc(MAX_UPLOAD + 1, 1));
    expect(res.status).toBe(413);
    expect(res.json().error).toBe('CDN_ERR_BODY_TOO_LARGE');
    expect(await committed()).toEqual(before);
    expect(await listFiles(join(origin.storageDir, 'tmp'))).toEqual([]);
    expect((await origin.request('GET', '/big/declared.bin')).status).toBe(404);
  });

  test('a chunked body growing over the limit is 413, nothing is committed and no temp file stays', async () => {
    const before = await committed();
    const chunks = Array.from({ length: 5 }, () => Buffer.alloc(MAX_UPLOAD / 4, 2));
    const res = await origin.request('PUT', '/v1/assets/big/chunked.bin', { auth: true, body: Readable.from(chunks) });
    expect(res.status).toBe(413);
    expect(res.json().error).toBe('CDN_ERR_BODY_TOO_LARGE');
    expect(await committed()).toEqual(before);
    await eventually(async () => (await listFiles(join(origin.storageDir, 'tmp'))).length === 0);
    expect((await origin.request('GET', '/big/chunked.bin')).status).toBe(404);
  });

  test('exactly the limit is accepted', async () => {
    const res = await put('big/exact.bin', Buffer.alloc(MAX_UPLOAD, 3));
    expect(res.status).toBe(201);
    expect(res.json().size).toBe(MAX_UPLOAD);
  });

  test('a client that disconnects mid-upload leaves no asset and no temp file', async () => {
    const before = await committed();
    const tmpDir = join(origin.storageDir, 'tmp');
    const socket = connect({ host: '127.0.0.1', port: origin.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(
      'PUT /v1/assets/aborted/file.bin HTTP/1.1\r\n' +
        'Host: origin.test\r\n' +
        `Authorization: Bearer ${TEST_TOKEN}\r\n` +
        'Content-Type: application/octet-stream\r\n' +
        'Content-Length: 50000\r\n\r\n',
    );
    socket.write(Buffer.alloc(20_000, 7));
    // The upload is in flight: its temp file exists. Now the client vanishes.
    await eventually(async () => (await listFiles(tmpDir)).length === 1);
    socket.destroy();

    await eventually(async () => (await listFiles(tmpDir)).length === 0);
    expect(await committed()).toEqual(before);
    expect((await origin.request('GET', '/aborted/file.bin')).status).toBe(404);
  });

  test('a 413 closes the connection rather than draining the rest of the body (which could go on for ever)', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const chunks = Array.from({ length: 6 }, () => Buffer.alloc(MAX_UPLOAD / 4, 1));
      const tooBig = await origin.request('PUT', '/v1/assets/big/again.bin', { auth: true, agent, body: Readable.from(chunks) });
      expect(tooBig.status).toBe(413);
      expect(tooBig.headers.connection).toBe('close');
      const after = await origin.request('PUT', '/v1/assets/small/after.txt', { auth: true, agent, body: 'fine' });
      expect(after.status).toBe(201);
      expect(after.reusedSocket).toBe(false);
    } finally {
      agent.destroy();
    }
  });
});
