/**
 * The purge API of issue #3 against the real app and a real Redis: scopes, soft purges,
 * per-edge status from the edges' acknowledgements, deduplication, rate limiting, the
 * audit line, and 503 when Redis is gone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { eventually, startOrigin, PURGE_TOKEN, TEST_TOKEN, UPLOAD_TOKEN, writeScopedTokens, type OriginUnderTest } from '../../test/harness';

const STREAM = 'test:api:purges';

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

const status = (id: string, token = PURGE_TOKEN) => origin.request('GET', `/v1/purge/${id}`, { headers: { authorization: `Bearer ${token}` } });

async function streamIdOf(id: string): Promise<string> {
  const entries = await redis.xrange(STREAM, '-', '+');
  const entry = entries.find(([, fields]) => (JSON.parse(fields[1]) as { id: string }).id === id);
  if (!entry) throw new Error(`purge ${id} is not on the stream`);
  return entry[0];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdn-purge-api-'));
  const tokensFile = await writeScopedTokens(dir);
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  origin = await startOrigin(redisServer.url, {
    CDN_PURGE_STREAM: STREAM,
    CDN_TOKENS_FILE: tokensFile,
    CDN_EDGE_IDS: 'eu-1,us-1',
    CDN_PURGE_RATE_LIMIT: '1000',
  });
});

afterAll(async () => {
  await origin?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('scopes', () => {
  test('purge needs the purge scope: upload-only is 403, purge and admin are 202, unknown is 401', async () => {
    const forbidden = await purge({ urls: ['/x'] }, UPLOAD_TOKEN);
    expect(forbidden.status).toBe(403);
    expect(forbidden.json()).toEqual({ error: 'CDN_ERR_FORBIDDEN', message: expect.stringContaining('"purge" scope') });
    expect((await purge({ urls: ['/scopes/1'] }, PURGE_TOKEN)).status).toBe(202);
    expect((await purge({ urls: ['/scopes/2'] }, TEST_TOKEN)).status).toBe(202);
    expect((await purge({ urls: ['/x'] }, 'not-a-token-at-all-000')).status).toBe(401);
  });

  test('uploads need the upload scope: purge-only is 403, upload-only is 201', async () => {
    const put = (token: string) =>
      origin.request('PUT', '/v1/assets/scoped/file.txt', { headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: 'x' });
    expect((await put(PURGE_TOKEN)).status).toBe(403);
    expect((await put(UPLOAD_TOKEN)).status).toBe(201);
    const del = await origin.request('DELETE', '/v1/assets/scoped/file.txt', { headers: { authorization: `Bearer ${PURGE_TOKEN}` } });
    expect(del.status).toBe(403);
  });

  test('the purge status needs the purge scope too', async () => {
    const { id } = (await purge({ urls: ['/scopes/3'] })).json<{ id: string }>();
    expect((await status(id, UPLOAD_TOKEN)).status).toBe(403);
  });
});

describe('POST /v1/purge', () => {
  test('soft: true travels on the stream; without it the message keeps exactly the five fields', async () => {
    const soft = (await purge({ prefixes: ['/soft/'], soft: true })).json<{ id: string }>();
    const hard = (await purge({ prefixes: ['/hard/'] })).json<{ id: string }>();
    const entries = await redis.xrange(STREAM, '-', '+');
    const messages = entries.map(([, fields]) => JSON.parse(fields[1]) as Record<string, unknown>);
    expect(messages.find((m) => m.id === soft.id)).toMatchObject({ prefixes: ['/soft/'], soft: true });
    expect(Object.keys(messages.find((m) => m.id === hard.id)!)).toEqual(['id', 'urls', 'prefixes', 'tags', 'at']);
  });

  test('soft must be a boolean, named in the error', async () => {
    const res = await purge({ urls: ['/x'], soft: 'yes' });
    expect(res.status).toBe(400);
    expect(res.json()).toEqual({ error: 'CDN_ERR_PURGE_INVALID', message: expect.stringContaining('soft') });
  });

  test('every accepted purge is one audit line with the token name, never the token', async () => {
    const { id } = (await purge({ tags: ['audit-me'] })).json<{ id: string }>();
    await eventually(async () => origin.logLines().some((line) => line.purgeId === id));
    const line = origin.logLines().find((l) => l.audit === 'purge' && l.purgeId === id)!;
    expect(line).toMatchObject({ level: 'info', audit: 'purge', source: 'api', tokenName: 'marketing', tags: ['audit-me'], deduplicated: false });
    expect(line.req_id).toEqual(expect.any(String));
    for (const secret of [TEST_TOKEN, UPLOAD_TOKEN, PURGE_TOKEN]) {
      expect(origin.logText()).not.toContain(secret);
    }
  });

  test('the request id from X-Request-Id is echoed and logged', async () => {
    const res = await origin.request('POST', '/v1/purge', {
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PURGE_TOKEN}`, 'x-request-id': 'balancer-req-42' },
      body: JSON.stringify({ urls: ['/req-id'] }),
    });
    expect(res.headers['x-request-id']).toBe('balancer-req-42');
    await eventually(async () => origin.logLines().some((l) => l.req_id === 'balancer-req-42' && l.msg === 'request'));
    expect(origin.logLines().find((l) => l.audit === 'purge' && l.req_id === 'balancer-req-42')).toBeDefined();
  });
});

describe('GET /v1/purge/{id}', () => {
  test('reports each configured edge, applied once its acknowledged id reaches the purge, then complete', async () => {
    const { id } = (await purge({ urls: ['/status/a.jpg'] })).json<{ id: string }>();
    const sid = await streamIdOf(id);
    const [ms, seq] = sid.split('-').map(Number);

    const before = await status(id);
    expect(before.status).toBe(200);
    expect(before.json()).toMatchObject({
      id,
      streamId: sid,
      source: 'api',
      urls: ['/status/a.jpg'],
      complete: false,
      edges: [
        { id: 'eu-1', applied: false, appliedAt: null },
        { id: 'us-1', applied: false, appliedAt: null },
      ],
    });

    // Edges acknowledge with HSET <stream>:applied <edge> <last applied id>.
    await redis.hset(`${STREAM}:applied`, 'eu-1', sid, 'us-1', `${ms - 1}-${seq + 5}`); // us-1 is behind (ms compared first)
    await eventually(async () => (await status(id)).json<{ edges: { applied: boolean }[] }>().edges[0].applied);
    const half = (await status(id)).json<{ complete: boolean; edges: { id: string; applied: boolean; appliedAt: string | null }[] }>();
    expect(half.complete).toBe(false);
    expect(half.edges[0]).toMatchObject({ id: 'eu-1', applied: true, appliedAt: expect.any(String) });
    expect(half.edges[1]).toMatchObject({ id: 'us-1', applied: false });
    const euAppliedAt = half.edges[0].appliedAt;

    await redis.hset(`${STREAM}:applied`, 'us-1', `${ms + 10}-0`);
    await eventually(async () => (await status(id)).json<{ complete: boolean }>().complete);
    const done = (await status(id)).json<{ edges: { appliedAt: string | null }[] }>();
    // The first sighting is kept: later polls do not move it.
    expect(done.edges[0].appliedAt).toBe(euAppliedAt);
  });

  test('an unknown or malformed id is 404 CDN_ERR_PURGE_NOT_FOUND', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-an-id']) {
      const res = await status(id);
      expect(res.status).toBe(404);
      expect(res.json().error).toBe('CDN_ERR_PURGE_NOT_FOUND');
    }
  });

  test('asset writes get a status record too (source "asset") and an audit line', async () => {
    await origin.request('PUT', '/v1/assets/status/b.txt', { auth: true, body: 'b', headers: { 'content-type': 'text/plain' } });
    await eventually(async () => origin.logLines().some((l) => l.audit === 'purge' && l.source === 'asset' && (l.urls as string[])[0] === '/status/b.txt'));
    const line = origin.logLines().find((l) => l.audit === 'purge' && l.source === 'asset' && (l.urls as string[])[0] === '/status/b.txt')!;
    expect(line.tokenName).toBe('admin');
    expect((await status(line.purgeId as string)).json()).toMatchObject({ source: 'asset', urls: ['/status/b.txt'] });
  });
});

describe('deduplication', () => {
  test('an identical purge no edge has applied yet is merged (same id, no new entry); once an edge applied it, a new one is published', async () => {
    await redis.del(`${STREAM}:applied`);
    const body = { tags: ['dedup-me'], urls: ['/d/1', '/d/2'] };
    const first = (await purge(body)).json<{ id: string }>();
    const length = await redis.xlen(STREAM);
    const again = await purge({ urls: ['/d/2', '/d/1'], tags: ['dedup-me'] }); // same set, other order
    expect(again.status).toBe(202);
    expect(again.json<{ id: string }>().id).toBe(first.id);
    expect(await redis.xlen(STREAM)).toBe(length);
    expect(origin.logLines().filter((l) => l.audit === 'purge' && l.purgeId === first.id && l.deduplicated === true)).toHaveLength(1);

    // A soft variant is a different purge.
    expect((await purge({ ...body, soft: true })).json<{ id: string }>().id).not.toBe(first.id);

    await redis.hset(`${STREAM}:applied`, 'eu-1', await streamIdOf(first.id));
    const later = (await purge(body)).json<{ id: string }>();
    expect(later.id).not.toBe(first.id);
  });
});

describe('rate limiting and Redis failures', () => {
  test('past CDN_PURGE_RATE_LIMIT per second a token gets 429 with Retry-After', async () => {
    const limited = await startOrigin(redisServer.url, { CDN_PURGE_STREAM: 'test:rate:purges', CDN_PURGE_RATE_LIMIT: '3' });
    try {
      // Start at the beginning of a second so that all requests share one window.
      await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 10));
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await limited.request('POST', '/v1/purge', {
          auth: true,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ urls: [`/rate/${i}`] }),
        });
        statuses.push(res.status);
        if (res.status === 429) {
          expect(res.headers['retry-after']).toBe('1');
          expect(res.json().error).toBe('CDN_ERR_RATE_LIMITED');
        }
      }
      expect(statuses).toEqual([202, 202, 202, 429, 429]);
      expect(await redis.xlen('test:rate:purges')).toBe(3);
    } finally {
      await limited.close();
    }
  });

  test('Redis down: POST /v1/purge and GET /v1/purge/{id} are 503, never a false 2xx', async () => {
    const own = await startRedis();
    const local = await startOrigin(own.url, { CDN_PURGE_STREAM: 'test:down:purges' });
    try {
      const { id } = (await local.request('POST', '/v1/purge', { auth: true, headers: { 'content-type': 'application/json' }, body: '{"urls":["/a"]}' })).json<{ id: string }>();
      await own.stop();
      const res = await local.request('POST', '/v1/purge', { auth: true, headers: { 'content-type': 'application/json' }, body: '{"urls":["/b"]}' });
      expect(res.status).toBe(503);
      expect(res.json().error).toBe('CDN_ERR_BUS_UNAVAILABLE');
      const st = await local.request('GET', `/v1/purge/${id}`, { auth: true });
      expect(st.status).toBe(503);
      // An upload is stored but its purge is not: 503 saying exactly that.
      const put = await local.request('PUT', '/v1/assets/down.txt', { auth: true, body: 'x' });
      expect(put.status).toBe(503);
      expect(put.json().message).toContain('stored but its purge was not published');
    } finally {
      await local.close();
      await own.stop();
    }
  });
});
