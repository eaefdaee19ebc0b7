import { Inject, Injectable } from '@nestjs/common';
import type { Readable } from 'node:stream';
import { cdnError, Errors } from '../../../infra/model/errors';
import { errorBody, type ErrorBody } from '../common/error-response';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { checkAssetKey } from '../../contract/asset-key';
import type { ReadRequest } from './asset-requests';
import { NOT_FOUND_CACHE_CONTROL } from '../../contract/cache-policy';
import { needsSandbox, SANDBOX_CSP } from '../../contract/sandbox';
import { cacheControlOf, IMMUTABLE_CACHE_CONTROL, parseVersionedKey, VERSIONED_PREFIX } from './cache-policy';
import { decideRange, ifRangeAllows, isNotModified, type Validators } from './http-validators';
import { STORAGE_DRIVER, type AssetMetadata, type StorageDriver } from './storage/storage-driver';
import { parseImageQuery, type ImageQuery } from '../images/image-request';
import { VariantsService } from '../images/variants.service';
import { MetricsService } from '../metrics/metrics.service';

/** A response to send: the controller copies it onto the reply as is. */
export interface Delivery {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body?: Readable | Buffer | ErrorBody;
}

/** A read that races overwrites gives up after this many fresh stats (then 503). */
const MAX_READ_ATTEMPTS = 3;

/**
 * The public side of assets: GET and HEAD /{key} and the versioned
 * /_v/{sha256}/{key}, with validators, 304s and single byte ranges.
 */
@Injectable()
export class DeliveryService {
  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
    private readonly variants: VariantsService,
    private readonly metrics: MetricsService,
  ) {}

  async deliver(rawKey: string | null, request: ReadRequest): Promise<Delivery> {
    if (rawKey === null || rawKey === '') {
      throw cdnError('CDN_ERR_ROUTE_NOT_FOUND');
    }
    let key = rawKey;
    let version: string | null = null;
    if (rawKey.startsWith(VERSIONED_PREFIX)) {
      const versioned = parseVersionedKey(rawKey);
      if (versioned === null) {
        throw cdnError('CDN_ERR_KEY_INVALID', 'a versioned URL is /_v/<sha256: 64 lower-case hex digits>/<key>');
      }
      key = versioned.key;
      version = versioned.sha256;
    }
    const check = checkAssetKey(key);
    if (!check.ok) {
      // /v1/..., /healthz/... are the origin's, not asset paths.
      throw check.reserved && version === null ? cdnError('CDN_ERR_ROUTE_NOT_FOUND') : cdnError('CDN_ERR_KEY_INVALID', check.reason);
    }

    const image = this.imageQueryOf(request);

    for (let attempt = 1; attempt <= MAX_READ_ATTEMPTS; attempt++) {
      const metadata = await this.storage.stat(key);
      // A versioned URL names bytes: once the key holds other bytes, it is gone here
      // (edges keep serving what they cached, which is still those bytes).
      if (metadata === null || (version !== null && metadata.sha256 !== version)) {
        return notFound(rawKey);
      }
      const headers = this.assetHeaders(metadata, version !== null);
      if (image !== null && this.variants.transforms(metadata)) {
        return this.deliverVariant(metadata, image, headers, request);
      }
      const validators: Validators = { etag: headers.etag, lastModifiedMs: Date.parse(metadata.updatedAt) };
      if (isNotModified(validators, request.ifNoneMatch, request.ifModifiedSince)) {
        return notModified(headers);
      }
      if (request.method === 'HEAD') {
        return { status: 200, headers };
      }
      const range = ifRangeAllows(validators, request.ifRange) ? decideRange(request.range, metadata.size) : { kind: 'full' as const };
      if (range.kind === 'unsatisfiable') {
        throw cdnError('CDN_ERR_RANGE_NOT_SATISFIABLE', `the asset has ${metadata.size} bytes`, {
          details: { contentRange: `bytes */${metadata.size}` },
        });
      }
      const partial = range.kind === 'partial';
      // read() is pinned to this version; null means it was overwritten since stat.
      const body = await this.storage.read(metadata, partial ? { start: range.start, end: range.end } : undefined);
      if (body === null) {
        continue;
      }
      if (!partial) {
        return { status: 200, headers, body };
      }
      return {
        status: 206,
        headers: {
          ...headers,
          'content-length': String(range.end - range.start + 1),
          'content-range': `bytes ${range.start}-${range.end}/${metadata.size}`,
        },
        body,
      };
    }
    throw cdnError('CDN_ERR_STORAGE_UNAVAILABLE', 'the asset kept changing while it was read; retry');
  }

  /** The request's image parameters, or null for the original bytes (their errors are counted as refusals). */
  private imageQueryOf(request: ReadRequest): ImageQuery | null {
    if (!this.config.images.enabled || request.query === '') return null;
    try {
      return parseImageQuery(request.query, this.config.images.defaultQuality);
    } catch (err) {
      this.metrics.countImageRefusal('CDN_ERR_IMAGE_PARAMS_INVALID');
      throw err;
    }
  }

  /**
   * An image variant: the source's caching headers and tags, its own ETag and type,
   * Vary: Accept when the format follows Accept. Whole responses only (a Range is
   * ignored, RFC 9110 §14.2 allows it; the edge cuts ranges from what it stores).
   */
  private async deliverVariant(metadata: AssetMetadata, image: ImageQuery, assetHeaders: Record<string, string>, request: ReadRequest): Promise<Delivery> {
    const variant = this.variants.describe(metadata, image, request.accept);
    const { 'content-type': _type, 'content-length': _length, 'accept-ranges': _ranges, 'content-security-policy': _csp, ...kept } = assetHeaders;
    const headers: Record<string, string> = { ...kept, etag: variant.etag, ...(variant.varies ? { vary: 'Accept' } : {}) };
    if (isNotModified({ etag: variant.etag, lastModifiedMs: Date.parse(metadata.updatedAt) }, request.ifNoneMatch, request.ifModifiedSince)) {
      return { status: 304, headers };
    }
    const made = await this.variants.variant(metadata, image, variant.accepts, variant.name);
    const full = { ...headers, 'content-type': made.contentType, 'content-length': String(made.size) };
    if (request.method === 'HEAD') {
      if (!Buffer.isBuffer(made.body)) made.body.destroy();
      return { status: 200, headers: full };
    }
    return { status: 200, headers: full, body: made.body };
  }

  private assetHeaders(metadata: AssetMetadata, versioned: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': metadata.contentType,
      'content-length': String(metadata.size),
      etag: `"${metadata.sha256}"`,
      'last-modified': new Date(metadata.updatedAt).toUTCString(),
      'cache-control': versioned ? IMMUTABLE_CACHE_CONTROL : cacheControlOf(metadata, this.config),
      'accept-ranges': 'bytes',
      'x-content-type-options': 'nosniff',
    };
    if (metadata.tags.length > 0) {
      headers['surrogate-key'] = metadata.tags.join(' ');
    }
    // SVG and XML opened directly must not run scripts
    if (needsSandbox(metadata.contentType)) {
      headers['content-security-policy'] = SANDBOX_CSP;
    }
    return headers;
  }
}

function notFound(key: string): Delivery {
  return {
    status: 404,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': NOT_FOUND_CACHE_CONTROL,
    },
    body: errorBody(Errors.CDN_ERR_ASSET_NOT_FOUND, key),
  };
}

/** A 304 carries the validators and caching headers, not the representation's. */
function notModified(headers: Record<string, string>): Delivery {
  const { 'content-type': _type, 'content-length': _length, 'content-security-policy': _csp, ...rest } = headers;
  return { status: 304, headers: rest };
}
