/**
 * Liveness, readiness and metrics against the real app: readyz follows Redis and the
 * storage directory; /metrics exposes the documented series with route templates.
 */
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { eventually, startOrigin, type OriginUnderTest } from '../../test/harness';
import { LATENCY_BUCKETS } from '../../contract/metrics';

let redisServer: RedisHandle;
let origin: OriginUnderTest;

beforeAll(async () => {
  redisServer = await startRedis();
  origin = await startOrigin(redisServer.url);
});

afterAll(async () => {
  await origin?.close();
  await redisServer?.stop();
});

test('GET /healthz is 200 {"status":"ok"}', async () => {
  const res = await origin.request('GET', '/healthz');
  expect(res.status).toBe(200);
  expect(res.json()).toEqual({ status: 'ok' });
});

test('GET /readyz is 200 when Redis and the storage are fine', async () => {
  const res = await origin.request('GET', '/readyz');
  expect(res.status).toBe(200);
  expect(res.json()).toEqual({ status: 'ok', draining: false, checks: { redis: { status: 'ok' }, storage: { status: 'ok' } } });
});

describe('GET /metrics', () => {
  let text: string;

  beforeAll(async () => {
    expect((await origin.request('PUT', '/v1/assets/m/a.txt', { auth: true, body: 'a' })).status).toBe(201);
    await origin.request('GET', '/m/a.txt');
    await origin.request('GET', '/m/secret-product-name.txt');
    await origin.request('GET', '/healthz');
    // A request is counted once its response has finished streaming, which can be
    // after the client read it: read the metrics until the four requests are in.
    await eventually(async () => {
      const res = await origin.request('GET', '/metrics');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      text = res.body.toString();
      return text.includes('route="/*",method="GET",status_class="2xx"} 1') && text.includes('route="/*",method="GET",status_class="4xx"} 1');
    }, 3000);
  });

  test('has the default process metrics', () => {
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  test('counts requests by route template, method and status class, never by key', () => {
    expect(text).toContain('cdn_origin_http_requests_total{route="/v1/assets/*",method="PUT",status_class="2xx"} 1');
    expect(text).toContain('cdn_origin_http_requests_total{route="/*",method="GET",status_class="2xx"} 1');
    expect(text).toContain('cdn_origin_http_requests_total{route="/*",method="GET",status_class="4xx"} 1');
    expect(text).toContain('cdn_origin_http_requests_total{route="/healthz",method="GET",status_class="2xx"}');
    expect(text).not.toContain('secret-product-name');
    expect(text).not.toContain('m/a.txt');
  });

  test('has the request duration histogram with the documented buckets', () => {
    const les = [...text.matchAll(/^cdn_origin_http_request_duration_seconds_bucket\{le="([^"]+)",route="\/\*",method="GET"\}/gm)].map(
      (m) => m[1],
    );
    expect(les).toEqual([...LATENCY_BUCKETS.map(String), '+Inf']);
    expect(LATENCY_BUCKETS).toEqual([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  });

  test('has the purge counter', () => {
    expect(text).toMatch(/^cdn_origin_purges_published_total 1$/m);
  });
});

describe('issue #3 operations', () => {
  test('OpenAPI: /docs/openapi.json documents the API with {key} parameters; /docs is a page whose assets load', async () => {
    const doc = await origin.request('GET', '/docs/openapi.json');
    expect(doc.status).toBe(200);
    const paths = Object.keys(doc.json<{ paths: Record<string, unknown> }>().paths);
    expect(paths).toEqual(
      expect.arrayContaining(['/v1/assets/{key}', '/v1/assets', '/v1/purge', '/v1/purge/{id}', '/{key}', '/_v/{sha256}/{key}']),
    );
    const page = await origin.request('GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    for (const asset of ['/docs/swagger-ui.css', '/docs/swagger-ui-bundle.js']) {
      const res = await origin.request('GET', asset);
      expect(res.status).toBe(200);
      expect(res.body.length).toBeGreaterThan(1000);
    }
  });

  test('metrics: bytes, storage operations and purges, by route template and never by key', async () => {
    await origin.request('PUT', '/v1/assets/metrics/k1.txt', { auth: true, body: 'hello', headers: { 'content-type': 'text/plain' } });
    await origin.request('GET', '/metrics/k1.txt');
    const text = (await origin.request('GET', '/metrics')).body.toString();
    expect(text).toMatch(/cdn_origin_http_response_bytes_total\{route="\/\*"\} \d+/);
    expect(text).toMatch(/cdn_origin_http_request_bytes_total\{route="\/v1\/assets\/\*"\} [1-9]\d*/);
    expect(text).toMatch(/cdn_origin_storage_operation_duration_seconds_count\{driver="filesystem",operation="put"\} \d+/);
    expect(text).toMatch(/cdn_origin_purges_total\{source="asset",outcome="published"\} \d+/);
    expect(text).toMatch(/cdn_origin_upload_size_bytes_bucket\{le="256"\} \d+/);
    expect(text).not.toContain('k1.txt');
  });
});

test('readyz is 503 naming the storage when the storage directory is broken', async () => {
  const tmp = join(origin.storageDir, 'tmp');
  await rename(tmp, `${tmp}.moved`);
  try {
    const res = await origin.request('GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.json()).toEqual({
      status: 'unavailable',
      draining: false,
      checks: { redis: { status: 'ok' }, storage: { status: 'fail', error: expect.stringContaining('ENOENT') } },
    });
  } finally {
    await rename(`${tmp}.moved`, tmp);
  }
});

test('readyz is 503 naming Redis when Redis is down; healthz stays 200', async () => {
  await redisServer.stop();
  const res = await origin.request('GET', '/readyz');
  expect(res.status).toBe(503);
  expect(res.json()).toEqual({
    status: 'unavailable',
      draining: false,
    checks: { redis: { status: 'fail', error: expect.any(String) }, storage: { status: 'ok' } },
  });
  expect((await origin.request('GET', '/healthz')).status).toBe(200);
});
