/**
 * The purge guards of issue #19 against the real app and a real Redis: purging
 * everything (prefix "/") needs the admin scope and "confirm": "purge everything";
 * protected tags (CDN_PROTECTED_TAGS, rendered from the spec's purge.protectedTags)
 * need the admin scope; asset writes' own purges are not guarded. Refusals publish
 * nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { parseSpec } from '../../../infra/model/spec';
import type { Topology } from '../../../infra/model/topology';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { renderOriginEnv } from '../../render';
import { startOrigin, PURGE_TOKEN, TEST_TOKEN, UPLOAD_TOKEN, writeScopedTokens, type OriginUnderTest } from '../../test/harness';
import { loadOriginConfig } from '../config/origin-config';

const STREAM = 'test:guards:purges';

let redisServer: RedisHandle;
let redis: Redis;
let origin: OriginUnderTest;
let dir: string;

function purge(body: unknown, token = PURGE_TOKEN) {
  return origin.request('POST', '/v1/purge', {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
}

async function messages(): Promise<Record<string, unknown>[]> {
  return (await redis.xrange(STREAM, '-', '+')).map(([, fields]) => JSON.parse(fields[1]) as Record<string, unknown>);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdn-purge-guards-'));
  const tokensFile = await writeScopedTokens(dir);
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  origin = await startOrigin(redisServer.url, {
    CDN_PURGE_STREAM: STREAM,
    CDN_TOKENS_FILE: tokensFile,
    CDN_PROTECTED_TAGS: 'all-products,homepage',
    // every accepted purge here must be its own entry
    CDN_PURGE_DEDUP_WINDOW_MS: '0',
    CDN_PURGE_RATE_LIMIT: '1000',
  });
});

afterAll(async () => {
  await origin?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('purging everything (prefix "/")', () => {
  test('a purge-scoped token gets 403, with or without the confirmation', async () => {
    const before = await redis.xlen(STREAM);
    for (const body of [{ prefixes: ['/'] }, { prefixes: ['/'], confirm: 'purge everything' }]) {
      const res = await purge(body);
      expect(res.status).toBe(403);
      expect(res.json()).toEqual({ error: 'CDN_ERR_FORBIDDEN', message: expect.stringContaining('needs the admin scope') });
    }
    expect(await redis.xlen(STREAM)).toBe(before);
  });

  test('an admin token without "confirm" gets 400 naming the field; a wrong value too', async () => {
    const before = await redis.xlen(STREAM);
    const missing = await purge({ prefixes: ['/'] }, TEST_TOKEN);
    expect(missing.status).toBe(400);
    expect(missing.json()).toEqual({ error: 'CDN_ERR_PURGE_INVALID', message: expect.stringContaining('needs "confirm": "purge everything"') });
    const wrong = await purge({ prefixes: ['/', '/banners/'], confirm: 'yes' }, TEST_TOKEN);
    expect(wrong.status).toBe(400);
    expect(wrong.json()).toEqual({ error: 'CDN_ERR_PURGE_INVALID', message: 'Invalid purge request: confirm: must be exactly "purge everything"' });
    expect(await redis.xlen(STREAM)).toBe(before);
  });

  test('an admin token with the confirmation gets 202; the stream message does not carry it', async () => {
    const res = await purge({ prefixes: ['/'], confirm: 'purge everything' }, TEST_TOKEN);
    expect(res.status).toBe(202);
    const { id } = res.json<{ id: string }>();
    const message = (await messages()).find((m) => m.id === id)!;
    expect(Object.keys(message).sort()).toEqual(['at', 'id', 'prefixes', 'tags', 'urls']);
    expect(message.prefixes).toEqual(['/']);
  });

  test('"confirm" on a narrower purge is accepted and ignored', async () => {
    expect((await purge({ prefixes: ['/banners/'], confirm: 'purge everything' })).status).toBe(202);
  });
});

describe('protected tags', () => {
  test('a purge-scoped token purging a protected tag gets 403 naming the tag; nothing is published', async () => {
    const before = await redis.xlen(STREAM);
    const res = await purge({ tags: ['shoes', 'all-products'] });
    expect(res.status).toBe(403);
    expect(res.json()).toEqual({
      error: 'CDN_ERR_FORBIDDEN',
      message: 'Token lacks the required scope: the tag "all-products" is protected (purge.protectedTags): only an admin token purges it',
    });
    expect(await redis.xlen(STREAM)).toBe(before);
  });

  test('the admin token purges it; other tags stay open to purge-scoped tokens', async () => {
    expect((await purge({ tags: ['homepage'] }, TEST_TOKEN)).status).toBe(202);
    expect((await purge({ tags: ['shoes'], urls: ['/all-products'] })).status).toBe(202);
  });

  test('an asset write still purges its own protected tags (not an API purge)', async () => {
    const put = (body: string) =>
      origin.request('PUT', '/v1/assets/catalogue/index.json', {
        headers: { authorization: `Bearer ${UPLOAD_TOKEN}`, 'content-type': 'application/json', 'surrogate-key': 'all-products' },
        body,
      });
    expect((await put('{"v":1}')).status).toBe(201);
    expect((await put('{"v":2}')).status).toBe(200);
    const last = (await messages()).at(-1)!;
    expect(last).toMatchObject({ urls: expect.arrayContaining(['/catalogue/index.json']), tags: ['all-products'] });
  });
});

describe('CDN_PROTECTED_TAGS', () => {
  const base = { CDN_REDIS_URL: 'redis://127.0.0.1:6379', CDN_ADMIN_TOKEN: TEST_TOKEN, CDN_STORAGE_PATH: '/tmp/unused' };

  test('is a comma-separated list of tags, deduplicated; absent is none', () => {
    expect(loadOriginConfig({ ...base, CDN_PROTECTED_TAGS: 'a,b,a' }).purge.protectedTags).toEqual(['a', 'b']);
    expect(loadOriginConfig(base).purge.protectedTags).toEqual([]);
  });

  test.each(['a b', 'a,,b', ',a', 'x'.repeat(129)])('%j stops the boot naming the variable', (value) => {
    expect(() => loadOriginConfig({ ...base, CDN_PROTECTED_TAGS: value })).toThrow(/CDN_PROTECTED_TAGS must be comma-separated tags/);
  });

  test('is rendered from the spec\'s purge.protectedTags, and left out when there are none', () => {
    const p = (host: string, port: number) => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
    const topology: Topology = {
      redis: p('redis', 6379),
      origin: p('origin', 3000),
      originApi: p('origin', 3001),
      balancer: { traffic: p('balancer', 8080), internal: p('balancer', 9145) },
      edges: [{ id: 'eu-1', region: 'eu', index: 1, traffic: p('edge-eu-1', 8081), internal: p('edge-eu-1', 9145) }],
      prometheus: null,
      publicBaseUrl: 'https://cdn.shop.example',
    };
    const secrets = { adminTokenFile: '/run/secrets/admin-token', debugTokenFile: '/run/secrets/debug-token' };
    const env = renderOriginEnv(parseSpec({ purge: { protectedTags: ['all-products', 'homepage'] } }), topology, '/storage', secrets);
    expect(env.CDN_PROTECTED_TAGS).toBe('all-products,homepage');
    expect(loadOriginConfig({ ...base, CDN_PROTECTED_TAGS: env.CDN_PROTECTED_TAGS }).purge.protectedTags).toEqual(['all-products', 'homepage']);
    expect(renderOriginEnv(parseSpec({}), topology, '/storage', secrets)).not.toHaveProperty('CDN_PROTECTED_TAGS');
    expect(parseSpec({}).purge.protectedTags).toEqual([]);
    expect(() => parseSpec({ purge: { protectedTags: ['sale,summer'] } })).toThrow(/purge\.protectedTags\[0\]: must be a tag/);
  });
});
