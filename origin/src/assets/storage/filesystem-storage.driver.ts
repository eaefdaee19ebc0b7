import { VARIANT_PREFIX } from '../../../contract/images';
import { Logger } from '@nestjs/common';
import { createHash, randomUUID } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { CdnError, cdnError } from '../../../../infra/model/errors';
import { receiveToFile } from './receive-to-file';
import type { AssetMetadata, ByteRange, ListOptions, ListPage, PutOptions, PutResult, StorageDriver } from './storage-driver';

/** Temp files older than this are leftovers of a crash and removed at boot. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/**
 * Hot-path caches (delivery reads the metadata of every request): metadata is reused
 * for up to METADATA_TTL_MS and dropped at once by this process's own writes, so only
 * a second origin writing the same directory could be seen up to that late.
 */
const METADATA_TTL_MS = 1000;
const MAX_CACHED = 10_000;

/**
 * Assets on a local filesystem, content-addressed:
 *
 *   <root>/tmp/                          uploads in progress (same filesystem: rename is atomic)
 *   <root>/blobs/<sha[0:2]>/<sha>        the bytes, named by their sha256
 *   <root>/meta/<h[0:2]>/<h>.json        h = sha256(key): the asset's metadata
 *
 * A put streams to tmp while hashing, fsyncs, renames the blob into place, then writes
 * the metadata to tmp and renames it over the key's metadata file. That last rename is
 * the commit point: readers (meta first, then blob) see the old asset or the new one.
 * Blobs are immutable once renamed, so a reader holding old metadata still finds its
 * blob. Delete removes the metadata only.
 *
 * TODO(blob-gc): blobs no metadata refers to are never removed yet. A collector must
 * only remove blobs unreferenced for longer than the longest read, or readers holding
 * old metadata would lose their blob mid-response.
 */
export class FilesystemStorageDriver implements StorageDriver {
  readonly kind = 'filesystem' as const;
  private readonly logger = new Logger('FilesystemStorage');
  private readonly tmpDir: string;
  private readonly blobsDir: string;
  private readonly metaDir: string;
  private readonly recentMetadata = new Map<string, { readonly metadata: AssetMetadata; readonly until: number }>();
  /**
   * Bumped when a write starts and when it ends: a read that overlapped a write does not
   * fill the cache, so metadata older than a commit is never cached after the commit
   * (the purge that follows a write must not meet the old version here).
   */
  private writeEpoch = 0;
  /** Blobs whose size was checked against their metadata once (blobs are immutable). */
  private readonly checkedBlobs = new Set<string>();

  constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    this.blobsDir = join(root, 'blobs');
    this.metaDir = join(root, 'meta');
  }

  async init(): Promise<void> {
    for (const dir of [this.root, this.tmpDir, this.blobsDir, this.metaDir]) {
      await mkdir(dir, { recursive: true });
    }
    await this.removeStaleTempFiles();
  }

  async check(): Promise<void> {
    for (const dir of [this.tmpDir, this.blobsDir, this.metaDir]) {
      const info = await stat(dir);
      if (!info.isDirectory()) {
        throw new Error(`${dir} is not a directory`);
      }
      await access(dir, constants.R_OK | constants.W_OK | constants.X_OK);
    }
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const tmpBlob = this.tempPath('blob');
    try {
      const received = await receiveToFile(body, tmpBlob, options.maxBytes, options.computeMd5 ?? false);
      // Verification failures leave only the temp file, removed below.
      options.verify?.(received);
      const blobPath = this.blobPath(received.sha256);
      await mkdir(dirname(blobPath), { recursive: true });
      // Same bytes, same name: replacing an existing blob is harmless.
      await rename(tmpBlob, blobPath);
      await fsyncDirectory(dirname(blobPath));

      const previous = await this.stat(key);
      const now = new Date().toISOString();
      const asset: AssetMetadata = {
        key,
        size: received.size,
        sha256: received.sha256,
        contentType: options.contentType,
        cacheControl: options.cacheControl,
        tags: [...options.tags],
        createdAt: previous?.createdAt ?? now,
        updatedAt: now,
      };
      this.writeEpoch++;
      try {
        await this.writeMetadata(key, asset);
      } finally {
        this.recentMetadata.delete(key);
        this.writeEpoch++;
      }
      return { asset, previous };
    } catch (err) {
      throw asStorageError(err, 'failed to store the asset');
    } finally {
      await rm(tmpBlob, { force: true }).catch((err: unknown) => {
        this.logger.warn(`failed to remove a temporary file: ${(err as Error).message}`);
      });
    }
  }

  async stat(key: string): Promise<AssetMetadata | null> {
    const cached = this.recentMetadata.get(key);
    if (cached !== undefined && cached.until > Date.now()) {
      return cached.metadata;
    }
    const epoch = this.writeEpoch;
    let text: string;
    try {
      text = await readFile(this.metaPath(key), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return null;
      }
      throw asStorageError(err, 'failed to read asset metadata');
    }
    const metadata = parseMetadata(text);
    if (metadata === null || metadata.key !== key) {
      throw cdnError('CDN_ERR_STORAGE_UNAVAILABLE', 'asset metadata is corrupt');
    }
    if (epoch === this.writeEpoch) {
      if (this.recentMetadata.size >= MAX_CACHED) {
        this.recentMetadata.clear();
      }
      this.recentMetadata.set(key, { metadata, until: Date.now() + METADATA_TTL_MS });
    }
    return metadata;
  }

  /** Blobs are immutable and named by their hash: the path is that version's for as long as it exists. */
  async localPath(metadata: AssetMetadata): Promise<string | null> {
    const path = this.blobPath(metadata.sha256);
    try {
      return (await stat(path)).size === metadata.size ? path : null;
    } catch {
      return null;
    }
  }

  async read(metadata: AssetMetadata, range?: ByteRange): Promise<Readable | null> {
    // Blobs are immutable and named by their hash, so this is always the version
    // `metadata` describes, even if the key was overwritten since.
    const path = this.blobPath(metadata.sha256);
    if (this.checkedBlobs.has(metadata.sha256)) {
      return createReadStream(path, range === undefined ? {} : { start: range.start, end: range.end });
    }
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw asStorageError(err, 'failed to open the asset blob');
    }
    try {
      const info = await handle.stat();
      if (info.size !== metadata.size) {
        throw cdnError('CDN_ERR_STORAGE_UNAVAILABLE', 'asset blob size does not match its metadata');
      }
    } catch (err) {
      await handle.close();
      throw asStorageError(err, 'failed to stat the asset blob');
    }
    if (this.checkedBlobs.size >= MAX_CACHED) {
      this.checkedBlobs.clear();
    }
    this.checkedBlobs.add(metadata.sha256);
    return handle.createReadStream(range === undefined ? {} : { start: range.start, end: range.end });
  }

  async delete(key: string): Promise<AssetMetadata | null> {
    const previous = await this.stat(key);
    if (previous === null) {
      return null;
    }
    const path = this.metaPath(key);
    this.writeEpoch++;
    try {
      await unlink(path);
      await fsyncDirectory(dirname(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return null; // deleted concurrently
      }
      throw asStorageError(err, 'failed to delete the asset');
    } finally {
      this.recentMetadata.delete(key);
      this.writeEpoch++;
    }
    return previous;
  }

  /**
   * Metadata files are named by the hash of their key, so listing reads them all: O(assets)
   * per page. Fine for the embedded default; large catalogues belong on S3, where the
   * bucket lists in key order.
   */
  async list(options: ListOptions): Promise<ListPage> {
    let entries;
    try {
      entries = await readdir(this.metaDir, { recursive: true, withFileTypes: true });
    } catch (err) {
      throw asStorageError(err, 'failed to list assets');
    }
    const matching: AssetMetadata[] = [];
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.endsWith('.json')) {
        continue;
      }
      let text: string;
      try {
        text = await readFile(join(entry.parentPath, entry.name), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          continue; // deleted while listing
        }
        throw asStorageError(err, 'failed to list assets');
      }
      const metadata = parseMetadata(text);
      if (metadata === null) {
        this.logger.warn(`skipping corrupt metadata file ${entry.name} while listing`);
        continue;
      }
      // (the variant reserve only when asked for by its prefix)
      const reserve = metadata.key.startsWith(VARIANT_PREFIX);
      if (metadata.key.startsWith(options.prefix) && reserve === options.prefix.startsWith(VARIANT_PREFIX) && (options.after === null || metadata.key > options.after)) {
        matching.push(metadata);
      }
    }
    matching.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { assets: matching.slice(0, options.limit), more: matching.length > options.limit };
  }

  private async writeMetadata(key: string, metadata: AssetMetadata): Promise<void> {
    const tmp = this.tempPath('json');
    const path = this.metaPath(key);
    try {
      const handle = await open(tmp, 'wx');
      try {
        await writeFile(handle, JSON.stringify(metadata));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path); // commit point
      await fsyncDirectory(dirname(path));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private tempPath(suffix: string): string {
    return join(this.tmpDir, `${randomUUID()}.${suffix}`);
  }

  private blobPath(sha256: string): string {
    return join(this.blobsDir, sha256.slice(0, 2), sha256);
  }

  private metaPath(key: string): string {
    const hash = createHash('sha256').update(key, 'utf8').digest('hex');
    return join(this.metaDir, hash.slice(0, 2), `${hash}.json`);
  }

  private async removeStaleTempFiles(): Promise<void> {
    const cutoff = Date.now() - STALE_TEMP_MS;
    for (const name of await readdir(this.tmpDir)) {
      const path = join(this.tmpDir, name);
      try {
        const info = await stat(path);
        if (info.isFile() && info.mtimeMs < cutoff) {
          await rm(path, { force: true });
        }
      } catch {
        // Raced with another remover; nothing to do.
      }
    }
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function asStorageError(err: unknown, what: string): CdnError {
  if (err instanceof CdnError) {
    return err;
  }
  // The cause keeps the errno and path for the logs; the client sees only `what`.
  return cdnError('CDN_ERR_STORAGE_UNAVAILABLE', what, { cause: err });
}

function parseMetadata(text: string): AssetMetadata | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const m = value as Partial<AssetMetadata> | null;
  if (
    m === null ||
    typeof m !== 'object' ||
    typeof m.key !== 'string' ||
    typeof m.size !== 'number' ||
    typeof m.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(m.sha256) ||
    typeof m.contentType !== 'string' ||
    !(m.cacheControl === null || typeof m.cacheControl === 'string') ||
    !Array.isArray(m.tags) ||
    typeof m.createdAt !== 'string' ||
    typeof m.updatedAt !== 'string'
  ) {
    return null;
  }
  return m as AssetMetadata;
}
