/**
 * The native stack with S3 storage (s3rver standing in for MinIO): the same walk as
 * native-stack.test.ts through the balancer and the edges, with the origin's S3
 * driver behind it and its keys passed the way the stack passes secrets.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { up, type UpResult } from '../../infra/native/stack';
import { parseSpec } from '../../infra/spec';
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
