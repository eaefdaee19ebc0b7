/**
 * POST /v1/purge against the real app and a real Redis: the exact stream message, the
 * validation errors (each naming its field), the OpenAPI request body (the validating
 * schema's), and 503 (never a false 202) when Redis is gone.
 */
import Redis from 'ioredis';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { startOrigin, type OriginUnderTest } from '../../test/harness';
import { normalisePurgeUrl, parsePurgeRequest, purgeRequestSchema } from './purge-request';
import { purgeRequestOpenApiSchema } from './purge.dto';

let redisServer: RedisHandle;
let redis: Redis;
let origin: OriginUnderTest;

const STREAM = 'test:purges';

function purge(body: unknown, headers: Record<string, string> = {}) {
  return origin.request('POST', '/v1/purge', {
    auth: true,
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

beforeAll(async () => {
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  origin = await startOrigin(redisServer.url, { CDN_PURGE_STREAM: STREAM, CDN_PURGE_STREAM_MAXLEN: '500' });
});

afterAll(async () => {
  await origin?.close();
  if (redis && redis.status !== 'end') {
    redis.disconnect();
  }
  await redisServer?.stop();
});

describe('POST /v1/purge', () => {
  test('202 with an id; the stream entry is exactly {id, urls, prefixes, tags, at} in the field "purge"', async () => {
    const before = Date.now();
    const res = await purge({
      urls: ['https://shop.example/products/a.jpg', '/products/b.jpg', 'http://cdn.example:8080/x/../c.css'],
      prefixes: ['/banners/'],
      tags: ['product-1', 'sale'],
    });
    expect(res.status).toBe(202);
    const { id } = res.json<{ id: string }>();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

    const entries = await redis.xrange(STREAM, '-', '+');
    const [, fields] = entries[entries.length - 1];
    expect(fields).toHaveLength(2);
    expect(fields[0]).toBe('purge');
    const message = JSON.parse(fields[1]) as Record<string, unknown>;
    expect(Object.keys(message)).toEqual(['id', 'urls', 'prefixes', 'tags', 'at']);
    expect(message).toEqual({
      id,
      urls: ['/products/a.jpg', '/products/b.jpg', '/c.css'],
      prefixes: ['/banners/'],
      tags: ['product-1', 'sale'],
      at: expect.any(Number),
    });
    expect(message.at as number).toBeGreaterThanOrEqual(before);
    expect(message.at as number).toBeLessThanOrEqual(Date.now());
  });

  test('absent lists are published as empty lists; duplicates are dropped', async () => {
    const res = await purge({ tags: ['t1', 't1', 't2'] });
    expect(res.status).toBe(202);
    const entries = await redis.xrevrange(STREAM, '+', '-', 'COUNT', 1);
    expect(JSON.parse(entries[0][1][1])).toMatchObject({ urls: [], prefixes: [], tags: ['t1', 't2'] });
  });

  test('the stream is capped (XADD MAXLEN ~)', async () => {
    for (let i = 0; i < 12; i++) {
      const batch = Array.from({ length: 100 }, (_, j) => `/cap/${i}/${j}`);
      expect((await purge({ urls: batch })).status).toBe(202);
    }
    const length = await redis.xlen(STREAM);
    // "~" trims whole radix-tree nodes (100 entries by default), so allow one node over.
    expect(length).toBeLessThanOrEqual(500 + 100);
  });

  test('the purge counter counts published purges', async () => {
    const metrics = (await origin.request('GET', '/metrics')).body.toString();
    const match = /^cdn_origin_purges_published_total (\d+)$/m.exec(metrics);
    expect(Number(match?.[1])).toBeGreaterThanOrEqual(2);
  });

  const invalid: [string, unknown, RegExp][] = [
    ['an unknown field', { urls: ['/a'], hosts: ['x'] }, /unknown field "hosts"/],
    ['urls not a list', { urls: '/a' }, /^Invalid purge request: urls: /],
    ['a url that is not a string', { urls: ['/a', 7] }, /urls\[1\]: /],
    ['a relative url', { urls: ['a.jpg'] }, /urls\[0\]: must be a full http\(s\) URL or a path/],
    ['a protocol-relative url', { urls: ['//evil/a.jpg'] }, /urls\[0\]: /],
    ['a ftp url', { urls: ['ftp://host/a'] }, /urls\[0\]: /],
    ['a url with a query', { urls: ['/a.jpg?v=2'] }, /urls\[0\]: must not have a query/],
    ['a prefix without trailing slash', { prefixes: ['/banners'] }, /prefixes\[0\]: must start and end with "\/"/],
    ['a prefix without leading slash', { prefixes: ['banners/'] }, /prefixes\[0\]: /],
    ['a tag with a space', { tags: ['ok', 'not ok'] }, /tags\[1\]: /],
    ['a tag too long', { tags: ['x'.repeat(129)] }, /tags\[0\]: tag is longer than 128/],
    ['all lists empty', { urls: [], prefixes: [], tags: [] }, /at least one of urls, prefixes, tags/],
    ['an empty object', {}, /at least one of urls, prefixes, tags/],
    ['too many entries', { urls: Array.from({ length: 600 }, (_, i) => `/u/${i}`), tags: Array.from({ length: 401 }, (_, i) => `t${i}`) }, /at most 1000 entries/],
    ['a JSON array', ['/a'], /Invalid purge request/],
  ];

  test.each(invalid)('%s -> 400 CDN_ERR_PURGE_INVALID naming the field', async (_name, body, message) => {
    const before = await redis.xlen(STREAM);
    const res = await purge(body);
    expect(res.status).toBe(400);
    const json = res.json();
    expect(json.error).toBe('CDN_ERR_PURGE_INVALID');
    expect(json.message).toMatch(message);
    expect(Object.keys(json).sort()).toEqual(['error', 'message']);
    expect(await redis.xlen(STREAM)).toBe(before);
  });

  test('exactly 1000 entries are accepted', async () => {
    const res = await purge({ urls: Array.from({ length: 999 }, (_, i) => `/u/${i}`), tags: ['one'] });
    expect(res.status).toBe(202);
  });

  test('malformed JSON, no body and a non-JSON content type are 400 CDN_ERR_BODY_INVALID', async () => {
    for (const res of [
      await purge('{"urls": ['),
      await purge(''),
      await purge('urls=/a', { 'content-type': 'application/x-www-form-urlencoded' }),
    ]) {
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('CDN_ERR_BODY_INVALID');
    }
  });

  test('a body over 1 MiB is 413', async () => {
    const res = await purge({ urls: ['/' + 'a'.repeat(1024 * 1024)] });
    expect(res.status).toBe(413);
    expect(res.json().error).toBe('CDN_ERR_BODY_TOO_LARGE');
  });
});

describe('the OpenAPI request body of POST /v1/purge', () => {
  interface BodySchema {
    type: string;
    properties: Record<string, { type: string; items?: { type: string }; description?: string; example?: unknown; default?: unknown }>;
    required?: string[];
    additionalProperties: unknown;
  }
  let schema: BodySchema;

  beforeAll(async () => {
    const res = await origin.request('GET', '/docs/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.json<{ paths: Record<string, { post: { requestBody: { content: Record<string, { schema: BodySchema }> } } }> }>();
    schema = doc.paths['/v1/purge'].post.requestBody.content['application/json'].schema;
  });

  test('is the one derived from the zod schema that validates the body: its fields exactly, nothing else allowed', () => {
    expect(schema).toEqual(purgeRequestOpenApiSchema);
    expect(schema.type).toBe('object');
    expect(Object.keys(schema.properties)).toEqual(Object.keys(purgeRequestSchema.shape));
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required ?? []).toEqual([]);
  });

  test('documents urls, prefixes and tags as string lists with an example, and soft as a boolean defaulting to false', () => {
    for (const list of ['urls', 'prefixes', 'tags']) {
      expect(schema.properties[list]).toEqual({
        type: 'array',
        items: { type: 'string' },
        description: expect.any(String),
        example: expect.arrayContaining([expect.any(String)]),
      });
    }
    expect(schema.properties.urls.description).toBe('Full URLs or paths; no query or fragment');
    expect(schema.properties.soft).toEqual({ type: 'boolean', default: false, description: expect.stringContaining('stale') });
  });

  test('its examples pass the validation', () => {
    const example = Object.fromEntries(['urls', 'prefixes', 'tags'].map((list) => [list, schema.properties[list].example]));
    expect(parsePurgeRequest(example)).toEqual({
      urls: ['/products/shoe.jpg', '/cart.css'],
      prefixes: ['/banners/'],
      tags: ['product-42'],
      soft: false,
    });
  });
});

describe('purge URL normalisation', () => {
  test.each([
    ['https://shop.example/a/b.jpg', '/a/b.jpg'],
    ['HTTP://Shop.Example:8080/a', '/a'],
    ['https://shop.example', '/'],
    ['/a/./b/../c', '/a/c'],
    ['/caf\u00e9.png', '/caf%C3%A9.png'],
    ['/already%20encoded', '/already%20encoded'],
  ])('%s -> %s', (input, path) => {
    expect(normalisePurgeUrl(input)).toEqual({ path });
  });
});

describe('with Redis down', () => {
  test('a purge is 503 CDN_ERR_BUS_UNAVAILABLE, promptly, never a false 202', async () => {
    redis.disconnect();
    await redisServer.stop();
    const started = Date.now();
    const res = await purge({ urls: ['/after-redis-died'] });
    expect(res.status).toBe(503);
    expect(res.json()).toEqual({ error: 'CDN_ERR_BUS_UNAVAILABLE', message: expect.stringContaining('not published') });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test('an upload is stored but answered 503, saying its purge was not published', async () => {
    const res = await origin.request('PUT', '/v1/assets/while/redis-down.txt', { auth: true, body: 'stored anyway' });
    expect(res.status).toBe(503);
    expect(res.json()).toEqual({ error: 'CDN_ERR_BUS_UNAVAILABLE', message: expect.stringContaining('was stored but its purge was not published') });
    expect((await origin.request('GET', '/while/redis-down.txt')).body.toString()).toBe('stored anyway');
  });
});
