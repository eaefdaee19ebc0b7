/**
 * Where `cdn assets sync` reads a catalogue from: a local directory, or an S3 bucket
 * prefix (`s3://bucket/prefix`, read with the minio client). A source lists its files
 * by name (relative, '/'-separated: the part of the asset key after --prefix) and reads
 * each one once to hash it, keeping a way to read the same bytes again for the upload.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { Client } from 'minio';

export interface SourceFile {
  /** Relative to the source, '/'-separated: the asset key is --prefix + name. */
  readonly name: string;
  /** How to name it to people: a path, or s3://bucket/key. */
  readonly location: string;
}

/** Something in the source that cannot be synced (a special file, an unreadable directory). */
export interface SourceProblem {
  readonly location: string;
  readonly name: string | null;
  readonly reason: string;
}

export interface FetchedFile {
  readonly sha256: string;
  readonly size: number;
  /** A fresh stream of the same bytes that were hashed (if the file has not changed since). */
  open(): Readable;
  release(): Promise<void>;
}

export interface Source {
  /** How to name the source to people. */
  readonly description: string;
  list(): Promise<{ files: SourceFile[]; problems: SourceProblem[] }>;
  /** Reads the file once (streaming), hashing it. */
  fetch(file: SourceFile): Promise<FetchedFile>;
  /** Removes whatever the source keeps on disk; safe to call from a signal handler. */
  closeSync(): void;
}

/** Streams `input` through sha256 (and into `sink` when given), counting its bytes. */
async function hashStream(input: Readable, sink?: fs.WriteStream): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    input,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        if (sink === undefined || sink.write(chunk)) callback();
        else sink.once('drain', () => callback());
      },
      final(callback) {
        if (sink === undefined) callback();
        else sink.end(callback);
      },
    }),
  );
  return { sha256: hash.digest('hex'), size };
}

export class LocalSource implements Source {
  readonly description: string;
  private readonly root: string;

  constructor(dir: string) {
    this.root = path.resolve(dir);
    this.description = this.root;
  }

  async list(): Promise<{ files: SourceFile[]; problems: SourceProblem[] }> {
    const files: SourceFile[] = [];
    const problems: SourceProblem[] = [];
    // Symlinks are followed (as aws s3 sync does); a directory reached twice (a loop) is walked once.
    const seen = new Set<string>();
    const walk = async (dir: string, rel: string): Promise<void> => {
      const real = await fs.promises.realpath(dir);
      if (seen.has(real)) {
        problems.push({ location: dir, name: rel, reason: 'a symbolic link loop: this directory was already synced under another name' });
        return;
      }
      seen.add(real);
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(dir, { withFileTypes: true });
      } catch (err) {
        problems.push({ location: dir, name: rel === '' ? null : rel, reason: `cannot read the directory: ${(err as Error).message}` });
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        const name = rel === '' ? entry.name : `${rel}/${entry.name}`;
        let kind: { isDirectory(): boolean; isFile(): boolean } = entry;
        if (entry.isSymbolicLink()) {
          try {
            kind = await fs.promises.stat(full);
          } catch (err) {
            problems.push({ location: full, name, reason: `cannot follow the symbolic link: ${(err as Error).message}` });
            continue;
          }
        }
        if (kind.isDirectory()) await walk(full, name);
        else if (kind.isFile()) files.push({ name, location: full });
        else problems.push({ location: full, name, reason: 'not a regular file or directory' });
      }
    };
    await walk(this.root, '');
    return { files, problems };
  }

  async fetch(file: SourceFile): Promise<FetchedFile> {
    const { sha256, size } = await hashStream(fs.createReadStream(file.location));
    return { sha256, size, open: () => fs.createReadStream(file.location), release: async () => undefined };
  }

  closeSync(): void {}
}

export interface S3Location {
  readonly bucket: string;
  /** '' or ending in '/'. */
  readonly prefix: string;
}

/** `s3://bucket/prefix` -> bucket and prefix (read as a directory: a '/' is added). */
export function parseS3Url(value: string): S3Location | null {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(value);
  if (m === null) return null;
  const rest = m[2] ?? '';
  return { bucket: m[1], prefix: rest === '' || rest.endsWith('/') ? rest : `${rest}/` };
}

export interface S3Settings {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly sessionToken?: string;
}

/** S3 error codes after which another attempt cannot help. */
const FINAL_S3_CODES = new Set(['NoSuchKey', 'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidBucketName', 'ENOENT', 'ENOSPC']);
const S3_ATTEMPTS = 3;

export class S3Source implements Source {
  readonly description: string;
  private readonly client: Client;
  private tmpDir: string | null = null;
  private counter = 0;

  constructor(
    private readonly location: S3Location,
    settings: S3Settings,
  ) {
    const url = new URL(settings.endpoint);
    this.client = new Client({
      endPoint: url.hostname,
      port: url.port === '' ? undefined : Number(url.port),
      useSSL: url.protocol === 'https:',
      accessKey: settings.accessKey,
      secretKey: settings.secretKey,
      sessionToken: settings.sessionToken,
      region: settings.region,
      pathStyle: true,
    });
    this.description = `s3://${location.bucket}/${location.prefix}`;
  }

  async list(): Promise<{ files: SourceFile[]; problems: SourceProblem[] }> {
    const files: SourceFile[] = [];
    const stream = this.client.listObjectsV2(this.location.bucket, this.location.prefix, true);
    for await (const item of stream as AsyncIterable<{ name?: string; prefix?: string }>) {
      // Keys ending in '/' are the empty "folder" markers consoles create, not files.
      if (item.name === undefined || item.name.endsWith('/')) continue;
      files.push({ name: item.name.slice(this.location.prefix.length), location: `s3://${this.location.bucket}/${item.name}` });
    }
    files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { files, problems: [] };
  }

  /** Downloads the object into a private temporary file while hashing it (so the upload sends the bytes that were hashed). */
  async fetch(file: SourceFile): Promise<FetchedFile> {
    const dir = this.ensureTmpDir();
    const tmp = path.join(dir, String(++this.counter));
    const objectName = this.location.prefix + file.name;
    for (let attempt = 1; ; attempt++) {
      try {
        const body = await this.client.getObject(this.location.bucket, objectName);
        const { sha256, size } = await hashStream(body, fs.createWriteStream(tmp, { mode: 0o600 }));
        return { sha256, size, open: () => fs.createReadStream(tmp), release: () => fs.promises.rm(tmp, { force: true }) };
      } catch (err) {
        await fs.promises.rm(tmp, { force: true });
        const code = (err as { code?: string }).code;
        if (attempt >= S3_ATTEMPTS || (code !== undefined && FINAL_S3_CODES.has(code))) {
          const message = (err as Error).message;
          throw new Error(`cannot read it from S3: ${message}${code && !message.includes(code) ? ` (${code})` : ''}${attempt > 1 ? `, after ${attempt} attempts` : ''}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 4 ** (attempt - 1)));
      }
    }
  }

  closeSync(): void {
    if (this.tmpDir !== null) fs.rmSync(this.tmpDir, { recursive: true, force: true });
    this.tmpDir = null;
  }

  private ensureTmpDir(): string {
    this.tmpDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-sync-'));
    return this.tmpDir;
  }
}
