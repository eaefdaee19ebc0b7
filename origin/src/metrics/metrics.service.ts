import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

export const HTTP_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Route label for requests that matched no route (never the raw path: unbounded). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The origin's Prometheus metrics. Each app owns its Registry (not prom-client's global
 * one), so several apps can live in one process (tests) without name clashes.
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
    buckets: HTTP_DURATION_BUCKETS,
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

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  observeHttp(route: string, method: string, status: number, seconds: number): void {
    const statusClass = `${Math.floor(status / 100)}xx`;
    this.httpRequests.inc({ route, method, status_class: statusClass });
    this.httpDuration.observe({ route, method }, seconds);
  }

  purgePublished(): void {
    this.purgesPublished.inc();
  }

  purgePublishFailed(): void {
    this.purgePublishFailures.inc();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
