import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, exponentialBuckets, Gauge, Histogram, Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../../contract/metrics';

/** 256 B .. 64 MiB (docs/design-notes.md §1). */
export const SIZE_BUCKETS = exponentialBuckets(256, 4, 10);

/** Error codes of refused image variants -> the reason label. */
const IMAGE_REFUSAL_REASONS: Record<string, string> = {
  CDN_ERR_IMAGE_PARAMS_INVALID: 'params',
  CDN_ERR_IMAGE_TOO_LARGE: 'too_large',
  CDN_ERR_IMAGE_UNSUPPORTED: 'unsupported',
  CDN_ERR_IMAGE_BUSY: 'busy',
  CDN_ERR_IMAGE_TIMEOUT: 'timeout',
};

/** Route label for requests that matched no route (never the raw path: unbounded). */
export const UNMATCHED_ROUTE = 'unmatched';

export type PurgeSource = 'api' | 'asset' | 'revoke';
export type PurgeOutcome = 'published' | 'deduplicated' | 'rate_limited' | 'failed';

/**
 * The origin's Prometheus metrics. Each app owns its Registry (not prom-client's global
 * one), so several apps can live in one process (tests) without name clashes. No label
 * ever holds a key, tag, URL or request id.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  private readonly httpRequests = new Counter({
    name: 'cdn_origin_http_requests_total',
    help: 'HTTP requests answered by the origin, by route template, method and status class.',
    labelNames: ['route', 'method', 'status_class'] as const,
    registers: [this.registry],
  });

  private readonly httpDuration = new Histogram({
    name: 'cdn_origin_http_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, by route template and method.',
    labelNames: ['route', 'method'] as const,
    buckets: [...LATENCY_BUCKETS],
    registers: [this.registry],
  });

  private readonly httpBytesIn = new Counter({
    name: 'cdn_origin_http_request_bytes_total',
    help: 'Request body bytes received (declared Content-Length, or counted for chunked uploads), by route template.',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });

  private readonly httpBytesOut = new Counter({
    name: 'cdn_origin_http_response_bytes_total',
    help: 'Response body bytes sent (Content-Length), by route template.',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });

  private readonly uploadSize = new Histogram({
    name: 'cdn_origin_upload_size_bytes',
    help: 'Size of committed uploads.',
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });

  private readonly storageDuration = new Histogram({
    name: 'cdn_origin_storage_operation_duration_seconds',
    help: 'Storage driver operations, by driver and operation (a put includes receiving the body).',
    labelNames: ['driver', 'operation'] as const,
    buckets: [...LATENCY_BUCKETS],
    registers: [this.registry],
  });

  private readonly storageErrors = new Counter({
    name: 'cdn_origin_storage_errors_total',
    help: 'Storage driver operations that failed because the storage did (not client errors), by driver and operation.',
    labelNames: ['driver', 'operation'] as const,
    registers: [this.registry],
  });

  private readonly purges = new Counter({
    name: 'cdn_origin_purges_total',
    help: 'Purge requests by source (api, asset write) and outcome (published, deduplicated, rate_limited, failed).',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });

  private readonly purgesPublished = new Counter({
    name: 'cdn_origin_purges_published_total',
    help: 'Purge messages appended to the invalidation stream.',
    registers: [this.registry],
  });

  private readonly purgePublishFailures = new Counter({
    name: 'cdn_origin_purge_publish_failures_total',
    help: 'Purge messages that could not be appended to the invalidation stream (Redis unavailable).',
    registers: [this.registry],
  });

  private readonly imageTransforms = new Counter({
    name: 'cdn_origin_image_transforms_total',
    help: 'Image variants made (transforms), by output format.',
    labelNames: ['format'] as const,
    registers: [this.registry],
  });

  private readonly imageTransformDuration = new Histogram({
    name: 'cdn_origin_image_transform_duration_seconds',
    help: 'Time one image transform took (reading the source, decoding, resizing, encoding).',
    buckets: [...LATENCY_BUCKETS],
    registers: [this.registry],
  });

  private readonly imageRefusals = new Counter({
    name: 'cdn_origin_image_refusals_total',
    help: 'Image variant requests refused, by reason (params, too_large, unsupported, busy, timeout, error).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  private readonly imageReserveHits = new Counter({
    name: 'cdn_origin_image_reserve_hits_total',
    help: 'Image variants served from the reserve in the object store (made earlier, for any edge).',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  observeHttp(route: string, method: string, status: number, seconds: number, bytesIn: number, bytesOut: number): void {
    const statusClass = `${Math.floor(status / 100)}xx`;
    this.httpRequests.inc({ route, method, status_class: statusClass });
    this.httpDuration.observe({ route, method }, seconds);
    if (bytesIn > 0) {
      this.httpBytesIn.inc({ route }, bytesIn);
    }
    if (bytesOut > 0) {
      this.httpBytesOut.inc({ route }, bytesOut);
    }
  }

  observeUpload(bytes: number): void {
    this.uploadSize.observe(bytes);
  }

  observeStorage(driver: string, operation: string, seconds: number, failed: boolean): void {
    this.storageDuration.observe({ driver, operation }, seconds);
    if (failed) {
      this.storageErrors.inc({ driver, operation });
    }
  }

  countPurge(source: PurgeSource, outcome: PurgeOutcome): void {
    this.purges.inc({ source, outcome });
    if (outcome === 'published') {
      this.purgesPublished.inc();
    } else if (outcome === 'failed') {
      this.purgePublishFailures.inc();
    }
  }

  observeImageTransform(format: string, seconds: number): void {
    this.imageTransforms.inc({ format });
    this.imageTransformDuration.observe(seconds);
  }

  countImageRefusal(code: string): void {
    this.imageRefusals.inc({ reason: IMAGE_REFUSAL_REASONS[code] ?? 'error' });
  }

  countImageReserveHit(): void {
    this.imageReserveHits.inc();
  }

  /** The transform queue's depth and running transforms, read at each scrape. */
  watchImageQueue(queued: () => number, running: () => number): void {
    new Gauge({ name: 'cdn_origin_image_queue_depth', help: 'Image transforms waiting for a slot.', registers: [this.registry], collect() { this.set(queued()); } });
    new Gauge({ name: 'cdn_origin_image_transforms_running', help: 'Image transforms in progress.', registers: [this.registry], collect() { this.set(running()); } });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
