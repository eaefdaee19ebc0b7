import { Inject, Injectable } from '@nestjs/common';
import { CdnError, cdnError } from '../../../infra/errors';
import { parseSurrogateKeyHeader } from '../common/surrogate-keys';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PurgeService } from '../purge/purge.service';
import { checkAssetKey } from './asset-key';
import { STORAGE_DRIVER, type AssetMetadata, type StorageDriver } from './storage/storage-driver';
import type { UploadRequest } from './asset-requests';

/** Body of a successful PUT. */
export interface AssetResponse {
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  readonly url: string;
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

/**
 * The admin side of assets: validate, store, then purge. Every write publishes a purge of
 * the key's path (so a negative-cached 404 or the old bytes go away) and, for an
 * overwrite or delete, of the tags the asset had before.
 *
 * Order: the storage commit happens first, the purge second. If Redis is away after the
 * commit, the client gets 503 CDN_ERR_BUS_UNAVAILABLE saying so: the change is stored but
 * edges may keep the old copy until a purge succeeds (repeat the request, or POST
 * /v1/purge).
 */
@Injectable()
export class AssetsService {
  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
    private readonly purges: PurgeService,
  ) {}

  async put(rawKey: string | null, upload: UploadRequest): Promise<PutOutcome> {
    const key = requireValidKey(rawKey);
    const contentType = this.contentTypeOf(upload.contentType);
    const cacheControl = this.cacheControlOf(upload.cacheControl);
    const tags = this.tagsOf(upload.surrogateKey);

    const declared = upload.contentLength === undefined ? NaN : Number(upload.contentLength);
    if (Number.isFinite(declared) && declared > this.config.maxUploadBytes) {
      throw cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${this.config.maxUploadBytes} bytes`);
    }

    const { asset, previous } = await this.storage.put(key, upload.body, {
      contentType,
      cacheControl,
      tags,
      maxBytes: this.config.maxUploadBytes,
    });
    await this.purgeAfterWrite(key, previous, 'stored');
    return { created: previous === null, asset: this.toResponse(asset) };
  }

  async remove(rawKey: string | null): Promise<void> {
    const key = requireValidKey(rawKey);
    const previous = await this.storage.delete(key);
    if (previous === null) {
      throw cdnError('CDN_ERR_ASSET_NOT_FOUND', key);
    }
    await this.purgeAfterWrite(key, previous, 'deleted');
  }

  private async purgeAfterWrite(key: string, previous: AssetMetadata | null, done: string): Promise<void> {
    try {
      await this.purges.publish({ urls: [`/${key}`], prefixes: [], tags: previous?.tags ?? [] });
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
      url: `${this.config.publicBaseUrl}/${asset.key}`,
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
