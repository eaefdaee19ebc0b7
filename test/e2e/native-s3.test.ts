/**
 * The native stack with S3 storage (s3rver standing in for MinIO): the same walk as
 * native-stack.test.ts through the balancer and the edges, with the origin's S3
 * driver behind it and its keys passed the way the stack passes secrets; then the
 * edges' direct reads of raw assets from the bucket (s3rver checks SigV4 signatures).
 */
import sharp from 'sharp';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Client } from 'minio';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { get, waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';
import { S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, startS3rver, type S3rverHandle } from '../support/s3rver';

let s3: S3rverHandle;
let stack: UpResult;
let stateDir: string;
let token: string;

beforeAll(async () => {
  s3 = await startS3rver();
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-e2e-s3-'));
  process.env.CDN_TEST_S3_ACCESS = S3RVER_ACCESS_KEY;
  process.env.CDN_TEST_S3_SECRET = S3RVER_SECRET_KEY;
  const spec = parseSpec({
    regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }],
    storage: { kind: 's3', endpoint: s3.endpoint, bucket: 'shop-assets', accessKeySecret: 'CDN_TEST_S3_ACCESS', secretKeySecret: 'CDN_TEST_S3_SECRET' },
  });
  stack = await up({ spec, stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
}, 90000);

afterAll(async () => {
  await stack?.stop();
  await s3?.stop();
  delete process.env.CDN_TEST_S3_ACCESS;
  delete process.env.CDN_TEST_S3_SECRET;
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('the S3 keys reach the origin as files, never in its environment', () => {
  const secrets = path.join(stateDir, 'secrets');
  expect(fs.readFileSync(path.join(secrets, 's3-access-key'), 'utf8').trim()).toBe(S3RVER_ACCESS_KEY);
  expect(fs.statSync(path.join(secrets, 's3-secret-key')).mode & 0o777).toBe(0o600);
  const env = fs.readFileSync(`/proc/${stack.services.find((s) => s.unit.role === 'origin')!.pid}/environ`, 'utf8');
  expect(env).toContain(`CDN_S3_ACCESS_KEY_FILE=${path.join(secrets, 's3-access-key')}`);
  // the caller's environment (which held the keys) is not passed on
  expect(env).not.toContain('CDN_TEST_S3_SECRET');
  expect(env).not.toContain('JEST_WORKER_ID');
});

test('upload, cached delivery through the balancer, overwrite and delete on S3 storage', async () => {
  const put = (body: string) =>
    fetch(`${stack.state.origin}/v1/assets/catalog/item-7.txt`, { method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain', 'Surrogate-Key': 'item-7' }, body });
  expect((await put('first')).status).toBe(201);
  const a = await get(`${stack.state.balancer}/catalog/item-7.txt`);
  expect(a.status).toBe(200);
  expect(a.text).toBe('first');
  const b = await get(`${stack.state.balancer}/catalog/item-7.txt`);
  expect(b.headers.get('cache-status')).toContain('hit');

  expect((await put('second')).status).toBe(200);
  for (const e of stack.state.edges) {
    expect(await waitFor(async () => (await get(`${e.url}/catalog/item-7.txt`)).text === 'second', 1000)).toBeGreaterThanOrEqual(0);
  }
  const del = await fetch(`${stack.state.origin}/v1/assets/catalog/item-7.txt`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  expect(del.status).toBe(204);
  for (const e of stack.state.edges) {
    expect(await waitFor(async () => (await get(`${e.url}/catalog/item-7.txt`)).status === 404, 1000)).toBeGreaterThanOrEqual(0);
  }
});

test('a spec naming secrets that are not set fails with the variable named', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-e2e-s3-missing-'));
  try {
    const spec = parseSpec({ storage: { kind: 's3', endpoint: s3.endpoint, bucket: 'x-bucket', accessKeySecret: 'CDN_TEST_NOT_SET_1', secretKeySecret: 'CDN_TEST_NOT_SET_2' } });
    await expect(up({ spec, stateDir: dir, repoRoot: REPO_ROOT, prometheus: false, detached: true })).rejects.toThrow(/CDN_TEST_NOT_SET_1, CDN_TEST_NOT_SET_2/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const BUCKET = 'shop-assets';
const auth = () => ({ Authorization: `Bearer ${token}` });
const putAsset = (key: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${stack.state.origin}/v1/assets/${key}`, { method: 'PUT', headers: { ...auth(), 'Content-Type': 'text/plain', ...headers }, body });
const edge = () => stack.state.edges[0].url;
const originPid = () => stack.services.find((s) => s.unit.role === 'origin')!.pid;
const bucketClient = () => new Client({ endPoint: '127.0.0.1', port: s3.port, useSSL: false, accessKey: S3RVER_ACCESS_KEY, secretKey: S3RVER_SECRET_KEY, pathStyle: true });

/** Runs `body` with the origin process frozen: whatever still works did not need it. */
async function withoutOrigin<T>(body: () => Promise<T>): Promise<T> {
  process.kill(originPid(), 'SIGSTOP');
  try {
    return await body();
  } finally {
    process.kill(originPid(), 'SIGCONT');
  }
}

/** A GET that gives up quickly (a request stuck on the frozen origin would wait 30 s). */
async function quick(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('raw assets straight from the bucket', () => {
  test("a miss is read from the bucket with the origin's headers, none of S3's", async () => {
    expect((await putAsset('direct/shirt.txt', 'blue shirt', { 'Surrogate-Key': 'shirts sale' })).status).toBe(201);
    // (the query is not part of the key of the CDN's own assets: cold copies under other paths)
    await putAsset('direct/shirt-head.txt', 'blue shirt');
    await putAsset('direct/shirt-override.txt', 'blue shirt');
    const fromOrigin = await get(`${stack.state.origin}/direct/shirt.txt`);
    const res = await withoutOrigin(() => quick(`${edge()}/direct/shirt.txt`));
    expect(res.status).toBe(200);
    expect(res.text).toBe('blue shirt');
    expect(res.headers.get('cache-status')).toMatch(/fwd=uri-miss; fwd-status=200; stored$/);
    const sha = createHash('sha256').update('blue shirt').digest('hex');
    expect(res.headers.get('etag')).toBe(`"${sha}"`);
    for (const name of ['etag', 'content-type', 'cache-control', 'x-content-type-options', 'accept-ranges']) {
      expect([name, res.headers.get(name)]).toEqual([name, fromOrigin.headers.get(name)]);
    }
    expect(res.headers.get('last-modified')).toBeTruthy();
    const names = [...res.headers.keys()];
    expect(names.filter((n) => n.startsWith('x-amz') || n === 'surrogate-key' || n === 'vary' || n === 'authorization')).toEqual([]);
    await withoutOrigin(async () => {
      // a cold HEAD is read from the bucket too (the cache asks for the whole object)
      const head = await fetch(`${edge()}/direct/shirt-head.txt`, { method: 'HEAD', signal: AbortSignal.timeout(5000) });
      expect([head.status, head.headers.get('etag'), head.headers.get('content-length')]).toEqual([200, `"${sha}"`, '10']);
      // neither the query (S3 would act on response-* overrides) nor client x-amz-* headers reach the bucket
      const override = await quick(`${edge()}/direct/shirt-override.txt?response-content-type=text/html&response-cache-control=no-store`, {
        'X-Amz-Security-Token': 'junk',
        'X-Amz-Server-Side-Encryption-Customer-Algorithm': 'AES256',
        Cookie: 'session=1',
      });
      expect([override.status, override.headers.get('content-type'), override.headers.get('cache-control')]).toEqual([200, fromOrigin.headers.get('content-type'), fromOrigin.headers.get('cache-control')]);
      expect(override.headers.get('cache-status')).toMatch(/fwd=uri-miss/);
    });
    // the hit that follows needs no upstream at all
    const hit = await withoutOrigin(() => quick(`${edge()}/direct/shirt.txt`));
    expect(hit.headers.get('cache-status')).toContain('; hit');
    // and a client's conditional request is answered from the cache
    const conditional = await quick(`${edge()}/direct/shirt.txt`, { 'If-None-Match': `"${sha}"` });
    expect(conditional.status).toBe(304);
  });

  test('a purge by tag reaches an object that was read from the bucket', async () => {
    await putAsset('direct/sock.txt', 'red sock', { 'Surrogate-Key': 'socks' });
    await withoutOrigin(async () => {
      expect((await quick(`${edge()}/direct/sock.txt`)).status).toBe(200);
      expect((await quick(`${edge()}/direct/sock.txt`)).headers.get('cache-status')).toContain('; hit');
    });
    const res = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: ['socks'] }) });
    expect(res.status).toBe(202);
    const ms = await waitFor(async () => (await get(`${edge()}/direct/sock.txt`)).headers.get('cache-status')?.includes('fwd=uri-miss') ?? false, 2000);
    expect(ms).toBeGreaterThanOrEqual(0);
  });

  test('an expired object is revalidated against the bucket (If-Modified-Since, 304)', async () => {
    await putAsset('direct/short.txt', 'short-lived', { 'Cache-Control': 'public, max-age=2' });
    await withoutOrigin(async () => {
      const first = await quick(`${edge()}/direct/short.txt`);
      expect(first.headers.get('cache-control')).toBe('public, max-age=2');
      // past max-age and the 1 s of stale-while-revalidate every object gets
      await new Promise((r) => setTimeout(r, 4500));
      const again = await quick(`${edge()}/direct/short.txt`);
      expect(again.status).toBe(200);
      expect(again.text).toBe('short-lived');
      expect(again.headers.get('cache-status')).toBe('eu-1; fwd=stale; fwd-status=304');
      // The 304 renewed the stored entry: fresh again for the object's own max-age,
      // with Age and ttl from the revalidation (nginx keeps the old stored headers).
      const renewed = await quick(`${edge()}/direct/short.txt`);
      expect(renewed.headers.get('cache-status')).toMatch(/^eu-1; hit; ttl=[12]$/);
      expect(Number(renewed.headers.get('age'))).toBeLessThanOrEqual(1);
    });
  });

  test('missing keys, temp uploads and foreign objects are clean 404s or the origin\'s answers, never S3\'s', async () => {
    const client = bucketClient();
    await client.putObject(BUCKET, '.cdn-tmp/leftover', Buffer.from('half an upload'), 14);
    await client.putObject(BUCKET, 'direct/foreign.txt', Buffer.from('not written by the origin'), 25);
    await withoutOrigin(async () => {
      const missing = await quick(`${edge()}/direct/nothing-here.txt`);
      expect(missing.status).toBe(404);
      expect(JSON.parse(missing.text)).toEqual({ error: 'CDN_ERR_ASSET_NOT_FOUND', message: 'Asset not found' });
      expect(missing.headers.get('cache-control')).toBe('public, max-age=5');
      const foreign = await quick(`${edge()}/direct/foreign.txt`);
      expect(foreign.status).toBe(404);
      expect(foreign.text).not.toContain('not written');
      for (const r of [missing, foreign]) {
        expect(r.text).not.toMatch(/shop-assets|<\?xml|NoSuchKey/);
        expect([...r.headers.keys()].filter((n) => n.startsWith('x-amz'))).toEqual([]);
      }
    });
    // not a key the origin could have written: the origin answers, not the bucket
    const temp = await get(`${edge()}/.cdn-tmp/leftover`);
    expect(temp.status).toBe(400);
    expect(temp.text).not.toContain('half an upload');
  });

  test('image variants are made by the origin (and kept in the bucket), never read from the bucket as raw bytes', async () => {
    const photo = await sharp({ create: { width: 800, height: 600, channels: 3, background: { r: 9, g: 99, b: 199 } } }).jpeg().toBuffer();
    const put = await fetch(`${stack.state.origin}/v1/assets/direct/photo.jpg`, { method: 'PUT', headers: { ...auth(), 'Content-Type': 'image/jpeg' }, body: photo });
    expect(put.status).toBe(201);
    const sha = createHash('sha256').update(photo).digest('hex');
    await withoutOrigin(async () => {
      await expect(quick(`${edge()}/direct/photo.jpg?w=256`, { Accept: 'image/webp,*/*' })).rejects.toThrow();
    });
    const res = await fetch(`${edge()}/direct/photo.jpg?w=256`, { headers: { Accept: 'image/webp,*/*' } });
    expect([res.status, res.headers.get('content-type')]).toEqual([200, 'image/webp']);
    expect((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).width).toBe(256);
    const kept: string[] = [];
    for await (const o of bucketClient().listObjectsV2(BUCKET, `_variants/${sha}/`, true)) kept.push(o.name!);
    expect(kept).toEqual([`_variants/${sha}/256x-q75-auto-webp`]);
    // and the reserve is no raw asset: the edge never serves it from the bucket
    expect((await get(`${edge()}/_variants/${sha}/256x-q75-auto-webp`)).status).toBe(400);
  });

  test("versioned URLs and the origin's routes still go to the origin", async () => {
    await putAsset('direct/versioned.txt', 'pinned');
    const sha = createHash('sha256').update('pinned').digest('hex');
    await withoutOrigin(async () => {
      await expect(quick(`${edge()}/_v/${sha}/direct/versioned.txt`)).rejects.toThrow();
    });
    const res = await get(`${edge()}/_v/${sha}/direct/versioned.txt`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    // the origin's delivery listener: its API is not there (404), not even to refuse a token
    expect((await get(`${edge()}/v1/assets`)).status).toBe(404);
  });
});

describe('edge read keys of their own', () => {
  let wrong: UpResult;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-e2e-s3-edge-keys-'));
    process.env.CDN_TEST_S3_EDGE_ACCESS = S3RVER_ACCESS_KEY;
    process.env.CDN_TEST_S3_EDGE_SECRET = 'not-the-edge-secret';
    const spec = parseSpec({
      regions: [{ name: 'eu', edges: 1 }],
      storage: {
        kind: 's3',
        endpoint: s3.endpoint,
        bucket: 'wrong-keys',
        accessKeySecret: 'CDN_TEST_S3_ACCESS',
        secretKeySecret: 'CDN_TEST_S3_SECRET',
        edgeAccessKeySecret: 'CDN_TEST_S3_EDGE_ACCESS',
        edgeSecretKeySecret: 'CDN_TEST_S3_EDGE_SECRET',
      },
    });
    wrong = await up({ spec, stateDir: dir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  }, 90000);

  afterAll(async () => {
    await wrong?.stop();
    delete process.env.CDN_TEST_S3_EDGE_ACCESS;
    delete process.env.CDN_TEST_S3_EDGE_SECRET;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('are files of their own, never in the rendered config', () => {
    const secrets = path.join(dir, 'secrets');
    expect(fs.statSync(path.join(secrets, 's3-edge-secret-key')).mode & 0o777).toBe(0o600);
    const edgeDir = path.join(dir, 'edge-eu-1');
    const settings = JSON.parse(fs.readFileSync(path.join(edgeDir, 'edge.json'), 'utf8')) as { bucket: { secretKeyFile: string } };
    expect(settings.bucket.secretKeyFile).toBe(path.join(secrets, 's3-edge-secret-key'));
    for (const f of ['edge.json', 'conf/nginx.conf']) {
      expect(fs.readFileSync(path.join(edgeDir, f), 'utf8')).not.toContain('not-the-edge-secret');
    }
  });

  test('a wrong secret fails the miss (s3rver checks the signature) and nothing is stored', async () => {
    const adminToken = fs.readFileSync(wrong.state.adminTokenFile, 'utf8').trim();
    const put = await fetch(`${wrong.state.origin}/v1/assets/refused.txt`, { method: 'PUT', headers: { Authorization: `Bearer ${adminToken}`, 'Content-Type': 'text/plain' }, body: 'secret stuff' });
    expect(put.status).toBe(201);
    const edgeUrl = wrong.state.edges[0].url;
    for (let i = 0; i < 2; i++) {
      const res = await get(`${edgeUrl}/refused.txt`);
      expect(res.status).toBe(502);
      expect(res.headers.get('cache-status') ?? '').not.toContain('hit');
      expect(res.text).not.toMatch(/SignatureDoesNotMatch|wrong-keys|secret stuff/);
    }
    const log = fs.readFileSync(path.join(dir, 'edge-eu-1', 'logs', 'error.log'), 'utf8');
    expect(log).toContain('object storage answered 403 for /wrong-keys/refused.txt');
    expect(log).not.toContain('not-the-edge-secret');
  });
});
