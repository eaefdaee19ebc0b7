import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';

/**
 * A throwaway s3rver (S3 API on the filesystem) standing in for MinIO: its own port on
 * 127.0.0.1, its own directory (removed on stop), and credential files in the shape
 * the origin reads (CDN_S3_ACCESS_KEY_FILE / CDN_S3_SECRET_KEY_FILE). s3rver knows the
 * credentials S3RVER/S3RVER, but checks only V2 signatures: for V4 (what MinIO, S3, the
 * minio client and the edges use) it only looks the access key up, and it serves
 * unsigned requests. So the endpoint handed out is a front that checks every V4
 * header signature with Node's crypto (an implementation independent of the edge's
 * Lua and of the minio client's) and refuses unsigned requests, as a private bucket
 * does, before passing the request on to s3rver.
 *
 * Known gaps (checked with the minio client 8): ListMultipartUploads is NotImplemented,
 * so the client's own putObject cannot go multipart; the origin drives multipart
 * itself (initiate, parts, complete), which s3rver does implement.
 */

export const S3RVER_ACCESS_KEY = 'S3RVER';
export const S3RVER_SECRET_KEY = 'S3RVER';

export interface S3rverHandle {
  readonly endpoint: string;
  readonly port: number;
  /** Environment for the origin, bucket included. */
  env(bucket: string): Record<string, string>;
  stop(): Promise<void>;
}

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * Why a request's V4 Authorization header does not verify, or null when it does
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
 * Presigned URLs are left to s3rver.
 */
export function sigV4Failure(req: Pick<IncomingMessage, 'method' | 'url' | 'headers'>, secrets: Record<string, string>): string | null {
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const query = q < 0 ? '' : rawUrl.slice(q + 1);
  if (/(^|&)X-Amz-Signature=/.test(query)) return null;
  const auth = req.headers.authorization;
  if (auth === undefined) return 'AccessDenied';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (m === null) return 'AccessDenied';
  const [, accessKey, day, region, signedHeaders, signature] = m;
  const secret = secrets[accessKey];
  if (secret === undefined) return 'InvalidAccessKeyId';
  const names = signedHeaders.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) return 'AccessDenied';
  const canonicalQuery = query
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const [k, v] = eq < 0 ? [p, ''] : [p.slice(0, eq), p.slice(eq + 1)];
      return [rfc3986(decodeURIComponent(k)), rfc3986(decodeURIComponent(v.replace(/\+/g, '%20')))];
    })
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const header = (n: string) => {
    const v = req.headers[n];
    return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ');
  };
  const canonical = [
    req.method,
    q < 0 ? rawUrl : rawUrl.slice(0, q),
    canonicalQuery,
    names.map((n) => `${n}:${header(n)}\n`).join(''),
    signedHeaders,
    header('x-amz-content-sha256') || 'UNSIGNED-PAYLOAD',
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', header('x-amz-date'), scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 's3'), 'aws4_request');
  const expected = hmac(key, toSign);
  return timingSafeEqual(expected, Buffer.from(signature, 'hex')) ? null : 'SignatureDoesNotMatch';
}

/** The signature-checking front described above, passing good requests on to `target`. */
async function signatureFront(target: number): Promise<Server> {
  const server = createServer((req, res) => {
    const failure = sigV4Failure(req, { [S3RVER_ACCESS_KEY]: S3RVER_SECRET_KEY });
    if (failure !== null) {
      req.resume();
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${failure}</Code><Message>refused by the test's signature check</Message></Error>`;
      res.writeHead(403, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const upstream = request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.rawHeaders);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

export async function startS3rver(): Promise<S3rverHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'cdn-test-s3rver-'));
  const backendPort = await freePort();
  // s3rver ships no types; its constructor takes these options.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require('s3rver') as new (options: Record<string, unknown>) => S3rverInstance & { httpServer?: Server };
  const server = new S3rver({ address: '127.0.0.1', port: backendPort, silent: true, directory: join(dir, 'data') });
  await server.run();
  const front = await signatureFront(backendPort);
  const port = (front.address() as AddressInfo).port;
  const accessKeyFile = join(dir, 'access-key');
  const secretKeyFile = join(dir, 'secret-key');
  await writeFile(accessKeyFile, `${S3RVER_ACCESS_KEY}\n`, { mode: 0o600 });
  await writeFile(secretKeyFile, `${S3RVER_SECRET_KEY}\n`, { mode: 0o600 });

  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    env: (bucket) => ({
      CDN_STORAGE_KIND: 's3',
      CDN_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      CDN_S3_BUCKET: bucket,
      CDN_S3_REGION: 'us-east-1',
      CDN_S3_ACCESS_KEY_FILE: accessKeyFile,
      CDN_S3_SECRET_KEY_FILE: secretKeyFile,
    }),
    stop(): Promise<void> {
      stopped ??= (async () => {
        // Kept-alive client sockets would hold close() open.
        front.closeAllConnections();
        await new Promise((resolve) => front.close(resolve));
        server.httpServer?.closeAllConnections();
        await server.close().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
