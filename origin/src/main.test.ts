/**
 * main.ts as a real process (the build `npm test` runs first, dist/origin/src/main.js): a bad
 * environment exits non-zero naming the variable; SIGTERM lets an in-flight upload
 * finish, then exits 0; the token never shows up in the output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../../test/support/ports';
import { startRedis, type RedisHandle } from '../../test/support/redis-server';
import { eventually, send } from '../test/harness';

const ROOT = resolve(__dirname, '..', '..');
const SECRET = 'main-test-token-s3cr3t-value';

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startMain(env: Record<string, string>): Started {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'origin', 'src', 'main.js')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => output, exited };
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cdn-main-test-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a bad environment variable: exit 2 with a message naming it', async () => {
  const started = startMain({
    CDN_ORIGIN_PORT: 'not-a-port',
    CDN_STORAGE_PATH: join(dir, 'bad'),
    CDN_REDIS_URL: 'redis://127.0.0.1:1',
    CDN_ADMIN_TOKEN: SECRET,
  });
  expect(await started.exited).toBe(2);
  expect(started.output()).toContain('CDN_ERR_CONFIG_INVALID');
  expect(started.output()).toContain('CDN_ORIGIN_PORT');
  expect(started.output()).not.toContain(SECRET);
});

test('no token at all: exit 2 naming CDN_ADMIN_TOKEN', async () => {
  const started = startMain({ CDN_STORAGE_PATH: join(dir, 'bad'), CDN_REDIS_URL: 'redis://127.0.0.1:1' });
  expect(await started.exited).toBe(2);
  expect(started.output()).toMatch(/CDN_ADMIN_TOKEN or CDN_ADMIN_TOKEN_FILE is required/);
});

describe('a running origin', () => {
  let redis: RedisHandle;
  let started: Started;
  /** The API listener. */
  let port: number;
  /** The delivery listener, the one the edges reach. */
  let deliveryPort: number;

  beforeAll(async () => {
    redis = await startRedis();
    port = await freePort();
    deliveryPort = await freePort();
    started = startMain({
      CDN_ORIGIN_HOST: '127.0.0.1',
      CDN_ORIGIN_PORT: String(deliveryPort),
      CDN_ORIGIN_API_PORT: String(port),
      CDN_STORAGE_PATH: join(dir, 'storage'),
      CDN_REDIS_URL: redis.url,
      CDN_ADMIN_TOKEN: SECRET,
    });
    await eventually(async () => {
      try {
        return (await send(port, 'GET', '/readyz')).status === 200;
      } catch {
        return false;
      }
    }, 20_000);
  }, 30_000);

  afterAll(async () => {
    if (started.child.exitCode === null) {
      started.child.kill('SIGKILL');
    }
    await redis?.stop();
  });

  test('the delivery listener serves assets and nothing of the API, without reading a refused body', async () => {
    expect((await send(port, 'PUT', '/v1/assets/listeners/a.txt', { headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'text/plain' }, body: 'asset' })).status).toBe(201);
    const asset = await send(deliveryPort, 'GET', '/listeners/a.txt');
    expect([asset.status, asset.body.toString()]).toEqual([200, 'asset']);
    for (const [method, path] of [['GET', '/readyz'], ['GET', '/metrics'], ['GET', '/docs/openapi.json'], ['GET', '/v1/assets/listeners/a.txt'], ['DELETE', '/v1/assets/listeners/a.txt'], ['POST', '/v1/purge']]) {
      const res = await send(deliveryPort, method, path, { headers: { authorization: `Bearer ${SECRET}` } });
      expect([method, path, res.status]).toEqual([method, path, 404]);
      expect(res.headers.connection).toBe('close');
    }
    // the asset is still there: the DELETE never reached the API
    expect((await send(deliveryPort, 'GET', '/listeners/a.txt')).status).toBe(200);
  });

  test('SIGTERM waits for an in-flight upload, then exits 0; the token is never printed', async () => {
    expect((await send(port, 'PUT', '/v1/assets/x', { headers: { authorization: 'Bearer wrong' }, body: 'x' })).status).toBe(401);

    // Start an upload and keep it open across the SIGTERM.
    const upload = new Promise<{ status: number; body: string }>((done, fail) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: '/v1/assets/slow/upload.txt',
          headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'text/plain' },
        },
        (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => done({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', fail);
      req.write('first half, ');
      setTimeout(() => {
        started.child.kill('SIGTERM');
        setTimeout(() => req.end('second half'), 300);
      }, 300);
    });

    const result = await upload;
    expect(result.status).toBe(201);
    expect(JSON.parse(result.body)).toMatchObject({ key: 'slow/upload.txt', size: 'first half, second half'.length });
    expect(await started.exited).toBe(0);
    expect(started.output()).toMatch(/SIGTERM: closing/);
    expect(started.output()).not.toContain(SECRET);
  }, 30_000);
});
