/**
 * The sync itself, like `aws s3 sync` or rclone: list what the origin has under the
 * prefix (every page), read and hash every source file (streaming, N at a time), upload
 * what is new or different, then (with `delete`) remove what the source no longer has.
 *
 * Nothing is kept between runs: the origin's own listing (sha256 per key) is the state,
 * and the origin commits each PUT atomically after checking its Content-SHA256. So a run
 * that is interrupted leaves only whole assets behind, and the next run uploads only
 * what is still missing or different.
 */
import { lookup } from 'mime-types';
import { checkAssetKey } from '../../origin/contract/asset-key';
import { cdnError } from '../../infra/model/errors';
import type { AssetApi, RemoteAsset } from './asset-api';
import type { Source, SourceFile } from './sources';

export interface SyncOptions {
  readonly source: Source;
  readonly api: Pick<AssetApi, 'list' | 'put' | 'delete' | 'origin'>;
  /** Non-empty, ends in '/'. */
  readonly prefix: string;
  readonly tags: readonly string[];
  readonly cacheControl?: string;
  readonly concurrency: number;
  readonly dryRun: boolean;
  readonly delete: boolean;
}

/** Why a file is uploaded: the key is new, its bytes changed, or only its headers (type, cache policy, tags) did. */
export type UploadReason = 'new' | 'changed' | 'metadata';

export interface SyncFailure {
  /** The source file (path or s3:// URL), or the key for a failed delete. */
  readonly file: string;
  /** The asset key, when the file has a valid one. */
  readonly key: string | null;
  readonly reason: string;
}

export interface SyncSummary {
  readonly source: string;
  readonly origin: string;
  readonly prefix: string;
  readonly dryRun: boolean;
  /** With dryRun: what would be uploaded / deleted. */
  readonly uploaded: number;
  readonly unchanged: number;
  readonly deleted: number;
  readonly failed: number;
  readonly bytesUploaded: number;
  readonly durationMs: number;
  readonly uploads: { readonly key: string; readonly file: string; readonly reason: UploadReason }[];
  readonly deletions: string[];
  readonly failures: SyncFailure[];
}

export type SyncEvent =
  | { readonly kind: 'listed'; readonly files: number; readonly remote: number }
  | { readonly kind: 'uploaded'; readonly key: string; readonly file: string; readonly reason: UploadReason; readonly bytes: number }
  | { readonly kind: 'unchanged'; readonly key: string }
  | { readonly kind: 'deleting'; readonly count: number }
  | { readonly kind: 'deleted'; readonly key: string }
  | { readonly kind: 'failed'; readonly failure: SyncFailure };

const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/** The Content-Type the sync sends for a file name (by its extension). */
export function contentTypeFor(name: string): string {
  return lookup(name) || DEFAULT_CONTENT_TYPE;
}

/** Runs `work` over `items`, at most `concurrency` at a time; `work` must not throw. */
async function forEachBounded<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function sameTags(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((t) => y.has(t));
}

function uploadReason(remote: RemoteAsset | undefined, sha256: string, wanted: { contentType: string; cacheControl: string | null; tags: readonly string[] }): UploadReason | null {
  if (remote === undefined) return 'new';
  if (remote.sha256 !== sha256) return 'changed';
  if (remote.contentType !== wanted.contentType || remote.cacheControl !== wanted.cacheControl || !sameTags(remote.tags, wanted.tags)) return 'metadata';
  return null;
}

export async function syncAssets(o: SyncOptions, onEvent: (event: SyncEvent) => void = () => undefined): Promise<SyncSummary> {
  const started = Date.now();
  const uploads: { key: string; file: string; reason: UploadReason }[] = [];
  const deletions: string[] = [];
  const failures: SyncFailure[] = [];
  let unchanged = 0;
  let bytesUploaded = 0;
  const fail = (failure: SyncFailure) => {
    failures.push(failure);
    onEvent({ kind: 'failed', failure });
  };

  const [remote, listing] = await Promise.all([
    o.api.list(o.prefix).catch((err: Error) => {
      throw cdnError('CDN_ERR_SYNC_FAILED', `cannot list ${o.api.origin}/v1/assets?prefix=${o.prefix}: ${err.message}`, { cause: err });
    }),
    o.source.list().catch((err: Error) => {
      throw cdnError('CDN_ERR_SYNC_FAILED', `cannot list ${o.source.description}: ${err.message}`, { cause: err });
    }),
  ]);
  onEvent({ kind: 'listed', files: listing.files.length + listing.problems.length, remote: remote.size });

  for (const problem of listing.problems) {
    fail({ file: problem.location, key: problem.name === null ? null : o.prefix + problem.name, reason: problem.reason });
  }

  // Every key the source has, synced or not: --delete never removes a key whose file failed.
  const sourceKeys = new Set<string>();
  for (const problem of listing.problems) if (problem.name !== null) sourceKeys.add(o.prefix + problem.name);
  const valid: { file: SourceFile; key: string }[] = [];
  for (const file of listing.files) {
    const key = o.prefix + file.name;
    const check = checkAssetKey(key);
    if (!check.ok) {
      fail({ file: file.location, key: null, reason: `not a valid asset key ("${key}"): ${check.reason}` });
      continue;
    }
    sourceKeys.add(key);
    valid.push({ file, key });
  }

  const cacheControl = o.cacheControl ?? null;
  await forEachBounded(valid, o.concurrency, async ({ file, key }) => {
    let fetched;
    try {
      fetched = await o.source.fetch(file);
    } catch (err) {
      fail({ file: file.location, key, reason: (err as Error).message });
      return;
    }
    try {
      const contentType = contentTypeFor(file.name);
      const reason = uploadReason(remote.get(key), fetched.sha256, { contentType, cacheControl, tags: o.tags });
      if (reason === null) {
        unchanged++;
        onEvent({ kind: 'unchanged', key });
        return;
      }
      if (!o.dryRun) {
        await o.api.put({
          key,
          size: fetched.size,
          sha256: fetched.sha256,
          contentType,
          cacheControl: o.cacheControl,
          tags: o.tags,
          body: () => fetched.open(),
        });
        bytesUploaded += fetched.size;
      }
      uploads.push({ key, file: file.location, reason });
      onEvent({ kind: 'uploaded', key, file: file.location, reason, bytes: fetched.size });
    } catch (err) {
      fail({ file: file.location, key, reason: (err as Error).message });
    } finally {
      await fetched.release().catch(() => undefined);
    }
  });

  if (o.delete) {
    const extra = [...remote.keys()].filter((key) => !sourceKeys.has(key)).sort();
    onEvent({ kind: 'deleting', count: extra.length });
    await forEachBounded(extra, o.concurrency, async (key) => {
      try {
        if (!o.dryRun) await o.api.delete(key);
        deletions.push(key);
        onEvent({ kind: 'deleted', key });
      } catch (err) {
        fail({ file: key, key, reason: `cannot delete it: ${(err as Error).message}` });
      }
    });
  }

  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  return {
    source: o.source.description,
    origin: o.api.origin,
    prefix: o.prefix,
    dryRun: o.dryRun,
    uploaded: uploads.length,
    unchanged,
    deleted: deletions.length,
    failed: failures.length,
    bytesUploaded,
    durationMs: Date.now() - started,
    uploads: uploads.sort(byKey),
    deletions: deletions.sort(),
    failures: failures.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0)),
  };
}
