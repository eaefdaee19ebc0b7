/**
 * `cdn assets sync` as a user runs it: the built CLI in a child process, against a
 * native stack started with `cdn local up --detach` (filesystem storage), with
 * catalogues made in temporary directories and, for the S3 source, an s3rver bucket.
 * PUTs are counted by the origin itself (cdn_origin_http_requests_total on /metrics).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'minio';
import { REPO_ROOT } from '../support/nginx-lua';
import { S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, startS3rver, type S3rverHandle } from '../support/s3rver';

const CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
const CONCURRENCY = 8;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Summary {
  source: string;
  origin: string;
  prefix: string;
  dryRun: boolean;
  uploaded: number;
  unchanged: number;
  deleted: number;
  failed: number;
  bytesUploaded: number;
  durationMs: number;
  uploads: { key: string; file: string; reason: string }[];
  deletions: string[];
  failures: { file: string; key: string | null; reason: string }[];
}

interface Listed {
  key: string;
  sha256: string;
  size: number;
  contentType: string;
  cacheControl: string | null;
  tags: string[];
}

/** The environment of every CLI run: none of the caller's tokens or AWS settings. */
function baseEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CDN_ADMIN_TOKEN: '' };
  for (const name of Object.keys(env)) if (name.startsWith('AWS_') || name === 'CDN_TOKEN') delete env[name];
  return { ...env, ...extra };
}

/** Starts the CLI (asynchronously: s3rver runs in this process and must keep answering). */
function start(args: string[], env: NodeJS.ProcessEnv = baseEnv()) {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - started })),
  );
  return { child, done };
}

const cdn = (args: string[], env?: NodeJS.ProcessEnv) => start(args, env).done;

let stateDir: string;
let work: string;
let origin: string;
let token: string;
let s3: S3rverHandle;

const sync = (source: string, prefix: string, extra: string[] = [], env?: NodeJS.ProcessEnv) =>
  cdn(['assets', 'sync', source, '--prefix', prefix, '--state-dir', stateDir, ...extra], env);

function summaryOf(run: Run): Summary {
  try {
    return JSON.parse(run.stdout) as Summary;
  } catch {
    throw new Error(`not one JSON object on stdout (exit ${run.code}):\n${run.stdout}\n--- stderr:\n${run.stderr}`);
  }
}

/** PUTs the origin has answered so far. */
async function putCount(): Promise<number> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^cdn_origin_http_requests_total\{route="\/v1\/assets\/\*",method="PUT",status_class="[^"]+"\} (\d+)$/gm)) sum += Number(m[1]);
  return sum;
}

async function listRemote(prefix: string): Promise<Map<string, Listed>> {
  const found = new Map<string, Listed>();
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ prefix, limit: '1000', ...(cursor ? { cursor } : {}) });
    const res = await fetch(`${origin}/v1/assets?${q}`, { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const page = (await res.json()) as { items: Listed[]; nextCursor: string | null };
    for (const item of page.items) found.set(item.key, item);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return found;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** n small text files in nested directories; returns key-under-prefix -> sha256. */
function makeCatalogue(dir: string, n: number, bytes = 64): Map<string, string> {
  const files = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const name = `shelf-${i % 10}/item-${String(i).padStart(4, '0')}.txt`;
    const body = `item ${i}\n${randomBytes(bytes).toString('base64')}\n`;
    fs.mkdirSync(path.join(dir, path.dirname(name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), body);
    files.set(name, sha256(body));
  }
  return files;
}

function expectRemoteMatches(remote: Map<string, Listed>, prefix: string, files: Map<string, string>): void {
  expect([...remote.keys()].sort()).toEqual([...files.keys()].map((k) => prefix + k).sort());
  for (const [name, hash] of files) expect(remote.get(prefix + name)?.sha256).toBe(hash);
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-sync-state-'));
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-sync-work-'));
  const up = await cdn(['local', 'up', '--detach', '--state-dir', stateDir, '--no-prometheus', '--regions', 'eu', '--edges-per-region', '1']);
  if (up.code !== 0) throw new Error(`cdn local up failed:\n${up.stdout}\n${up.stderr}`);
  const state = JSON.parse(fs.readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as { origin: string; adminTokenFile: string };
  origin = state.origin;
  token = fs.readFileSync(state.adminTokenFile, 'utf8').trim();
  s3 = await startS3rver();
}, 90000);

afterAll(async () => {
  if (stateDir) spawnSync(process.execPath, [CLI, 'local', 'down', '--state-dir', stateDir], { encoding: 'utf8' });
  await s3?.stop();
  for (const dir of [stateDir, work]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('500 files sync; a second run uploads nothing; changing 3 files uploads exactly those 3', async () => {
  const dir = path.join(work, 'catalogue');
  const files = makeCatalogue(dir, 500);
  const before = await putCount();

  const first = await sync(dir, 'products/', ['--json', '--tags', 'catalogue,spring', '--cache-control', 'public, max-age=600']);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  const s1 = summaryOf(first);
  expect(s1).toMatchObject({ prefix: 'products/', dryRun: false, uploaded: 500, unchanged: 0, deleted: 0, failed: 0, failures: [] });
  expect(s1.uploads.every((u) => u.reason === 'new')).toBe(true);
  expect((await putCount()) - before).toBe(500);
  const remote = await listRemote('products/');
  expectRemoteMatches(remote, 'products/', files);
  expect(remote.get('products/shelf-3/item-0013.txt')).toMatchObject({ contentType: 'text/plain', cacheControl: 'public, max-age=600', tags: ['catalogue', 'spring'] });
  console.log(`sync of 500 files: ${first.ms} ms`);

  const second = await sync(dir, 'products/', ['--json', '--tags', 'catalogue,spring', '--cache-control', 'public, max-age=600']);
  expect(second.code).toBe(0);
  expect(summaryOf(second)).toMatchObject({ uploaded: 0, unchanged: 500, deleted: 0, failed: 0 });
  expect((await putCount()) - before).toBe(500);
  console.log(`second run (nothing to do): ${second.ms} ms`);

  const changed = ['shelf-0/item-0000.txt', 'shelf-4/item-0254.txt', 'shelf-9/item-0499.txt'];
  for (const name of changed) {
    const body = `changed ${name}\n`;
    fs.writeFileSync(path.join(dir, name), body);
    files.set(name, sha256(body));
  }
  const third = await sync(dir, 'products/', ['--json', '--tags', 'catalogue,spring', '--cache-control', 'public, max-age=600']);
  expect(third.code).toBe(0);
  const s3run = summaryOf(third);
  expect(s3run).toMatchObject({ uploaded: 3, unchanged: 497, failed: 0 });
  expect(s3run.uploads).toEqual(changed.map((name) => ({ key: `products/${name}`, file: path.join(dir, name), reason: 'changed' })));
  expect((await putCount()) - before).toBe(503);
  expectRemoteMatches(await listRemote('products/'), 'products/', files);
}, 120000);

test('an interrupted run (the CLI killed mid-way) and a rerun leave every file, with no duplicate uploads beyond what was in flight', async () => {
  const dir = path.join(work, 'interrupted');
  const files = makeCatalogue(dir, 500, 4096);
  const before = await putCount();

  const run = start(['assets', 'sync', dir, '--prefix', 'interrupted/', '--state-dir', stateDir, '--concurrency', String(CONCURRENCY)]);
  let seen = 0;
  while (run.child.exitCode === null && run.child.signalCode === null) {
    seen = (await putCount()) - before;
    if (seen >= 100) {
      run.child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const killed = await run.done;
  expect(killed.signal).toBe('SIGKILL');
  // in-flight PUTs may still finish at the origin after the client is gone
  await new Promise((r) => setTimeout(r, 500));
  const firstRunPuts = (await putCount()) - before;
  const partial = await listRemote('interrupted/');
  console.log(`killed after ${seen} PUTs seen (${firstRunPuts} answered in all); ${partial.size} assets present`);
  expect(partial.size).toBeGreaterThanOrEqual(100 - CONCURRENCY);
  expect(partial.size).toBeLessThan(500);
  // whatever is visible is whole: the bytes the CLI meant to send
  for (const [key, asset] of partial) expect(asset.sha256).toBe(files.get(key.slice('interrupted/'.length)));

  const rerun = await sync(dir, 'interrupted/', ['--json', '--concurrency', String(CONCURRENCY)]);
  expect(rerun.code).toBe(0);
  const s = summaryOf(rerun);
  expect(s.failed).toBe(0);
  expect(s.uploaded + s.unchanged).toBe(500);
  expect(s.unchanged).toBe(partial.size);
  expectRemoteMatches(await listRemote('interrupted/'), 'interrupted/', files);
  const total = (await putCount()) - before;
  console.log(`PUTs across both runs: ${total} (rerun uploaded ${s.uploaded} in ${rerun.ms} ms)`);
  expect(total).toBeLessThan(500 + CONCURRENCY);
  expect(total).toBeGreaterThanOrEqual(500 - CONCURRENCY);
}, 120000);

test('files the origin cannot take (a name with a space, a .png that is not a PNG) fail by name with a non-zero exit; the rest syncs', async () => {
  const dir = path.join(work, 'refused');
  fs.mkdirSync(path.join(dir, 'img'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'good.txt'), 'fine\n');
  fs.writeFileSync(path.join(dir, 'my shoe.txt'), 'a space in the name\n');
  fs.writeFileSync(path.join(dir, 'img', 'fake.png'), 'this is text, not a PNG\n');

  const text = await sync(dir, 'refused/');
  expect(text.code).toBe(7);
  expect(text.stdout).toContain('1 uploaded');
  expect(text.stdout).toContain('2 failed');
  expect(text.stderr).toContain(`${path.join(dir, 'my shoe.txt')}: not a valid asset key ("refused/my shoe.txt"): character 0x20 at position 10 is not allowed`);
  expect(text.stderr).toContain(`${path.join(dir, 'img', 'fake.png')} (refused/img/fake.png): The bytes do not match the declared Content-Type; nothing was stored: declared image/png but the bytes are no recognisable signature (PUT HTTP 400 CDN_ERR_CONTENT_TYPE_MISMATCH)`);
  expect(text.stderr).toContain('[CDN_ERR_SYNC_FAILED]');

  const json = await sync(dir, 'refused/', ['--json']);
  expect(json.code).toBe(7);
  const s = summaryOf(json);
  expect(s).toMatchObject({ uploaded: 0, unchanged: 1, failed: 2 });
  expect(s.failures.map((f) => [f.file, f.key])).toEqual([
    [path.join(dir, 'img', 'fake.png'), 'refused/img/fake.png'],
    [path.join(dir, 'my shoe.txt'), null],
  ]);
  expect(s.failures[0].reason).toContain('CDN_ERR_CONTENT_TYPE_MISMATCH');
  expect([...(await listRemote('refused/')).keys()]).toEqual(['refused/good.txt']);
}, 60000);

test('--dry-run changes nothing and says what it would do; --delete removes remote keys under the prefix the source lacks', async () => {
  const dir = path.join(work, 'mirror');
  const files = makeCatalogue(dir, 5);
  expect((await sync(dir, 'mirror/', ['--json'])).code).toBe(0);
  const put = (key: string, body: string) =>
    fetch(`${origin}/v1/assets/${key}`, { method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain' }, body });
  for (const key of ['mirror/old-1.txt', 'mirror/gone/old-2.txt', 'mirror-other/keep.txt']) expect((await put(key, `extra ${key}`)).status).toBe(201);
  fs.writeFileSync(path.join(dir, 'shelf-1/item-0001.txt'), 'new bytes\n');

  const before = await putCount();
  const remoteBefore = await listRemote('mirror');
  const dry = await sync(dir, 'mirror/', ['--dry-run', '--delete', '--json']);
  expect(dry.code).toBe(0);
  const d = summaryOf(dry);
  expect(d).toMatchObject({ dryRun: true, uploaded: 1, unchanged: 4, deleted: 2, failed: 0, bytesUploaded: 0 });
  expect(d.uploads).toEqual([{ key: 'mirror/shelf-1/item-0001.txt', file: path.join(dir, 'shelf-1/item-0001.txt'), reason: 'changed' }]);
  expect(d.deletions).toEqual(['mirror/gone/old-2.txt', 'mirror/old-1.txt']);
  expect(await putCount()).toBe(before);
  expect(await listRemote('mirror')).toEqual(remoteBefore);

  const dryText = await sync(dir, 'mirror/', ['--dry-run', '--delete']);
  expect(dryText.code).toBe(0);
  expect(dryText.stdout).toContain('would upload mirror/shelf-1/item-0001.txt (changed)');
  expect(dryText.stdout).toContain('would delete mirror/old-1.txt');
  expect(dryText.stdout).toContain('Dry run, nothing was changed: would upload 1, 4 unchanged, would delete 2, 0 failed');
  expect(await listRemote('mirror')).toEqual(remoteBefore);

  const real = await sync(dir, 'mirror/', ['--delete', '--json']);
  expect(real.code).toBe(0);
  expect(summaryOf(real)).toMatchObject({ dryRun: false, uploaded: 1, unchanged: 4, deleted: 2, deletions: ['mirror/gone/old-2.txt', 'mirror/old-1.txt'] });
  files.set('shelf-1/item-0001.txt', sha256('new bytes\n'));
  expectRemoteMatches(await listRemote('mirror/'), 'mirror/', files);
  // a key that merely starts with the same letters is not under the prefix
  expect((await listRemote('mirror-other/')).has('mirror-other/keep.txt')).toBe(true);

  // the same bytes with other headers (here a cache policy) are uploaded again, said to be for their metadata
  const policy = await sync(dir, 'mirror/', ['--json', '--cache-control', 'public, max-age=60']);
  const p = summaryOf(policy);
  expect(p).toMatchObject({ uploaded: 5, unchanged: 0, failed: 0 });
  expect(new Set(p.uploads.map((u) => u.reason))).toEqual(new Set(['metadata']));
  for (const asset of (await listRemote('mirror/')).values()) expect(asset.cacheControl).toBe('public, max-age=60');
}, 60000);

test('an s3://bucket/prefix source syncs with keys from the environment; a missing variable is named', async () => {
  const bucket = 'catalogue-src';
  const client = new Client({ endPoint: '127.0.0.1', port: s3.port, useSSL: false, accessKey: S3RVER_ACCESS_KEY, secretKey: S3RVER_SECRET_KEY, pathStyle: true });
  await client.makeBucket(bucket, 'us-east-1');
  const objects = new Map<string, string>();
  for (let i = 0; i < 30; i++) {
    const name = i % 3 === 0 ? `deep/er/obj-${i}.json` : `obj-${i}.txt`;
    const body = i % 3 === 0 ? JSON.stringify({ i }) : `object ${i}\n`;
    await client.putObject(bucket, `spring/${name}`, Buffer.from(body), body.length);
    objects.set(name, sha256(body));
  }
  await client.putObject(bucket, 'autumn/not-this.txt', Buffer.from('other prefix'), 12);
  const tmp = path.join(work, 's3-tmp');
  fs.mkdirSync(tmp);
  const env = baseEnv({ AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_KEY, AWS_ENDPOINT_URL: s3.endpoint, TMPDIR: tmp });

  const first = await sync(`s3://${bucket}/spring`, 'from-s3/', ['--json'], env);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  const s = summaryOf(first);
  expect(s).toMatchObject({ source: `s3://${bucket}/spring/`, uploaded: 30, failed: 0 });
  expect(s.uploads.find((u) => u.key === 'from-s3/deep/er/obj-0.json')).toEqual({ key: 'from-s3/deep/er/obj-0.json', file: `s3://${bucket}/spring/deep/er/obj-0.json`, reason: 'new' });
  const remote = await listRemote('from-s3/');
  expectRemoteMatches(remote, 'from-s3/', objects);
  expect(remote.get('from-s3/deep/er/obj-0.json')?.contentType).toBe('application/json');
  console.log(`S3 source, 30 objects: ${first.ms} ms`);

  const again = await sync(`s3://${bucket}/spring`, 'from-s3/', ['--json'], env);
  expect(summaryOf(again)).toMatchObject({ uploaded: 0, unchanged: 30, failed: 0 });
  // no temporary copies are left behind
  expect(fs.readdirSync(tmp)).toEqual([]);

  const missing = await sync(`s3://${bucket}/spring`, 'from-s3/', [], { ...env, AWS_SECRET_ACCESS_KEY: undefined });
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('not set: AWS_SECRET_ACCESS_KEY');
  expect(missing.stderr).toContain('[CDN_ERR_CONFIG_INVALID]');
  const noEndpoint = await sync(`s3://${bucket}/spring`, 'from-s3/', [], { ...env, AWS_ENDPOINT_URL: undefined });
  expect(noEndpoint.stderr).toContain('not set: AWS_ENDPOINT_URL (or --s3-endpoint)');
  const flagEndpoint = await sync(`s3://${bucket}/spring`, 'from-s3/', ['--json', '--s3-endpoint', s3.endpoint], { ...env, AWS_ENDPOINT_URL: undefined });
  expect(summaryOf(flagEndpoint)).toMatchObject({ unchanged: 30 });
  const wrongKey = await sync(`s3://${bucket}/spring`, 'from-s3/', [], { ...env, AWS_SECRET_ACCESS_KEY: 'wrong' });
  expect(wrongKey.code).toBe(7);
  expect(wrongKey.stderr).toContain(`cannot list s3://${bucket}/spring/`);
}, 90000);

test('bad flags and a missing stack are one clear error each', async () => {
  const dir = path.join(work, 'flags');
  fs.mkdirSync(dir, { recursive: true });
  const noPrefix = await cdn(['assets', 'sync', dir, '--state-dir', stateDir]);
  expect(noPrefix.code).toBe(2);
  expect(noPrefix.stderr).toContain("required option '--prefix <prefix>' not specified");
  const badPrefix = await sync(dir, 'v1/');
  expect(badPrefix.code).toBe(2);
  expect(badPrefix.stderr).toContain('--prefix "v1/" is not a key prefix');
  const badTag = await sync(dir, 'x/', ['--tags', 'a b']);
  expect(badTag.stderr).toContain('--tags: tag must contain only printable ASCII');
  const badConcurrency = await sync(dir, 'x/', ['--concurrency', '0']);
  expect(badConcurrency.stderr).toContain('--concurrency expects a whole number from 1 to 64, got "0"');
  const noSource = await sync(path.join(dir, 'nope'), 'x/');
  expect(noSource.stderr).toContain('no such directory');
  const noToken = await cdn(['assets', 'sync', dir, '--prefix', 'x/', '--origin', origin]);
  expect(noToken.code).toBe(2);
  expect(noToken.stderr).toContain('--origin needs an API token');
  const both = await cdn(['assets', 'sync', dir, '--prefix', 'x/', '--origin', origin, '--state-dir', stateDir]);
  expect(both.stderr).toContain('--origin and --state-dir exclude each other');
  const noStack = await cdn(['assets', 'sync', dir, '--prefix', 'x/', '--state-dir', dir]);
  expect(noStack.code).toBe(6);
  expect(noStack.stderr).toContain('No stack is running in this state directory');
  const badToken = await cdn(['assets', 'sync', dir, '--prefix', 'x/', '--origin', origin], baseEnv({ CDN_TOKEN: 'not-the-token' }));
  expect(badToken.code).toBe(7);
  expect(badToken.stderr).toContain('CDN_ERR_UNAUTHORIZED');
  // --origin with a token from the environment works like the state directory
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a\n');
  const viaOrigin = await cdn(['assets', 'sync', dir, '--prefix', 'via-origin/', '--origin', origin, '--json'], baseEnv({ CDN_TOKEN: token }));
  expect(summaryOf(viaOrigin)).toMatchObject({ uploaded: 1, origin });
}, 60000);
