import { VARIANT_PREFIX } from '../../../contract/images';
import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { Client, CopyDestinationOptions, CopySourceOptions, type BucketItemStat } from 'minio';
import { CdnError, cdnError } from '../../../../infra/model/errors';
import type { S3StorageConfig } from '../../config/origin-config';
import { checkAssetKey } from '../../../contract/asset-key';
import type { AssetMetadata, ByteRange, ListOptions, ListPage, PutOptions, PutResult, ReceivedContent, StorageDriver } from './storage-driver';
import { UploadDigest } from './upload-digest';

/** Uploads in progress; a key must start with a letter or digit, so no asset lives here. */
export const TEMP_PREFIX = '.cdn-tmp/';
/** Temp objects older than this are leftovers of a crash and removed at boot. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/**
 * AWS allows 2 KB of user metadata per object; sha256 and dates take about 150 bytes,
 * so the tags (space-separated) get the rest, with a margin.
 */
export const MAX_S3_TAGS_LENGTH = 1536;
/** Parallel HEADs when listed names are turned into full metadata. */
const LIST_STAT_CONCURRENCY = 8;

/** User metadata names (sent as x-amz-meta-<name>; the client strips the prefix on stat). */
const META_SHA256 = 'cdn-sha256';
const META_CREATED_AT = 'cdn-created-at';
const META_UPDATED_AT = 'cdn-updated-at';
const META_TAGS = 'cdn-tags';

/**
 * The subset of the minio client the driver uses: the seam for tests that need what
 * s3rver lacks (faults, multipart on a real MinIO).
 */
export type S3Client = Pick<
  Client,
  | 'bucketExists'
  | 'makeBucket'
  | 'putObject'
  | 'initiateNewMultipartUpload'
  | 'uploadPart'
  | 'completeMultipartUpload'
  | 'abortMultipartUpload'
  | 'copyObject'
  | 'statObject'
  | 'removeObject'
  | 'listObjectsV2Query'
  | 'makeRequestAsync'
>;

export function createS3Client(config: S3StorageConfig): Client {
  const endpoint = new URL(config.endpoint);
  const useSSL = endpoint.protocol === 'https:';
  return new Client({
    endPoint: endpoint.hostname,
    port: endpoint.port === '' ? undefined : Number(endpoint.port),
    useSSL,
    region: config.region,
    accessKey: config.accessKey.reveal(),
    secretKey: config.secretKey.reveal(),
    pathStyle: true,
    // Keep connections to the object store open: every miss is a HEAD and a GET.
    transportAgent: useSSL ? new HttpsAgent({ keepAlive: true, maxSockets: 64 }) : new HttpAgent({ keepAlive: true, maxSockets: 64 }),
  });
}

/**
 * Assets in an S3-compatible bucket, each at its own key with its headers
 * (Content-Type, Cache-Control) and our metadata (x-amz-meta-cdn-*), so that the object
 * is also directly servable from the bucket.
 *
 * A put streams into a temporary object `.cdn-tmp/<uuid>` (one part of `partSize` in
 * memory at a time: a single PUT below it, a multipart upload above it), hashing on
 * the way; after verification a server-side copy onto the key commits it (S3 replaces
 * an object atomically: readers get the old or the new one), then the temporary object
 * is removed. A failure anywhere before the copy leaves the key untouched.
 *
 * Reads are pinned to the version `stat` saw: If-Match on the S3 ETag, and the GET's
 * x-amz-meta-cdn-sha256 must equal the stat's. A concurrent overwrite makes read()
 * return null and the caller stats again, so headers and bytes always belong together.
 */
export class S3StorageDriver implements StorageDriver {
  readonly kind = 's3' as const;
  private readonly logger = new Logger('S3Storage');

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly partSize: number,
  ) {}

  async init(): Promise<void> {
    try {
      if (!(await this.client.bucketExists(this.bucket))) {
        await this.client.makeBucket(this.bucket);
        this.logger.log(`created bucket ${this.bucket}`);
      }
      await this.removeStaleTempObjects();
    } catch (err) {
      // Object storage may come up after the origin: start anyway, readyz reports it.
      this.logger.warn(`bucket ${this.bucket} not ready at boot: ${describe(err)}`);
    }
  }

  async check(): Promise<void> {
    if (!(await this.client.bucketExists(this.bucket))) {
      throw new Error(`bucket ${this.bucket} does not exist`);
    }
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const tagsHeader = options.tags.join(' ');
    if (tagsHeader.length > MAX_S3_TAGS_LENGTH) {
      throw cdnError('CDN_ERR_HEADER_INVALID', `Surrogate-Key: with S3 storage the tags may take at most ${MAX_S3_TAGS_LENGTH} characters in all`);
    }
    const temp = `${TEMP_PREFIX}${randomUUID()}`;
    let tempWritten = false;
    try {
      const received = await this.uploadToTemp(temp, body, options, () => {
        tempWritten = true;
      });
      options.verify?.(received);

      const previous = await this.stat(key);
      const now = new Date().toISOString();
      const createdAt = previous?.createdAt ?? now;
      const headers: Record<string, string> = { 'Content-Type': options.contentType };
      if (options.cacheControl !== null) {
        headers['Cache-Control'] = options.cacheControl;
      }
      const userMetadata: Record<string, string> = {
        [META_SHA256]: received.sha256,
        [META_CREATED_AT]: createdAt,
        [META_UPDATED_AT]: now,
      };
      if (tagsHeader !== '') {
        userMetadata[META_TAGS] = tagsHeader;
      }
      const copied = await this.storage('failed to store the asset', () =>
        this.client.copyObject(
          new CopySourceOptions({ Bucket: this.bucket, Object: temp }),
          new CopyDestinationOptions({ Bucket: this.bucket, Object: key, MetadataDirective: 'REPLACE', UserMetadata: userMetadata, Headers: headers }),
        ),
      );
      const asset: AssetMetadata = {
        key,
        size: received.size,
        sha256: received.sha256,
        contentType: options.contentType,
        cacheControl: options.cacheControl,
        tags: [...options.tags],
        createdAt,
        updatedAt: now,
        storageVersion: 'etag' in copied && typeof copied.etag === 'string' ? copied.etag : undefined,
      };
      return { asset, previous };
    } finally {
      if (tempWritten) {
        await this.client.removeObject(this.bucket, temp).catch((err: unknown) => {
          this.logger.warn(`failed to remove temporary object ${temp}: ${describe(err)}`);
        });
      }
    }
  }

  async stat(key: string): Promise<AssetMetadata | null> {
    let stat: BucketItemStat;
    try {
      stat = await this.client.statObject(this.bucket, key);
    } catch (err) {
      if (isNotFound(err)) {
        return null;
      }
      throw storageError(err, 'failed to read asset metadata');
    }
    return metadataOf(key, stat);
  }

  async read(metadata: AssetMetadata, range?: ByteRange): Promise<Readable | null> {
    const headers: Record<string, string> = {};
    if (metadata.storageVersion !== undefined) {
      headers['If-Match'] = `"${metadata.storageVersion}"`;
    }
    if (range !== undefined) {
      headers.Range = `bytes=${range.start}-${range.end}`;
    }
    try {
      const response = await this.client.makeRequestAsync({ method: 'GET', bucketName: this.bucket, objectName: metadata.key, headers }, '', [200, 206]);
      // Stores that ignore If-Match (s3rver does) are caught by our own content hash,
      // which every object the origin wrote carries.
      if (response.headers[`x-amz-meta-${META_SHA256}`] !== metadata.sha256) {
        response.destroy();
        return null;
      }
      return response;
    } catch (err) {
      if (isNotFound(err) || (err as { code?: string }).code === 'PreconditionFailed') {
        return null; // overwritten or deleted since stat
      }
      throw storageError(err, 'failed to read the asset');
    }
  }

  async delete(key: string): Promise<AssetMetadata | null> {
    const previous = await this.stat(key);
    if (previous === null) {
      return null;
    }
    await this.storage('failed to delete the asset', () => this.client.removeObject(this.bucket, key));
    return previous;
  }

  /**
   * The bucket lists in key order; each returned key costs one HEAD for our metadata
   * (only as many as the page needs). Pages of 1000 names are asked for so that temp
   * and foreign objects rarely cost a second round trip.
   */
  async list(options: ListOptions): Promise<ListPage> {
    const assets: AssetMetadata[] = [];
    let startAfter = options.after ?? '';
    let continuation = '';
    for (;;) {
      const page = await this.storage('failed to list assets', () =>
        this.client.listObjectsV2Query(this.bucket, options.prefix, continuation, '', 1000, startAfter),
      );
      const names = page.objects
        .map((item) => item.name)
        .filter((name): name is string => name !== undefined && listable(name, options.prefix));
      for (let i = 0; i < names.length; i += LIST_STAT_CONCURRENCY) {
        const batch = names.slice(i, i + LIST_STAT_CONCURRENCY);
        const stats = await Promise.all(batch.map((name) => this.stat(name)));
        for (let j = 0; j < stats.length; j++) {
          const metadata = stats[j];
          if (metadata === null) {
            continue;
          }
          if (assets.length === options.limit) {
            return { assets, more: true };
          }
          assets.push(metadata);
        }
      }
      if (!page.isTruncated) {
        return { assets, more: false };
      }
      continuation = page.nextContinuationToken;
      startAfter = '';
    }
  }

  /**
   * Streams the body into `temp` while hashing and counting it. Parts of `partSize` are
   * the only buffering; the source is read no faster than S3 takes the parts.
   */
  private async uploadToTemp(temp: string, body: Readable, options: PutOptions, onWritten: () => void): Promise<ReceivedContent> {
    const digest = new UploadDigest(options.computeMd5 ?? false);
    let chunks: Buffer[] = [];
    let buffered = 0;
    let uploadId: string | null = null;
    const parts: { part: number; etag: string }[] = [];

    const sendPart = async (): Promise<void> => {
      if (uploadId === null) {
        uploadId = await this.storage('failed to start the upload', () => this.client.initiateNewMultipartUpload(this.bucket, temp, {}));
      }
      const part = parts.length + 1;
      const payload = Buffer.concat(chunks);
      chunks = [];
      buffered = 0;
      const id = uploadId;
      const sent = await this.storage('failed to upload a part', () =>
        this.client.uploadPart({ bucketName: this.bucket, objectName: temp, uploadID: id, partNumber: part, headers: {} }, payload),
      );
      parts.push({ part, etag: sent.etag });
    };

    try {
      try {
        // destroyOnReturn: false keeps the request alive on 413, so it can be drained
        // and the client reads the error instead of a reset connection.
        for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
          digest.update(chunk);
          if (digest.size > options.maxBytes) {
            throw cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${options.maxBytes} bytes`);
          }
          chunks.push(chunk);
          buffered += chunk.length;
          if (buffered >= this.partSize) {
            await sendPart();
          }
        }
      } catch (err) {
        // left unread: the error response closes the connection (replyWithError)
        if (!body.destroyed && !body.readableEnded) {
          body.pause();
        }
        if (err instanceof CdnError) {
          throw err;
        }
        throw cdnError('CDN_ERR_BODY_INVALID', 'the upload was interrupted before its end', { cause: err });
      }

      if (uploadId === null) {
        const payload = Buffer.concat(chunks);
        await this.storage('failed to store the asset', () => this.client.putObject(this.bucket, temp, payload, payload.length));
      } else {
        if (buffered > 0) {
          await sendPart();
        }
        const id: string = uploadId;
        await this.storage('failed to complete the upload', () => this.client.completeMultipartUpload(this.bucket, temp, id, parts));
        uploadId = null;
      }
      onWritten();
      return digest.result();
    } catch (err) {
      if (uploadId !== null) {
        const id: string = uploadId;
        // Without the abort the parts would be kept (and billed) until a lifecycle rule
        // (AbortIncompleteMultipartUpload) removes them.
        await this.client.abortMultipartUpload(this.bucket, temp, id).catch((abortErr: unknown) => {
          this.logger.warn(`failed to abort multipart upload of ${temp}: ${describe(abortErr)}`);
        });
      }
      throw err;
    }
  }

  private async storage<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw storageError(err, what);
    }
  }

  private async removeStaleTempObjects(): Promise<void> {
    const cutoff = Date.now() - STALE_TEMP_MS;
    let continuation = '';
    for (;;) {
      const page = await this.client.listObjectsV2Query(this.bucket, TEMP_PREFIX, continuation, '', 1000, '');
      for (const item of page.objects) {
        if (item.name !== undefined && item.lastModified.getTime() < cutoff) {
          await this.client.removeObject(this.bucket, item.name).catch(() => undefined);
        }
      }
      if (!page.isTruncated) {
        return;
      }
      continuation = page.nextContinuationToken;
    }
  }
}

/** Objects without our metadata were not written by the origin: not assets. */
function metadataOf(key: string, stat: BucketItemStat): AssetMetadata | null {
  const meta = stat.metaData as Record<string, unknown>;
  const sha256 = meta[META_SHA256];
  const createdAt = meta[META_CREATED_AT];
  const updatedAt = meta[META_UPDATED_AT];
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
    return null;
  }
  const tags = typeof meta[META_TAGS] === 'string' ? (meta[META_TAGS] as string).split(' ').filter((t) => t !== '') : [];
  const cacheControl = meta['cache-control'];
  return {
    key,
    size: stat.size,
    sha256,
    contentType: typeof meta['content-type'] === 'string' ? (meta['content-type'] as string) : 'application/octet-stream',
    cacheControl: typeof cacheControl === 'string' && cacheControl !== '' ? cacheControl : null,
    tags,
    createdAt: typeof createdAt === 'string' ? createdAt : stat.lastModified.toISOString(),
    updatedAt: typeof updatedAt === 'string' ? updatedAt : stat.lastModified.toISOString(),
    storageVersion: stat.etag,
  };
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey';
}

function storageError(err: unknown, what: string): CdnError {
  if (err instanceof CdnError) {
    return err;
  }
  // The cause keeps the S3 code and endpoint for the logs; the client sees only `what`.
  return cdnError('CDN_ERR_STORAGE_UNAVAILABLE', what, { cause: err });
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}: ${e.message ?? ''}` : String(e.message ?? err);
}

/** Assets are listed by their keys; the variant reserve only when asked for by its prefix. */
function listable(name: string, prefix: string): boolean {
  return prefix.startsWith(VARIANT_PREFIX) ? name.startsWith(VARIANT_PREFIX) : checkAssetKey(name).ok;
}
