import { Inject, Injectable } from '@nestjs/common';
import { Readable } from 'node:stream';
import { cdnError, CdnError } from '../../../infra/model/errors';
import { VARIANT_PREFIX } from '../../contract/images';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PINO, type OriginLog } from '../logging/origin-logger';
import { MetricsService } from '../metrics/metrics.service';
import { STORAGE_DRIVER, type AssetMetadata, type StorageDriver } from '../assets/storage/storage-driver';
import { acceptsOf, variantEtag, variantName, type ImageQuery } from './image-request';
import { probeImage, transformImage, type Accepts, type TransformLimits } from './transform';
import { TransformQueue } from './transform-queue';

/** A variant's bytes: from the reserve (a stream) or just made (a buffer). */
export interface VariantBody {
  readonly contentType: string;
  readonly size: number;
  readonly body: Readable | Buffer;
}

/** An image's intrinsic size and a srcset of its variants at the configured widths. */
export interface ImageInfo {
  readonly width: number;
  readonly height: number;
  /** `<url>?w=256 256w, <url>?w=640 640w, ...`: no width above the image's own (variants are never enlarged). */
  readonly srcset: string;
  readonly widths: readonly number[];
}

/** Bytes read to learn an image's size: its header (JPEG EXIF can push the frame header past 64 KiB). */
const PROBE_BYTES = 1024 * 1024;
const INFO_CACHE_SIZE = 10000;

/** Source types libvips reads here; SVG only when the spec allows it (images.allowSvg). */
const RASTER_TYPES: ReadonlySet<string> = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/gif', 'image/tiff', 'image/heic', 'image/heif']);

/**
 * Image variants of stored assets (docs/images.md). A variant is made once for the
 * fleet: the first request transforms the source (in a bounded queue) and keeps the
 * result in the object store under `_variants/<source sha256>/<variant name>` (the
 * cache reserve); any later miss, from any edge in any region, reads it from there.
 * Concurrent misses for one variant share one transform. Overwriting or deleting the
 * source drops its variants (dropVariants) after the edges were purged.
 */
@Injectable()
export class VariantsService {
  private readonly queue: TransformQueue;
  private readonly limits: TransformLimits;
  private readonly making = new Map<string, Promise<VariantBody>>();
  /** sha256 -> intrinsic size (insertion order: the oldest is dropped first). */
  private readonly sizes = new Map<string, { width: number; height: number }>();

  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(STORAGE_DRIVER) private readonly storage: StorageDriver,
    private readonly metrics: MetricsService,
    @Inject(PINO) private readonly log: OriginLog,
  ) {
    const images = config.images;
    this.queue = new TransformQueue({ concurrency: images.concurrency, maxQueued: images.queue, retryAfterSeconds: 1 });
    this.limits = { maxInputPixels: images.maxInputPixels, maxOutputBytes: images.maxOutputBytes, timeoutSeconds: images.timeoutSeconds, allowSvg: images.allowSvg };
    metrics.watchImageQueue(() => this.queue.queued, () => this.queue.running);
  }

  /** Whether variants of `metadata` are made here (else its original bytes are served). */
  transforms(metadata: AssetMetadata): boolean {
    if (!this.config.images.enabled) return false;
    const essence = metadata.contentType.split(';')[0].trim().toLowerCase();
    return RASTER_TYPES.has(essence) || (essence === 'image/svg+xml' && this.config.images.allowSvg);
  }

  /** The variant's name, ETag and whether it varies by Accept: what a 304 needs, with no transform. */
  describe(metadata: AssetMetadata, query: ImageQuery, accept: string | undefined): { name: string; etag: string; accepts: Accepts; varies: boolean } {
    const accepts = acceptsOf(accept);
    const name = variantName(query, accepts);
    return { name, etag: variantEtag(metadata.sha256, name), accepts, varies: query.format === 'auto' };
  }

  /** The variant's bytes: from the reserve, else made now (and kept there). */
  async variant(metadata: AssetMetadata, query: ImageQuery, accepts: Accepts, name: string): Promise<VariantBody> {
    const reserveKey = `${VARIANT_PREFIX}${metadata.sha256}/${name}`;
    const kept = await this.storage.stat(reserveKey);
    if (kept !== null) {
      const body = await this.storage.read(kept);
      if (body !== null) {
        this.metrics.countImageReserveHit();
        return { contentType: kept.contentType, size: kept.size, body };
      }
    }
    let pending = this.making.get(reserveKey);
    if (pending === undefined) {
      const made = this.make(metadata, query, accepts, reserveKey);
      pending = made.then((m) => m.variant);
      this.making.set(reserveKey, pending);
      // Answered as soon as it is made; the entry stays until the variant is in the
      // reserve, so a request arriving meanwhile shares this transform.
      made.then((m) => m.kept, () => undefined).finally(() => this.making.delete(reserveKey));
    }
    return pending;
  }

  /** Intrinsic size and srcset of an image asset, or undefined for anything else (or an image that cannot be read). */
  async imageInfo(metadata: AssetMetadata, url: string): Promise<ImageInfo | undefined> {
    if (!this.transforms(metadata)) return undefined;
    let size = this.sizes.get(metadata.sha256);
    if (size === undefined) {
      try {
        const end = Math.min(metadata.size, PROBE_BYTES) - 1;
        const body = end < 0 ? null : await this.storage.read(metadata, end === metadata.size - 1 ? undefined : { start: 0, end });
        if (body === null) return undefined;
        const chunks: Buffer[] = [];
        for await (const chunk of body) chunks.push(chunk as Buffer);
        const info = await probeImage(Buffer.concat(chunks), { ...this.limits, maxInputPixels: Number.MAX_SAFE_INTEGER });
        size = { width: info.width, height: info.height };
      } catch {
        return undefined;
      }
      if (this.sizes.size >= INFO_CACHE_SIZE) this.sizes.delete(this.sizes.keys().next().value!);
      this.sizes.set(metadata.sha256, size);
    }
    const configured = this.config.images.widths;
    const below = configured.filter((w) => w < size.width);
    // the first configured width at or above the image's own gives the whole image
    const covering = configured.find((w) => w >= size.width);
    const widths = covering === undefined ? below : [...below, covering];
    const srcset = widths.map((w) => `${url}?w=${w} ${Math.min(w, size.width)}w`).join(', ');
    return { width: size.width, height: size.height, srcset, widths };
  }

  /** Drops the reserve's variants of a source's bytes (they can never be asked for again). */
  async dropVariants(sha256: string): Promise<void> {
    const prefix = `${VARIANT_PREFIX}${sha256}/`;
    try {
      for (let after: string | null = null; ; ) {
        const page = await this.storage.list({ prefix, after, limit: 1000 });
        await Promise.all(page.assets.map((a) => this.storage.delete(a.key)));
        if (!page.more || page.assets.length === 0) break;
        after = page.assets[page.assets.length - 1].key;
      }
    } catch (err) {
      // Only space is lost: a variant is named by its source's sha256, never served for other bytes.
      this.log.warn({ err, sha256 }, 'image variants of replaced bytes could not be dropped from the reserve');
    }
  }

  /** Transforms in a queue slot; the reserve write (`kept`) happens after the slot is freed and the variant answered. */
  private async make(metadata: AssetMetadata, query: ImageQuery, accepts: Accepts, reserveKey: string): Promise<{ variant: VariantBody; kept: Promise<void> }> {
    try {
      const out = await this.queue.run(async () => {
        const input = await this.readSource(metadata);
        const started = process.hrtime.bigint();
        const transformed = await transformImage(input, { ...query, accepts }, this.limits);
        this.metrics.observeImageTransform(transformed.format, Number(process.hrtime.bigint() - started) / 1e9);
        return transformed;
      });
      return {
        variant: { contentType: out.contentType, size: out.data.length, body: out.data },
        kept: this.keep(reserveKey, out.data, out.contentType),
      };
    } catch (err) {
      this.metrics.countImageRefusal(err instanceof CdnError ? err.code : 'CDN_ERR_INTERNAL');
      throw err;
    }
  }

  /** The source as a local file's path when the store has one (libvips reads it), else its bytes. */
  private async readSource(metadata: AssetMetadata): Promise<Buffer | string> {
    if (metadata.size > this.config.images.maxInputBytes) {
      throw cdnError('CDN_ERR_IMAGE_TOO_LARGE', `the source has ${metadata.size} bytes; at most ${this.config.images.maxInputBytes} are transformed`);
    }
    const local = this.storage.localPath ? await this.storage.localPath(metadata) : null;
    if (local !== null) return local;
    const body = await this.storage.read(metadata);
    if (body === null) {
      throw cdnError('CDN_ERR_STORAGE_UNAVAILABLE', 'the source changed while it was read; retry');
    }
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Keeps a variant in the reserve; failing only costs a transform later. */
  private async keep(reserveKey: string, data: Buffer, contentType: string): Promise<void> {
    try {
      await this.storage.put(reserveKey, Readable.from([data]), { contentType, cacheControl: null, tags: [], maxBytes: data.length });
    } catch (err) {
      this.log.warn({ err, reserveKey }, 'an image variant could not be kept in the reserve');
    }
  }
}
