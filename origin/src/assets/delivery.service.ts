import { Inject, Injectable } from '@nestjs/common';
import type { Readable } from 'node:stream';
import { cdnError, Errors } from '../../../infra/errors';
import { errorBody, type ErrorBody } from '../common/error-response';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { checkAssetKey } from './asset-key';
import { STORAGE_DRIVER, type AssetMetadata, type StorageDriver } from './storage/storage-driver';
import type { ReadRequest } from './asset-requests';

/** A response to send: the controller copies it onto the reply as is. */
export interface Delivery {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body?: Readable | ErrorBody;
}

/**
 * Short negative caching for unknown keys: safe because creating a key publishes a
 * purge of its path, so an edge drops its cached 404 as soon as the asset exists.
 */
export const NOT_FOUND_CACHE_CONTROL = 'public, max-age=5';

/** The public side of assets: GET and HEAD /{key}, with validators and 304s. */
@Injectable()
export class DeliveryService {
  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
  ) {}

  async deliver(rawKey: string | null, request: ReadRequest): Promise<Delivery> {
    if (rawKey === null || rawKey === '') {
      throw cdnError('CDN_ERR_ROUTE_NOT_FOUND');
    }
    const check = checkAssetKey(rawKey);
    if (!check.ok) {
      // /v1/..., /healthz/... are the origin's, not asset paths.
      throw check.reserved ? cdnError('CDN_ERR_ROUTE_NOT_FOUND') : cdnError('CDN_ERR_KEY_INVALID', check.reason);
    }
    const key = check.key;

    if (request.method === 'HEAD') {
      const metadata = await this.storage.stat(key);
      if (metadata === null) {
        return this.notFound(key);
      }
      return isNotModified(metadata, request) ? notModified(this.assetHeaders(metadata)) : { status: 200, headers: this.assetHeaders(metadata) };
    }

    // open() reads the metadata and opens the blob it names, so headers and bytes
    // always belong to the same version of the asset.
    const opened = await this.storage.open(key);
    if (opened === null) {
      return this.notFound(key);
    }
    const headers = this.assetHeaders(opened.metadata);
    if (isNotModified(opened.metadata, request)) {
      opened.body.destroy();
      return notModified(headers);
    }
    return { status: 200, headers, body: opened.body };
  }

  private assetHeaders(metadata: AssetMetadata): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': metadata.contentType,
      'content-length': String(metadata.size),
      etag: `"${metadata.sha256}"`,
      'last-modified': new Date(metadata.updatedAt).toUTCString(),
      'cache-control': metadata.cacheControl ?? this.config.defaultCacheControl,
      'accept-ranges': 'none',
      'x-content-type-options': 'nosniff',
    };
    if (metadata.tags.length > 0) {
      headers['surrogate-key'] = metadata.tags.join(' ');
    }
    return headers;
  }

  private notFound(key: string): Delivery {
    return {
      status: 404,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': NOT_FOUND_CACHE_CONTROL,
      },
      body: errorBody(Errors.CDN_ERR_ASSET_NOT_FOUND, key),
    };
  }
}

/** A 304 carries the validators and caching headers, not the representation's. */
function notModified(headers: Record<string, string>): Delivery {
  const { 'content-type': _type, 'content-length': _length, ...rest } = headers;
  return { status: 304, headers: rest };
}

/** RFC 9110 13.1.2 / 13.1.3: If-None-Match (weak comparison) wins over If-Modified-Since. */
function isNotModified(metadata: AssetMetadata, request: ReadRequest): boolean {
  if (request.ifNoneMatch !== undefined) {
    const candidates = request.ifNoneMatch.split(',').map((tag) => tag.trim());
    return candidates.some((tag) => tag === '*' || tag.replace(/^W\//, '') === `"${metadata.sha256}"`);
  }
  if (request.ifModifiedSince !== undefined) {
    const since = Date.parse(request.ifModifiedSince);
    const modified = Math.floor(Date.parse(metadata.updatedAt) / 1000) * 1000;
    return Number.isFinite(since) && modified <= since;
  }
  return false;
}
