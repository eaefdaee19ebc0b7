/**
 * `cdn assets sync --origin URL` against a scripted origin (a plain Node server in
 * this process) that answers 5xx, drops connections and refuses, so the CLI's retry
 * rules and listing by pages can be checked exactly: 5xx and dropped connections are
 * retried twice with backoff, a 4xx fails at once with the origin's message.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { AssetApi } from '../../cli/sync/asset-api';
import { REPO_ROOT } from '../support/nginx-lua';

const CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
const TOKEN = 'test-token-123';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  sha256: string;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

let server: http.Server;
let origin: string;
let dir: string;
let seen: Seen[];
const attempts = new Map<string, number>();

function answer(res: http.ServerResponse, status: number, body?: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-sync-retries-'));
  for (const name of ['flaky.txt', 'always-500.txt', 'dropped.txt', 'refused.txt', 'same.txt']) fs.writeFileSync(path.join(dir, name), `body of ${name}\n`);
  seen = [];
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('error', () => undefined);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, sha256: sha256(Buffer.concat(chunks)) });
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return answer(res, 401, { error: 'CDN_ERR_UNAUTHORIZED', message: 'Missing or invalid bearer token' });
      const url = new URL(req.url!, 'http://x');
      const key = url.pathname.replace(/^\/v1\/assets\/?/, '');
      const n = (attempts.get(`${req.method} ${key}`) ?? 0) + 1;
      attempts.set(`${req.method} ${key}`, n);
      if (req.method === 'GET' && key === '') {
        // two pages: the second has the one asset that is already up to date
        if (url.searchParams.get('cursor') === null) {
          return answer(res, 200, {
            items: [{ key: 'p/extra.txt', size: 1, sha256: sha256('x'), contentType: 'text/plain', cacheControl: null, tags: [] }],
            nextCursor: 'page-2',
          });
        }
        return answer(res, 200, {
          items: [{ key: 'p/same.txt', size: 15, sha256: sha256('body of same.txt\n'), contentType: 'text/plain', cacheControl: null, tags: ['sale', 'spring'] }],
          nextCursor: null,
        });
      }
      if (req.method === 'PUT') {
        if (key === 'p/flaky.txt' && n <= 2) return answer(res, 503, { error: 'CDN_ERR_STORAGE_UNAVAILABLE', message: 'Storage is unavailable' });
        if (key === 'p/always-500.txt') return answer(res, 500, { error: 'CDN_ERR_INTERNAL', message: 'Internal server error' });
        if (key === 'p/dropped.txt' && n === 1) return void res.socket?.destroy();
        if (key === 'p/refused.txt') return answer(res, 400, { error: 'CDN_ERR_HEADER_INVALID', message: 'Invalid request header: for the test' });
        return answer(res, n === 1 ? 201 : 200, { key });
      }
      if (req.method === 'DELETE') {
        if (n === 1) return answer(res, 502);
        return answer(res, 204);
      }
      answer(res, 404, { error: 'CDN_ERR_ROUTE_NOT_FOUND', message: 'No such route' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

function cdn(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...process.env, CDN_TOKEN: TOKEN };
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })));
}

test('5xx and dropped connections are retried twice with backoff, a 4xx fails at once; the listing is read to its last page', async () => {
  const run = await cdn(['assets', 'sync', dir, '--prefix', 'p', '--origin', origin, '--delete', '--tags', 'spring,sale', '--json']);
  expect(run.code).toBe(7);
  const s = JSON.parse(run.stdout);
  expect(s).toMatchObject({ uploaded: 2, unchanged: 1, deleted: 1, failed: 2, deletions: ['p/extra.txt'] });
  expect(s.uploads.map((u: { key: string }) => u.key)).toEqual(['p/dropped.txt', 'p/flaky.txt']);
  expect(s.failures).toEqual([
    {
      file: path.join(dir, 'always-500.txt'),
      key: 'p/always-500.txt',
      reason: 'Internal server error (PUT HTTP 500 CDN_ERR_INTERNAL, after 3 attempts)',
    },
    {
      file: path.join(dir, 'refused.txt'),
      key: 'p/refused.txt',
      reason: 'Invalid request header: for the test (PUT HTTP 400 CDN_ERR_HEADER_INVALID)',
    },
  ]);
  expect(run.stderr).toContain('2 of 6 failed');

  expect(attempts.get('PUT p/flaky.txt')).toBe(3);
  expect(attempts.get('PUT p/always-500.txt')).toBe(3);
  expect(attempts.get('PUT p/dropped.txt')).toBe(2);
  expect(attempts.get('PUT p/refused.txt')).toBe(1);
  expect(attempts.get('PUT p/same.txt')).toBeUndefined();
  expect(attempts.get('DELETE p/extra.txt')).toBe(2);
  expect(seen.filter((r) => r.method === 'GET').map((r) => r.url)).toEqual(['/v1/assets?prefix=p%2F&limit=1000', '/v1/assets?prefix=p%2F&limit=1000&cursor=page-2']);

  // what every upload carries: the checksum of the bytes sent, their type, the tags, the token
  const put = seen.find((r) => r.method === 'PUT' && r.url === '/v1/assets/p/flaky.txt')!;
  expect(put.sha256).toBe(sha256('body of flaky.txt\n'));
  expect(put.headers).toMatchObject({
    authorization: `Bearer ${TOKEN}`,
    'content-sha256': put.sha256,
    'content-type': 'text/plain',
    'content-length': String('body of flaky.txt\n'.length),
    'surrogate-key': 'spring sale',
  });
  expect(put.headers['cache-control']).toBeUndefined();
  // backoff: the three tries of always-500 are spread over more than a second
  console.log(`retry run: ${run.ms} ms`);
  expect(run.ms).toBeGreaterThan(1250);
}, 30000);

test('an origin that cannot be reached fails the run with the listing error, after retries', async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const run = await cdn(['assets', 'sync', dir, '--prefix', 'p/', '--origin', `http://127.0.0.1:${port}`]);
  expect(run.code).toBe(7);
  expect(run.stderr).toContain(`cannot list http://127.0.0.1:${port}/v1/assets?prefix=p/`);
  expect(run.stderr).toContain('ECONNREFUSED');
  expect(run.stderr).toContain('after 3 attempts');
});

test('a file that grew or shrank since it was hashed fails at once and nothing beyond its declared length is sent', async () => {
  const api = new AssetApi(origin, TOKEN, { maxSockets: 1 });
  const base = { key: 'p/resized.txt', sha256: sha256('abc'), contentType: 'text/plain', tags: [] };
  try {
    for (const now of ['abcdef', 'ab']) {
      await expect(api.put({ ...base, size: 3, body: () => Readable.from([Buffer.from(now)]) })).rejects.toThrow(
        'the file changed while it was being synced (it was 3 bytes when hashed); nothing was stored',
      );
    }
    // neither request reached the end of a body the server could take
    expect(attempts.get('PUT p/resized.txt')).toBeUndefined();
    // and the connection pool still works
    expect(await api.put({ ...base, size: 3, body: () => Readable.from([Buffer.from('abc')]) })).toEqual({ created: true, attempts: 1 });
  } finally {
    api.close();
  }
});
