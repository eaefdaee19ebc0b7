import type { Readable } from 'node:stream';

/**
 * Where asset bytes and their metadata live: the filesystem (embedded default) or an
 * S3-compatible bucket (MinIO, AWS S3, R2, Ceph RGW). The contract every driver keeps:
 *
 * - `put` consumes `body` exactly once, streaming, hashing on the way (sha256, MD5 when
 *   asked) and enforcing `maxBytes` itself, because the size of a chunked upload is
 *   known only at its end. Before committing it hands what it received to `verify`;
 *   a throw there (checksum or content-type mismatch) aborts the put.
 * - A put is all-or-nothing: readers see the previous asset or the new one, never a mix,
 *   and a failed put (client gone, limit exceeded, verification failed) leaves no
 *   visible trace.
 * - `read` returns the bytes of exactly the version `stat` described, or null when that
 *   version is gone (overwritten meanwhile); callers then stat again.
 * - Keys reaching a driver are already validated (see asset-key.ts), or are keys of the
 *   image variant reserve (VARIANT_PREFIX, origin/contract/images.ts), which `list`
 *   returns only when its prefix asks for them.
 */
export const STORAGE_DRIVER = Symbol('STORAGE_DRIVER');

export interface AssetMetadata {
  readonly key: string;
  readonly size: number;
  /** Lower-case hex sha256 of the bytes; also the strong ETag. */
  readonly sha256: string;
  readonly contentType: string;
  /** The asset's own Cache-Control policy, or null to use the origin's default. */
  readonly cacheControl: string | null;
  readonly tags: readonly string[];
  /** ISO-8601 timestamps. */
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Driver-private identity of this version (the S3 ETag); never shown to clients. */
  readonly storageVersion?: string;
}

/** What a put received, for verification before the commit. */
export interface ReceivedContent {
  readonly size: number;
  readonly sha256: string;
  /** Base64 MD5 (the Content-MD5 form), when PutOptions.computeMd5 asked for it. */
  readonly md5: string | null;
  /** The first bytes (up to SNIFF_BYTES), for content sniffing. */
  readonly head: Buffer;
}

export interface PutOptions {
  readonly contentType: string;
  readonly cacheControl: string | null;
  readonly tags: readonly string[];
  /** Bytes allowed; a longer body fails with CDN_ERR_BODY_TOO_LARGE. */
  readonly maxBytes: number;
  readonly computeMd5?: boolean;
  /** Called after the last byte and before the commit; throwing aborts the put. */
  readonly verify?: (received: ReceivedContent) => void;
}

export interface PutResult {
  readonly asset: AssetMetadata;
  /** What the key held before this put, if anything (its tags get purged). */
  readonly previous: AssetMetadata | null;
}

/** Inclusive byte offsets, already checked against the size. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface ListOptions {
  readonly prefix: string;
  /** Only keys sorting strictly after this one (the cursor). */
  readonly after: string | null;
  readonly limit: number;
}

export interface ListPage {
  /** In key order (UTF-16 code unit order, which for key characters is byte order). */
  readonly assets: readonly AssetMetadata[];
  /** True when more keys follow the last one returned. */
  readonly more: boolean;
}

export interface StorageDriver {
  readonly kind: 'filesystem' | 's3';
  /** Prepares the backend (directories, bucket checks). Called once at boot. */
  init(): Promise<void>;
  /** Throws when the backend cannot serve reads and writes (readiness). */
  check(): Promise<void>;
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  stat(key: string): Promise<AssetMetadata | null>;
  /** The bytes of the version `metadata` describes (a range of them), or null if it is gone. */
  read(metadata: AssetMetadata, range?: ByteRange): Promise<Readable | null>;
  /** Removes the key; returns what it held, or null when it was absent. */
  delete(key: string): Promise<AssetMetadata | null>;
  list(options: ListOptions): Promise<ListPage>;
  /**
   * A local file holding exactly the version `metadata` describes, for readers that
   * take a path (image transforms), or null. Only drivers whose bytes are local files
   * have it.
   */
  localPath?(metadata: AssetMetadata): Promise<string | null>;
}
