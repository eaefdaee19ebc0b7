import { VariantsService, type ImageInfo } from '../images/variants.service';
import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { CdnError, cdnError } from '../../../infra/model/errors';
import { checkTag, parseSurrogateKeyHeader } from '../common/surrogate-keys';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PurgeService, type PurgeActor } from '../purge/purge.service';
import { TagIndexService } from '../tags/tag-index.service';
import { checkAssetKey, MAX_KEY_LENGTH } from '../../contract/asset-key';
import type { UploadRequest } from './asset-requests';
import { cacheControlOf, versionedPath } from './cache-policy';
import { checkDeclaredType } from './content-sniffing';
import { STORAGE_DRIVER, type AssetMetadata, type ReceivedContent, type StorageDriver } from './storage/storage-driver';

/** Body of a successful PUT. */
export interface AssetResponse {
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  /** The strong ETag public delivery sends (quoted sha256). */
  readonly etag: string;
  readonly url: string;
  /** Content-addressed URL, served `public, max-age=31536000, immutable`. */
  readonly versionedUrl: string;
}

/** GET /v1/assets/{key} and listing items. */
export interface AssetDetails extends AssetResponse {
  /** The asset's own policy (null: the per-type default applies). */
  readonly cacheControl: string | null;
  /** What public delivery sends. */
  readonly effectiveCacheControl: string;
  readonly tags: readonly string[];
  readonly createdAt: string;
  readonly updatedAt: string;
  /** For images the origin makes variants of: intrinsic size and a ready srcset (docs/images.md). */
  readonly image?: ImageInfo;
}

export interface AssetList {
  readonly items: readonly AssetDetails[];
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null;
}

export interface PutOutcome {
  /** True when the key did not exist before (201), false for an overwrite (200). */
  readonly created: boolean;
  readonly asset: AssetResponse;
}

const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const MAX_HEADER_VALUE = 1024;
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(?:[ \t]*;[\x20-\x7e]*)?$/;
const PRINTABLE = /^[\x20-\x7e]*$/;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

const listQuerySchema = z.strictObject({
  prefix: z
    .string({ error: 'must be given once' })
    .max(MAX_KEY_LENGTH, `must be at most ${MAX_KEY_LENGTH} characters`)
    .regex(/^[A-Za-z0-9/_.-]*$/, 'may hold only key characters (A-Z a-z 0-9 / _ . -)')
    .optional(),
  tag: z.string({ error: 'must be given once' }).optional(),
  cursor: z.string({ error: 'must be given once' }).max(2048, 'is too long').optional(),
  limit: z
    .string({ error: 'must be given once' })
    .regex(/^[0-9]{1,4}$/, `must be an integer from 1 to ${MAX_LIST_LIMIT}`)
    .transform(Number)
    .pipe(z.number().min(1, `must be an integer from 1 to ${MAX_LIST_LIMIT}`).max(MAX_LIST_LIMIT, `must be an integer from 1 to ${MAX_LIST_LIMIT}`))
    .optional(),
});

/**
 * The admin side of assets: validate, store (verified), index tags, then purge. Every
 * write publishes a purge of the key's path (so a negative-cached 404 or the old bytes
 * go away) and, for an overwrite or delete, of the tags the asset had before; a delete
 * also purges the versioned URL it had.
 *
 * Order: the storage commit happens first, the tag index and purge second. If Redis is
 * away after the commit, the client gets 503 CDN_ERR_BUS_UNAVAILABLE saying so: the
 * change is stored but edges may keep the old copy until a purge succeeds (repeat the
 * request, or POST /v1/purge).
 */
@Injectable()
export class AssetsService {
  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
    private readonly purges: PurgeService,
    private readonly tagIndex: TagIndexService,
    private readonly variants: VariantsService,
  ) {}

  async put(rawKey: string | null, upload: UploadRequest): Promise<PutOutcome> {
    const key = requireValidKey(rawKey);
    const contentType = this.contentTypeOf(upload.contentType);
    const cacheControl = this.cacheControlOf(upload.cacheControl);
    const tags = this.tagsOf(upload.surrogateKey);
    const expected = expectedChecksums(upload);

    const declared = upload.contentLength === undefined ? NaN : Number(upload.contentLength);
    if (Number.isFinite(declared) && declared > this.config.maxUploadBytes) {
      throw cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${this.config.maxUploadBytes} bytes`);
    }

    const { asset, previous } = await this.storage.put(key, upload.body, {
      contentType,
      cacheControl,
      tags,
      maxBytes: this.config.maxUploadBytes,
      computeMd5: expected.md5 !== undefined,
      verify: (received) => verifyUpload(received, expected, contentType),
    });
    await this.afterWrite(key, previous, asset, 'stored', upload.actor);
    if (previous !== null && previous.sha256 !== asset.sha256) {
      await this.variants.dropVariants(previous.sha256);
    }
    return { created: previous === null, asset: this.toResponse(asset) };
  }

  async remove(rawKey: string | null, actor: PurgeActor): Promise<void> {
    const key = requireValidKey(rawKey);
    const previous = await this.storage.delete(key);
    if (previous === null) {
      throw cdnError('CDN_ERR_ASSET_NOT_FOUND', key);
    }
    await this.afterWrite(key, previous, null, 'deleted', actor);
    await this.variants.dropVariants(previous.sha256);
  }

  async details(rawKey: string | null): Promise<AssetDetails> {
    const key = requireValidKey(rawKey);
    const metadata = await this.storage.stat(key);
    if (metadata === null) {
      throw cdnError('CDN_ERR_ASSET_NOT_FOUND', key);
    }
    const image = await this.variants.imageInfo(metadata, `${this.config.publicBaseUrl}/${metadata.key}`);
    return { ...this.toDetails(metadata), ...(image ? { image } : {}) };
  }

  /** GET /v1/assets?prefix=&tag=&cursor=&limit= (prefix and tag exclude each other). */
  async list(query: unknown): Promise<AssetList> {
    const parsed = listQuerySchema.safeParse(query ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      if (issue.code === 'unrecognized_keys') {
        throw cdnError('CDN_ERR_QUERY_INVALID', `unknown parameter ${JSON.stringify(issue.keys[0])} (expected prefix, tag, cursor, limit)`);
      }
      throw cdnError('CDN_ERR_QUERY_INVALID', `${String(issue.path[0] ?? 'query')} ${issue.message}`);
    }
    const { prefix = '', tag, cursor, limit = DEFAULT_LIST_LIMIT } = parsed.data;
    const after = cursor === undefined ? null : decodeCursor(cursor);

    if (tag !== undefined) {
      if (prefix !== '') {
        throw cdnError('CDN_ERR_QUERY_INVALID', 'prefix and tag cannot be combined');
      }
      const reason = checkTag(tag);
      if (reason !== undefined) {
        throw cdnError('CDN_ERR_QUERY_INVALID', `tag: ${reason}`);
      }
      const page = await this.tagIndex.keysWithTag(tag, after, limit);
      const found = await Promise.all(page.keys.map((key) => this.storage.stat(key)));
      // The index may lag a concurrent delete: what storage no longer has is left out.
      const items = found.filter((m): m is AssetMetadata => m !== null).map((m) => this.toDetails(m));
      const last = page.keys[page.keys.length - 1];
      return { items, nextCursor: page.more && last !== undefined ? encodeCursor(last) : null };
    }

    const page = await this.storage.list({ prefix, after, limit });
    const last = page.assets[page.assets.length - 1];
    return { items: page.assets.map((m) => this.toDetails(m)), nextCursor: page.more && last !== undefined ? encodeCursor(last.key) : null };
  }

  private async afterWrite(key: string, previous: AssetMetadata | null, current: AssetMetadata | null, done: string, actor: PurgeActor): Promise<void> {
    const urls = [`/${key}`];
    if (current === null && previous !== null) {
      urls.push(versionedPath(previous));
    }
    try {
      await this.tagIndex.update(key, previous?.tags ?? [], current?.tags ?? []);
      await this.purges.publish({ urls, prefixes: [], tags: previous?.tags ?? [] }, 'asset', actor);
    } catch (err) {
      if (err instanceof CdnError && err.code === 'CDN_ERR_BUS_UNAVAILABLE') {
        throw cdnError(
          'CDN_ERR_BUS_UNAVAILABLE',
          `the asset was ${done} but its purge was not published; edges may serve the old copy until a purge succeeds (retry, or POST /v1/purge)`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  private toResponse(asset: AssetMetadata): AssetResponse {
    return {
      key: asset.key,
      size: asset.size,
      sha256: asset.sha256,
      contentType: asset.contentType,
      etag: `"${asset.sha256}"`,
      url: `${this.config.publicBaseUrl}/${asset.key}`,
      versionedUrl: `${this.config.publicBaseUrl}${versionedPath(asset)}`,
    };
  }

  private toDetails(asset: AssetMetadata): AssetDetails {
    return {
      ...this.toResponse(asset),
      cacheControl: asset.cacheControl,
      effectiveCacheControl: cacheControlOf(asset, this.config),
      tags: asset.tags,
      createdAt: asset.createdAt,
      updatedAt: asset.updatedAt,
    };
  }

  private contentTypeOf(value: string | undefined): string {
    if (value === undefined || value.trim() === '') {
      return DEFAULT_CONTENT_TYPE;
    }
    const trimmed = value.trim();
    if (trimmed.length > MAX_HEADER_VALUE || !MEDIA_TYPE.test(trimmed)) {
      throw cdnError('CDN_ERR_HEADER_INVALID', 'Content-Type must be a media type such as image/png');
    }
    return trimmed;
  }

  private cacheControlOf(value: string | undefined): string | null {
    if (value === undefined || value.trim() === '') {
      return null;
    }
    const trimmed = value.trim();
    if (trimmed.length > MAX_HEADER_VALUE || !PRINTABLE.test(trimmed)) {
      throw cdnError('CDN_ERR_HEADER_INVALID', `Cache-Control must be printable ASCII, at most ${MAX_HEADER_VALUE} characters`);
    }
    return trimmed;
  }

  private tagsOf(value: string | undefined): string[] {
    if (value === undefined) {
      return [];
    }
    const parsed = parseSurrogateKeyHeader(value);
    if ('reason' in parsed) {
      throw cdnError('CDN_ERR_HEADER_INVALID', `Surrogate-Key: ${parsed.reason}`);
    }
    return parsed.tags;
  }
}

interface ExpectedChecksums {
  /** Lower-case hex. */
  readonly sha256?: string;
  /** Base64. */
  readonly md5?: string;
}

/** Checks the checksum headers' syntax before any byte is read. */
function expectedChecksums(upload: UploadRequest): ExpectedChecksums {
  let sha256: string | undefined;
  if (upload.contentSha256 !== undefined) {
    const value = upload.contentSha256.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(value)) {
      throw cdnError('CDN_ERR_HEADER_INVALID', 'Content-SHA256 must be 64 hexadecimal digits');
    }
    sha256 = value.toLowerCase();
  }
  if (upload.amzChecksumSha256 !== undefined) {
    const bytes = strictBase64(upload.amzChecksumSha256.trim(), 32);
    if (bytes === null) {
      throw cdnError('CDN_ERR_HEADER_INVALID', 'x-amz-checksum-sha256 must be the base64 of 32 bytes');
    }
    const hex = bytes.toString('hex');
    if (sha256 !== undefined && sha256 !== hex) {
      throw cdnError('CDN_ERR_HEADER_INVALID', 'Content-SHA256 and x-amz-checksum-sha256 disagree');
    }
    sha256 = hex;
  }
  let md5: string | undefined;
  if (upload.contentMd5 !== undefined) {
    const bytes = strictBase64(upload.contentMd5.trim(), 16);
    if (bytes === null) {
      throw cdnError('CDN_ERR_HEADER_INVALID', 'Content-MD5 must be the base64 of 16 bytes (RFC 1864)');
    }
    md5 = bytes.toString('base64');
  }
  return { sha256, md5 };
}

function strictBase64(value: string, length: number): Buffer | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) {
    return null;
  }
  const bytes = Buffer.from(value, 'base64');
  return bytes.length === length && bytes.toString('base64') === value ? bytes : null;
}

/** Runs inside the driver after the last byte, before the commit: a throw stores nothing. */
function verifyUpload(received: ReceivedContent, expected: ExpectedChecksums, contentType: string): void {
  if (expected.sha256 !== undefined && expected.sha256 !== received.sha256) {
    throw cdnError('CDN_ERR_CHECKSUM_MISMATCH', `sha256 of the body is ${received.sha256}, the request said ${expected.sha256}`);
  }
  if (expected.md5 !== undefined && expected.md5 !== received.md5) {
    throw cdnError('CDN_ERR_CHECKSUM_MISMATCH', `MD5 of the body is ${received.md5 ?? '?'}, Content-MD5 said ${expected.md5}`);
  }
  const reason = checkDeclaredType(contentType, received.head);
  if (reason !== undefined) {
    throw cdnError('CDN_ERR_CONTENT_TYPE_MISMATCH', reason);
  }
}

function requireValidKey(rawKey: string | null): string {
  if (rawKey === null) {
    throw cdnError('CDN_ERR_KEY_INVALID', 'the request URL is not of the form /v1/assets/{key}');
  }
  const check = checkAssetKey(rawKey);
  if (!check.ok) {
    throw cdnError('CDN_ERR_KEY_INVALID', check.reason);
  }
  return check.key;
}

/** Cursors are opaque to clients: base64url of the last key of the page. */
function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (encodeCursor(key) !== cursor || !checkAssetKey(key).ok) {
    throw cdnError('CDN_ERR_QUERY_INVALID', 'cursor is not one this API returned');
  }
  return key;
}
