import type { Readable } from 'node:stream';

/**
 * Where asset bytes and their metadata live. The filesystem driver is the only one so
 * far; an S3/MinIO driver (the `minio` client) implements the same contract:
 *
 * - `put` consumes `body` exactly once, hashes it on the way (sha256) and enforces
 *   `maxBytes` itself, because the size of a chunked upload is known only at its end.
 *   An S3 driver would stream into `putObject` (multipart past the part size) and write
 *   the metadata as user metadata / a sidecar object.
 * - A put is all-or-nothing: readers see the previous asset or the new one, never a mix,
 *   and a failed put (client gone, limit exceeded) leaves no visible trace.
 * - Keys reaching a driver are already validated (see asset-key.ts).
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
}

export interface PutOptions {
  readonly contentType: string;
  readonly cacheControl: string | null;
  readonly tags: readonly string[];
  /** Bytes allowed; a longer body fails with CDN_ERR_BODY_TOO_LARGE. */
  readonly maxBytes: number;
}

export interface PutResult {
  readonly asset: AssetMetadata;
  /** What the key held before this put, if anything (its tags get purged). */
  readonly previous: AssetMetadata | null;
}

export interface OpenedAsset {
  readonly metadata: AssetMetadata;
  /** The bytes; the caller must consume or destroy it. */
  readonly body: Readable;
}

export interface StorageDriver {
  readonly kind: string;
  /** Prepares the backend (directories, bucket checks). Called once at boot. */
  init(): Promise<void>;
  /** Throws when the backend cannot serve reads and writes (readiness). */
  check(): Promise<void>;
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  stat(key: string): Promise<AssetMetadata | null>;
  open(key: string): Promise<OpenedAsset | null>;
  /** Removes the key; returns what it held, or null when it was absent. */
  delete(key: string): Promise<AssetMetadata | null>;
}
