import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';

/**
 * A throwaway s3rver (S3 API on the filesystem) standing in for MinIO: its own port on
 * 127.0.0.1, its own directory (removed on stop), and credential files in the shape
 * the origin reads (CDN_S3_ACCESS_KEY_FILE / CDN_S3_SECRET_KEY_FILE). s3rver knows the
 * credentials S3RVER/S3RVER and checks signatures with them.
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

export async function startS3rver(): Promise<S3rverHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'cdn-test-s3rver-'));
  const port = await freePort();
  // s3rver ships no types; its constructor takes these options.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const S3rver = require('s3rver') as new (options: Record<string, unknown>) => S3rverInstance & { httpServer?: Server };
  const server = new S3rver({ address: '127.0.0.1', port, silent: true, directory: join(dir, 'data') });
  await server.run();
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
        server.httpServer?.closeAllConnections();
        await server.close().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
