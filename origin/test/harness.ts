/**
 * Test harness for the origin: the real app (createOriginApp) on a real 127.0.0.1 port,
 * a real storage directory under the OS temp dir, and a tiny HTTP client that sends
 * paths byte for byte (no URL normalisation, so "../" and "%2e" reach the server as
 * written). Redis comes from test/support/redis-server.ts, started by each test file.
 */
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { request as httpRequest, type Agent, type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { createOriginApp } from '../src/app';
import { loadOriginConfig, type OriginConfig } from '../src/config/origin-config';

export const TEST_TOKEN = 'test-admin-token-0123456789';
/** Tokens with one scope each (TEST_TOKEN is the admin's), as writeScopedTokens files them. */
export const PURGE_TOKEN = 'purge-only-token-0123456789';
export const UPLOAD_TOKEN = 'upload-only-token-0123456789';

/**
 * A CDN_TOKENS_FILE in `dir` holding PURGE_TOKEN ("marketing", scope purge) and
 * UPLOAD_TOKEN ("catalogue", scope upload); returns its path.
 */
export async function writeScopedTokens(dir: string): Promise<string> {
  const file = join(dir, 'tokens.json');
  await writeFile(
    file,
    JSON.stringify([
      { name: 'marketing', token: PURGE_TOKEN, scopes: ['purge'] },
      { name: 'catalogue', token: UPLOAD_TOKEN, scopes: ['upload'] },
    ]),
  );
  return file;
}
export const PUBLIC_BASE_URL = 'http://cdn.test:8080';

export interface OriginUnderTest {
  readonly app: NestFastifyApplication;
  readonly config: OriginConfig;
  readonly port: number;
  /** The filesystem storage root ('' with S3 storage). */
  readonly storageDir: string;
  /** Every JSON log line the origin wrote so far (access, audit, Nest). */
  logLines(): Record<string, unknown>[];
  /** The raw log text, to check that no secret ever reaches it. */
  logText(): string;
  request(method: string, path: string, options?: RequestOptions): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface RequestOptions {
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | string | Readable;
  /** Adds `Authorization: Bearer <TEST_TOKEN>`. */
  readonly auth?: boolean;
  /** A keep-alive agent, to send several requests on one connection; default: a new connection. */
  readonly agent?: Agent;
}

export interface TestResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** True when the request went over a connection that an earlier request had used. */
  readonly reusedSocket: boolean;
  json<T = Record<string, unknown>>(): T;
}

export async function startOrigin(
  redisUrl: string,
  env: Record<string, string> = {},
): Promise<OriginUnderTest> {
  const storageDir = await mkdtemp(join(tmpdir(), 'cdn-origin-test-'));
  const config = loadOriginConfig({
    CDN_ORIGIN_HOST: '127.0.0.1',
    CDN_ORIGIN_PORT: '3000',
    CDN_STORAGE_KIND: 'filesystem',
    ...(env.CDN_STORAGE_KIND === 's3' ? {} : { CDN_STORAGE_PATH: join(storageDir, 'store') }),
    CDN_REDIS_URL: redisUrl,
    CDN_ADMIN_TOKEN: TEST_TOKEN,
    CDN_PUBLIC_BASE_URL: PUBLIC_BASE_URL,
    ...env,
  });
  let logged = '';
  const logDestination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logged += chunk.toString('utf8');
      callback();
    },
  });
  const { app } = await createOriginApp(config, { logger: ['error'], logDestination });
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;

  return {
    app,
    config,
    port,
    storageDir: config.storage.kind === 'filesystem' ? config.storage.path : '',
    logText: () => logged,
    logLines: () =>
      logged
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    request: (method, path, options = {}) => send(port, method, path, options),
    async close(): Promise<void> {
      await app.close();
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

export function send(port: number, method: string, path: string, options: RequestOptions = {}): Promise<TestResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth) {
    headers.authorization = `Bearer ${TEST_TOKEN}`;
  }
  if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) {
    headers['content-length'] ??= String(Buffer.byteLength(options.body));
  }
  return new Promise<TestResponse>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          reusedSocket: req.reusedSocket,
          json: <T>() => JSON.parse(body.toString('utf8')) as T,
        });
      });
    });
    req.once('error', reject);
    if (options.body instanceof Readable) {
      options.body.pipe(req);
    } else {
      req.end(options.body);
    }
  });
}

/** Every file under `dir`, relative to it, sorted (missing dir: empty). */
export async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return [];
    }
    throw err;
  }
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
