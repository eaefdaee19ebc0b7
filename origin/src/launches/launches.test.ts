/**
 * Scheduled launches (issue #19) against the real app and a real Redis: validation (each
 * error naming its field), the purge guards at creation and again at the launch's
 * time, the run itself with two origins polling the same Redis (each step once, the
 * purge within 0.5 s of `at`), a restart in between, cancel (and 409 once purged),
 * the listing, a warm handed over when its origin shuts down, and 503 without Redis.
 * The balancer's /warm/ route is a stand-in here that answers as an edge storing the
 * object; test/e2e/launches.test.ts runs launches through a native stack.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { eventually, startOrigin, PURGE_TOKEN, TEST_TOKEN, UPLOAD_TOKEN, writeScopedTokens, type OriginUnderTest } from '../../test/harness';
import { launchRequestOpenApiSchema } from './launches.dto';
import type { Launch, LaunchList } from './launches.service';

const STREAM = 'test:launches';

let redisServer: RedisHandle;
let redis: Redis;
let dir: string;
let tokensFile: string;
/** Two origins on one Redis and one stream, as two processes of a deployment. */
let a: OriginUnderTest;
let b: OriginUnderTest;
let balancer: Server;
let balancerUrl: string;
let balancerDelayMs = 0;
/** What the stand-in balancer was asked to warm: "<region> <path>". */
const warmed: string[] = [];

const SECOND = 1000;
const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();

function env(stream = STREAM, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CDN_PURGE_STREAM: stream,
    CDN_TOKENS_FILE: tokensFile,
    CDN_EDGE_IDS: 'eu-1,us-1',
    CDN_BALANCER_INTERNAL_URL: balancerUrl,
    CDN_PURGE_RATE_LIMIT: '1000',
    CDN_PROTECTED_TAGS: 'all-products',
    ...extra,
  };
}

function post(origin: OriginUnderTest, body: unknown, token = PURGE_TOKEN) {
  return origin.request('POST', '/v1/launches', {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function schedule(origin: OriginUnderTest, body: unknown, token = PURGE_TOKEN): Promise<Launch> {
  const res = await post(origin, body, token);
  expect([res.status, res.body.toString()]).toEqual([201, expect.any(String)]);
  return res.json<Launch>();
}

async function launch(origin: OriginUnderTest, id: string): Promise<Launch> {
  const res = await origin.request('GET', `/v1/launches/${id}`, { headers: { authorization: `Bearer ${PURGE_TOKEN}` } });
  expect(res.status).toBe(200);
  return res.json<Launch>();
}

async function until(origin: OriginUnderTest, id: string, statuses: string[], timeoutMs = 5000): Promise<Launch> {
  let last: Launch | undefined;
  await eventually(async () => {
    last = await launch(origin, id);
    return statuses.includes(last.status);
  }, timeoutMs);
  return last!;
}

const cancel = (origin: OriginUnderTest, id: string) => origin.request('DELETE', `/v1/launches/${id}`, { headers: { authorization: `Bearer ${PURGE_TOKEN}` } });

/** The stream's messages naming `tag`. */
async function purgesOf(tag: string, stream = STREAM): Promise<{ id: string; tags: string[]; at: number }[]> {
  return (await redis.xrange(stream, '-', '+'))
    .map(([, fields]) => JSON.parse(fields[1]) as { id: string; tags: string[]; at: number })
    .filter((m) => m.tags.includes(tag));
}

const auditLines = (origin: OriginUnderTest, event: string, id?: string) =>
  origin.logLines().filter((l) => l.audit === 'launch' && l.event === event && (id === undefined || l.launchId === id));

async function upload(key: string, tags: string): Promise<void> {
  const res = await a.request('PUT', `/v1/assets/${key}`, {
    headers: { authorization: `Bearer ${UPLOAD_TOKEN}`, 'content-type': 'text/plain', 'surrogate-key': tags },
    body: key,
  });
  expect(res.status).toBe(201);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdn-launches-'));
  tokensFile = await writeScopedTokens(dir);
  // the balancer's internal /warm/ route: the region's edge "stores" the object
  balancer = createServer((req, res) => {
    const region = String(req.headers['x-cdn-warm-region']);
    warmed.push(`${region} ${req.url!.replace(/^\/warm/, '')}`);
    setTimeout(() => res.writeHead(200, { 'cache-status': `${region}-1; fwd=uri-miss; stored` }).end('ok'), balancerDelayMs);
  });
  await new Promise<void>((resolve) => balancer.listen(0, '127.0.0.1', resolve));
  balancerUrl = `http://127.0.0.1:${(balancer.address() as AddressInfo).port}`;
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  a = await startOrigin(redisServer.url, env());
  // b shares a's storage: one store, two origin processes
  b = await startOrigin(redisServer.url, { ...env(), CDN_STORAGE_PATH: a.storageDir });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  redis?.disconnect();
  await redisServer?.stop();
  balancer?.closeAllConnections();
  await new Promise((resolve) => balancer?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('POST /v1/launches: validation', () => {
  const later = () => inMs(3600 * SECOND);
  const invalid: [string, () => unknown, RegExp][] = [
    ['`at` in the past', () => ({ at: inMs(-SECOND), purge: { tags: ['x'] } }), /^at: must be in the future \(it is .*Z now\)$/],
    ['`at` more than 30 days ahead', () => ({ at: inMs(31 * 86400 * SECOND), purge: { tags: ['x'] } }), /^at: must be at most 30 days ahead$/],
    ['`at` without a time zone', () => ({ at: '2030-06-01T09:00:00', purge: { tags: ['x'] } }), /^at: must be an ISO-8601 time with a time zone/],
    ['`at` a number', () => ({ at: Date.now() + 60000, purge: { tags: ['x'] } }), /^at: must be an ISO-8601 time/],
    ['no `at`', () => ({ purge: { tags: ['x'] } }), /^at: /],
    ['neither warm nor purge', () => ({ at: later() }), /^body: name warm, purge or both$/],
    ['an unknown field', () => ({ at: later(), purge: { tags: ['x'] }, when: 'now' }), /^when: unknown field "when" \(expected at, warm, purge, warmLeadSeconds\)$/],
    ['a JSON array', () => [], /^body: the body must be a JSON object$/],
    ['a purge url without a leading slash', () => ({ at: later(), purge: { urls: ['a.jpg'] } }), /^purge\.urls\[0\]: must be a full http\(s\) URL or a path/],
    ['an empty purge', () => ({ at: later(), purge: {} }), /^purge: at least one of urls, prefixes, tags/],
    ['a purge with an unknown field', () => ({ at: later(), purge: { tags: ['x'], hard: true } }), /^purge\.hard: unknown field "hard"$/],
    ['a purge tag with a comma', () => ({ at: later(), purge: { tags: ['a,b'] } }), /^purge\.tags\[0\]: tag must contain only printable ASCII/],
    ['warm in an unknown region', () => ({ at: later(), warm: { tags: ['x'], regions: ['mars'] } }), /^warm\.regions: unknown mars; known: eu, us$/],
    ['warm urls not a list', () => ({ at: later(), warm: { urls: 'x' } }), /^warm\.urls: /],
    ['a relative warm url', () => ({ at: later(), warm: { urls: ['a.jpg'] } }), /^warm\.urls\[0\]: "a\.jpg" must be a full http\(s\) URL or a path/],
    ['a warm url that is no asset key', () => ({ at: later(), warm: { urls: ['/v1/assets'] } }), /^warm\.urls\[0\]: "\/v1\/assets": the key is reserved/],
    ['a warm naming nothing', () => ({ at: later(), warm: {} }), /^warm: name urls, prefixes or tags to warm$/],
    ['a negative warm lead', () => ({ at: later(), warm: { tags: ['x'] }, warmLeadSeconds: -1 }), /^warmLeadSeconds: must be at least 0$/],
    ['a warm lead of a fraction', () => ({ at: later(), warm: { tags: ['x'] }, warmLeadSeconds: 1.5 }), /^warmLeadSeconds: must be a whole number of seconds$/],
    ['a warm lead without a warm', () => ({ at: later(), purge: { tags: ['x'] }, warmLeadSeconds: 10 }), /^warmLeadSeconds: only with warm$/],
  ];

  test.each(invalid)('%s -> 400 CDN_ERR_LAUNCH_INVALID naming the field; nothing is kept', async (_name, body, message) => {
    const before = await redis.zcard(`${STREAM}:launches`);
    const res = await post(a, body());
    expect(res.status).toBe(400);
    const json = res.json<{ error: string; message: string }>();
    expect(json.error).toBe('CDN_ERR_LAUNCH_INVALID');
    expect(json.message.replace(/^Invalid launch: /, '')).toMatch(message);
    expect(await redis.zcard(`${STREAM}:launches`)).toBe(before);
  });

  test('malformed JSON is 400 CDN_ERR_BODY_INVALID; no token 401; an upload-only token 403', async () => {
    expect((await post(a, '{"at":')).json().error).toBe('CDN_ERR_BODY_INVALID');
    expect((await a.request('POST', '/v1/launches', { headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(401);
    const upload = await post(a, { at: inMs(60000), purge: { tags: ['x'] } }, UPLOAD_TOKEN);
    expect(upload.status).toBe(403);
    expect(upload.json().message).toContain('"purge" scope');
  });

  test('an origin without the balancer refuses a warm (400), and takes a purge-only launch', async () => {
    const lone = await startOrigin(redisServer.url, { ...env('test:launches:no-balancer'), CDN_BALANCER_INTERNAL_URL: '' });
    try {
      const res = await post(lone, { at: inMs(60000), warm: { tags: ['x'] } });
      expect(res.status).toBe(400);
      expect(res.json().message).toBe('Invalid launch: warm: this origin cannot warm: it has no balancer (CDN_BALANCER_INTERNAL_URL)');
      const ok = await schedule(lone, { at: inMs(3600 * SECOND), purge: { tags: ['x'] } });
      expect((await cancel(lone, ok.id)).status).toBe(200);
    } finally {
      await lone.close();
    }
  });
});

describe('POST /v1/launches: the purge guards, checked at creation', () => {
  const at = () => inMs(3600 * SECOND);

  test('purging everything: 403 for a purge-scoped token, 400 naming purge.confirm for an admin without it, 201 with it', async () => {
    const forbidden = await post(a, { at: at(), purge: { prefixes: ['/'], confirm: 'purge everything' } });
    expect(forbidden.status).toBe(403);
    expect(forbidden.json()).toEqual({ error: 'CDN_ERR_FORBIDDEN', message: 'Token lacks the required scope: purge.prefixes: purging everything (prefix "/") needs the admin scope' });
    const unconfirmed = await post(a, { at: at(), purge: { prefixes: ['/'] } }, TEST_TOKEN);
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.json().message).toBe('Invalid launch: purge.confirm: purging everything (prefix "/") needs "confirm": "purge everything" in the body');
    const wrong = await post(a, { at: at(), purge: { prefixes: ['/'], confirm: 'sure' } }, TEST_TOKEN);
    expect(wrong.json().message).toBe('Invalid launch: purge.confirm: must be exactly "purge everything"');
    const ok = await schedule(a, { at: at(), purge: { prefixes: ['/'], confirm: 'purge everything' } }, TEST_TOKEN);
    expect(ok).toMatchObject({ status: 'scheduled', createdBy: 'admin', purge: { prefixes: ['/'] } });
    expect((await cancel(a, ok.id)).status).toBe(200);
  });

  test('a protected tag: 403 naming it for a purge-scoped token, 201 for the admin token', async () => {
    const forbidden = await post(a, { at: at(), purge: { tags: ['spring', 'all-products'] } });
    expect(forbidden.status).toBe(403);
    expect(forbidden.json().message).toBe('Token lacks the required scope: purge.tags: the tag "all-products" is protected (purge.protectedTags): only an admin token purges it');
    const ok = await schedule(a, { at: at(), purge: { tags: ['all-products'] } }, TEST_TOKEN);
    expect((await cancel(a, ok.id)).status).toBe(200);
  });

  test('a tag protected after scheduling is refused at the launch\'s time: status failed, nothing published', async () => {
    const stream = 'test:launches:recheck';
    const before = await startOrigin(redisServer.url, env(stream, { CDN_PROTECTED_TAGS: '' }));
    const scheduled = await schedule(before, { at: inMs(1200), purge: { tags: ['flash-sale'] } });
    await before.close();
    const after = await startOrigin(redisServer.url, env(stream, { CDN_PROTECTED_TAGS: 'flash-sale' }));
    try {
      const failed = await until(after, scheduled.id, ['failed', 'done']);
      expect(failed).toMatchObject({ status: 'failed', purgeId: null, purgedAt: null, purgeError: 'the tag "flash-sale" is protected (purge.protectedTags): only an admin token purges it' });
      expect(await purgesOf('flash-sale', stream)).toEqual([]);
      expect(auditLines(after, 'purge-failed')).toEqual([expect.objectContaining({ launchId: scheduled.id, level: 'warn' })]);
      const late = await cancel(after, scheduled.id);
      expect(late.status).toBe(409);
      expect(late.json().message).toMatch(/is failed: its purge failed: the tag "flash-sale" is protected/);
    } finally {
      await after.close();
    }
  });
});

describe('running launches', () => {
  test('a warm ahead and a purge at `at`, each run once by one of two origins, the purge within 0.5 s of `at`', async () => {
    await upload('spring/dress.txt', 'spring-collection');
    await upload('spring/coat.txt', 'spring-collection');
    await upload('home/index.json', 'homepage');
    warmed.length = 0;
    const created = await schedule(b, { at: inMs(1500), warm: { tags: ['spring-collection'] }, purge: { tags: ['homepage'] }, warmLeadSeconds: 1 });
    expect(created).toMatchObject({ status: 'scheduled', createdBy: 'marketing', warmLeadSeconds: 1, warmId: null, purgeId: null, cancelledAt: null });
    expect(Date.parse(created.warmAt!)).toBe(Date.parse(created.at) - 1000);

    const done = await until(a, created.id, ['done', 'failed'], 5000);
    const at = Date.parse(done.at);
    expect(done).toMatchObject({ status: 'done', warmError: null, purgeError: null, warmResult: { total: 4, warmed: 4, failed: 0 }, purge: { tags: ['homepage'], soft: false } });
    // the warm started at its time, before the launch
    expect(Date.parse(done.warmStartedAt!)).toBeGreaterThanOrEqual(Date.parse(done.warmAt!));
    expect(Date.parse(done.warmStartedAt!)).toBeLessThan(at);
    // the purge at its time: never early, at most half a second late
    expect(done.purgeLateMs).toBe(Date.parse(done.purgedAt!) - at);
    expect(done.purgeLateMs).toBeGreaterThanOrEqual(0);
    expect(done.purgeLateMs).toBeLessThan(500);
    // once: one stream entry, the record's; each object warmed once per region
    expect((await purgesOf('homepage')).map((m) => m.id)).toEqual([done.purgeId]);
    expect([...warmed].sort()).toEqual(['eu /spring/coat.txt', 'eu /spring/dress.txt', 'us /spring/coat.txt', 'us /spring/dress.txt']);
    const job = await a.request('GET', `/v1/warm/${done.warmId}`, { auth: true });
    expect(job.json()).toMatchObject({ status: 'done', total: 4, warmed: 4 });
    // one audit line per step, from whichever origin ran it; the purge's own audit line too
    for (const event of ['created', 'warm-started', 'warm-done', 'purged']) {
      expect([event, auditLines(a, event, done.id).length + auditLines(b, event, done.id).length]).toEqual([event, 1]);
    }
    const purgeAudit = [...a.logLines(), ...b.logLines()].filter((l) => l.audit === 'purge' && l.purgeId === done.purgeId);
    expect(purgeAudit).toEqual([expect.objectContaining({ tokenName: 'marketing', req_id: `launch:${done.id}`, tags: ['homepage'] })]);
    expect(await redis.zcard(`${STREAM}:launches:due`)).toBe(0);
    // GET /v1/purge/{id} knows it like any API purge
    expect((await a.request('GET', `/v1/purge/${done.purgeId}`, { auth: true })).json()).toMatchObject({ id: done.purgeId, source: 'api', tags: ['homepage'] });
  });

  test('twenty launches due at the same instant: each purge published exactly once by the two origins together', async () => {
    const at = inMs(1000);
    const launches = await Promise.all(Array.from({ length: 20 }, (_, i) => schedule(i % 2 ? a : b, { at, purge: { tags: [`drop-${i}`] } })));
    await eventually(async () => (await redis.zcard(`${STREAM}:launches:due`)) === 0, 5000);
    for (const [i, l] of launches.entries()) {
      const record = await until(a, l.id, ['done']);
      expect((await purgesOf(`drop-${i}`)).map((m) => m.id)).toEqual([record.purgeId]);
      expect(record.purgeLateMs).toBeLessThan(500);
    }
    const byA = launches.flatMap((l) => auditLines(a, 'purged', l.id)).length;
    const byB = launches.flatMap((l) => auditLines(b, 'purged', l.id)).length;
    expect(byA + byB).toBe(20);
  });

  test('a launch survives the restart of the only origin that knows of it', async () => {
    const stream = 'test:launches:restart';
    const first = await startOrigin(redisServer.url, env(stream));
    const scheduled = await schedule(first, { at: inMs(1500), purge: { urls: ['/home/index.json'] } });
    await first.close();
    const second = await startOrigin(redisServer.url, env(stream));
    try {
      const done = await until(second, scheduled.id, ['done', 'failed']);
      expect(done.status).toBe('done');
      expect(done.purgeLateMs).toBeLessThan(500);
      expect(auditLines(second, 'purged')).toEqual([expect.objectContaining({ launchId: scheduled.id })]);
    } finally {
      await second.close();
    }
  });

  test('a warm that cannot start (nothing carries the tag yet) fails the launch; its purge still goes out at its time', async () => {
    const scheduled = await schedule(a, { at: inMs(800), warm: { tags: ['not-uploaded-yet'] }, purge: { tags: ['autumn'] } });
    const failed = await until(a, scheduled.id, ['failed']);
    expect(failed.warmError).toMatch(/nothing to warm/);
    await eventually(async () => (await launch(a, scheduled.id)).purgedAt !== null, 3000);
    const after = await launch(a, scheduled.id);
    expect(after.status).toBe('failed');
    expect((await purgesOf('autumn')).map((m) => m.id)).toEqual([after.purgeId]);
  });

  test('a warm cut short by its origin\'s shutdown is handed back and run again by another origin', async () => {
    const stream = 'test:launches:handover';
    const first = await startOrigin(redisServer.url, env(stream, { CDN_STORAGE_PATH: a.storageDir }));
    let second: OriginUnderTest | undefined;
    balancerDelayMs = 1500;
    try {
      const scheduled = await schedule(first, { at: inMs(60 * SECOND), warm: { urls: ['/spring/coat.txt'] } });
      // a lead of 60 s and a minute to go: the warm starts at once
      await until(first, scheduled.id, ['warming']);
      await first.close();
      const handedBack = await launch(a, scheduled.id).catch(() => undefined);
      expect(handedBack).toBeUndefined(); // another stream: a does not know it
      const record = await redis.hgetall(`${stream}:launch:${scheduled.id}`);
      expect([record.warmInterruptions, record.warmStartedAt, await redis.zscore(`${stream}:launches:due`, `${scheduled.id}:warm`)]).toEqual(['1', undefined, expect.any(String)]);
      balancerDelayMs = 0;
      second = await startOrigin(redisServer.url, env(stream, { CDN_STORAGE_PATH: a.storageDir }));
      const done = await until(second, scheduled.id, ['done'], 5000);
      expect(done).toMatchObject({ warmInterruptions: 1, warmResult: { total: 2, warmed: 2, failed: 0 } });
    } finally {
      balancerDelayMs = 0;
      await second?.close();
    }
  });
});

describe('cancel and list', () => {
  test('DELETE before the purge: 200 cancelled (again: the same), and nothing runs at its time', async () => {
    const scheduled = await schedule(a, { at: inMs(700), warm: { tags: ['spring-collection'] }, warmLeadSeconds: 0, purge: { tags: ['cancelled-drop'] } });
    const res = await cancel(b, scheduled.id);
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ id: scheduled.id, status: 'cancelled', cancelledBy: 'marketing', cancelledAt: expect.any(String) });
    expect((await cancel(a, scheduled.id)).json()).toMatchObject({ status: 'cancelled' });
    await new Promise((r) => setTimeout(r, 1200));
    expect(await launch(a, scheduled.id)).toMatchObject({ status: 'cancelled', warmStartedAt: null, purgedAt: null });
    expect(await purgesOf('cancelled-drop')).toEqual([]);
    expect(auditLines(a, 'cancelled', scheduled.id).length + auditLines(b, 'cancelled', scheduled.id).length).toBe(1);
  });

  test('DELETE once purged: 409 CDN_ERR_LAUNCH_NOT_CANCELLABLE; an unknown or malformed id: 404', async () => {
    const scheduled = await schedule(a, { at: inMs(300), purge: { tags: ['gone'] } });
    const done = await until(a, scheduled.id, ['done']);
    const res = await cancel(a, scheduled.id);
    expect(res.status).toBe(409);
    expect(res.json()).toEqual({ error: 'CDN_ERR_LAUNCH_NOT_CANCELLABLE', message: `The launch can no longer be cancelled: launch ${scheduled.id} is done: its purge went out at ${done.purgedAt}` });
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-an-id']) {
      expect((await cancel(a, id)).json().error).toBe('CDN_ERR_LAUNCH_NOT_FOUND');
      const get = await a.request('GET', `/v1/launches/${id}`, { auth: true });
      expect([get.status, get.json().error]).toEqual([404, 'CDN_ERR_LAUNCH_NOT_FOUND']);
    }
  });

  test('GET /v1/launches: upcoming soonest first, recent latest first', async () => {
    const later = await schedule(a, { at: inMs(7200 * SECOND), purge: { tags: ['later'] } });
    const sooner = await schedule(b, { at: inMs(3600 * SECOND), purge: { tags: ['sooner'] } });
    const cancelled = await schedule(a, { at: inMs(5400 * SECOND), purge: { tags: ['never'] } });
    await cancel(a, cancelled.id);
    const res = await a.request('GET', '/v1/launches', { headers: { authorization: `Bearer ${PURGE_TOKEN}` } });
    expect(res.status).toBe(200);
    const list = res.json<LaunchList>();
    const upcoming = list.upcoming.map((l) => l.id);
    expect(upcoming.indexOf(sooner.id)).toBeGreaterThanOrEqual(0);
    expect(upcoming.indexOf(sooner.id)).toBeLessThan(upcoming.indexOf(later.id));
    expect(upcoming).not.toContain(cancelled.id);
    expect(list.upcoming.every((l) => l.status === 'scheduled')).toBe(true);
    expect(list.recent.map((l) => l.id)).toContain(cancelled.id);
    expect(list.recent.some((l) => l.status === 'done')).toBe(true);
    const times = list.recent.map((l) => Date.parse(l.at));
    expect(times).toEqual([...times].sort((x, y) => y - x));
    for (const l of [later, sooner]) await cancel(a, l.id);
  });
});

describe('the OpenAPI document', () => {
  test('documents the four routes, POST\'s body derived from the schema that validates it', async () => {
    const doc = (await a.request('GET', '/docs/openapi.json')).json<{ paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>> }>();
    expect(Object.keys(doc.paths['/v1/launches']).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/v1/launches/{id}']).sort()).toEqual(['delete', 'get']);
    const schema = doc.paths['/v1/launches'].post.requestBody!.content['application/json'].schema as { properties: Record<string, unknown>; additionalProperties: unknown };
    expect(schema).toEqual(launchRequestOpenApiSchema);
    expect(Object.keys(schema.properties)).toEqual(['at', 'warm', 'purge', 'warmLeadSeconds']);
    expect(schema.additionalProperties).toBe(false);
  });
});

describe('without Redis', () => {
  test('POST, GET and DELETE are 503 CDN_ERR_BUS_UNAVAILABLE; polling says so once', async () => {
    const ownRedis = await startRedis();
    const lone = await startOrigin(ownRedis.url, env('test:launches:down'));
    try {
      const scheduled = await schedule(lone, { at: inMs(3600 * SECOND), purge: { tags: ['x'] } });
      await ownRedis.stop();
      const res = await post(lone, { at: inMs(3600 * SECOND), purge: { tags: ['x'] } });
      expect([res.status, res.json().error]).toEqual([503, 'CDN_ERR_BUS_UNAVAILABLE']);
      expect((await lone.request('GET', `/v1/launches/${scheduled.id}`, { auth: true })).status).toBe(503);
      expect((await lone.request('GET', '/v1/launches', { auth: true })).status).toBe(503);
      expect((await cancel(lone, scheduled.id)).status).toBe(503);
      await new Promise((r) => setTimeout(r, 800));
      const warnings = lone.logLines().filter((l) => l.msg === 'cannot read the due launch steps; retrying');
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings.length).toBeLessThanOrEqual(2);
    } finally {
      await lone.close();
      await ownRedis.stop();
    }
  });
});
