/**
 * Prometheus recording and alert rules of the CDN (issue #7), as data rendered to
 * the rule files Prometheus loads (`rule_files` in prometheus.yml). Every expression
 * uses only the metrics the edge, balancer and origin export (README: Edge, Balancer,
 * Origin API); `promtool check rules` checks the rendered files in tests.
 *
 * Naming follows prometheus.io/docs/practices/rules: `level:metric:operations`.
 * "Hit" means served from the edge's cache (nginx $upstream_cache_status HIT, STALE,
 * UPDATING or REVALIDATED); the origin's delivery traffic is GET/HEAD on its public
 * routes (`/*`, `/_v/*`), not the API, health or metrics routes.
 */
import type { RenderedFile } from '../infra/model/rendered-file';

export interface RecordingRule {
  record: string;
  expr: string;
  labels?: Record<string, string>;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: 'critical' | 'warning' | 'info' } & Record<string, string>;
  annotations: { summary: string; description: string } & Record<string, string>;
}

export interface RuleGroup<R> {
  name: string;
  interval?: string;
  rules: R[];
}

/** Cache statuses counted as served from cache. */
export const HIT_STATUSES = 'HIT|STALE|UPDATING|REVALIDATED';
/** The origin's public delivery traffic (what the edges fetch), by route template. */
export const ORIGIN_DELIVERY = 'route=~"/\\\\*|/_v/.*", method=~"GET|HEAD"';

const hitRatio = (by: string, window: string, metric: string) =>
  `sum by (${by}) (rate(${metric}{cache_status=~"${HIT_STATUSES}"}[${window}]))\n/\nsum by (${by}) (rate(${metric}[${window}])) > -1`;

/** The balancer's certificate expiry gauge (balancer/lua/cdn/balancer/certificates.lua). */
export const TLS_NOT_AFTER = 'cdn_tls_certificate_not_after_seconds';
export const TLS_FILE_READABLE = 'cdn_tls_certificate_file_readable';
/** nginx re-reads its certificate on SIGHUP; the balancer's nginx master is its unit's main process. */
const RELOAD_BALANCER = 'reload the balancer (SIGHUP to its nginx master: systemctl kill --kill-whom=main -s HUP cdn-balancer.service on aws, docker kill -s HUP <stack>-balancer on docker)';

export const RECORDING_RULES: RuleGroup<RecordingRule>[] = [
  {
    name: 'cdn-traffic',
    rules: [
      { record: 'edge_region:cdn_edge_requests:rate1m', expr: 'sum by (edge, region) (rate(cdn_edge_requests_total[1m]))' },
      { record: 'region_status_class:cdn_edge_requests:rate1m', expr: 'sum by (region, status_class) (rate(cdn_edge_requests_total[1m]))' },
      { record: 'cache_status:cdn_edge_requests:rate1m', expr: 'sum by (cache_status) (rate(cdn_edge_requests_total[1m]))' },
      { record: 'region:cdn_edge_response_bytes:rate1m', expr: 'sum by (region) (rate(cdn_edge_response_bytes_total[1m]))' },
      { record: 'region:cdn_balancer_requests:rate1m', expr: 'sum by (region) (rate(cdn_balancer_requests_total{edge!="-"}[1m]))' },
      { record: 'route_status_class:cdn_origin_http_requests:rate1m', expr: 'sum by (route, status_class) (rate(cdn_origin_http_requests_total[1m]))' },
    ],
  },
  {
    name: 'cdn-hit-ratio',
    rules: [
      // `> -1` keeps only defined ratios (0/0 is NaN, and NaN > -1 is false).
      { record: 'edge_region:cdn_edge_hit_ratio:ratio_rate1m', expr: hitRatio('edge, region', '1m', 'cdn_edge_requests_total') },
      { record: 'region:cdn_edge_hit_ratio:ratio_rate1m', expr: hitRatio('region', '1m', 'cdn_edge_requests_total') },
      { record: ':cdn_edge_hit_ratio:ratio_rate1m', expr: hitRatio('', '1m', 'cdn_edge_requests_total') },
      { record: ':cdn_edge_hit_ratio:ratio_rate5m', expr: hitRatio('', '5m', 'cdn_edge_requests_total') },
      { record: 'edge_region:cdn_edge_byte_hit_ratio:ratio_rate1m', expr: hitRatio('edge, region', '1m', 'cdn_edge_response_bytes_total') },
      { record: ':cdn_edge_byte_hit_ratio:ratio_rate1m', expr: hitRatio('', '1m', 'cdn_edge_response_bytes_total') },
      // Offload: the share of shoppers' requests (bytes) the origin did not have to serve.
      {
        record: ':cdn_origin_offload:ratio_rate1m',
        expr: `clamp_min(1 - sum(rate(cdn_origin_http_requests_total{${ORIGIN_DELIVERY}}[1m]) or vector(0)) / (sum(rate(cdn_edge_requests_total[1m])) > 0), 0)`,
      },
      {
        record: ':cdn_origin_byte_offload:ratio_rate1m',
        expr: `clamp_min(1 - sum(rate(cdn_origin_http_response_bytes_total{route=~"/\\\\*|/_v/.*"}[1m]) or vector(0)) / (sum(rate(cdn_edge_response_bytes_total[1m])) > 0), 0)`,
      },
    ],
  },
  {
    name: 'cdn-latency',
    rules: [
      ...(['0.5', '0.99'] as const).flatMap((q) => {
        const p = q === '0.5' ? 'p50' : 'p99';
        return [
          // the shopper's view: the balancer's time to answer, per region and fleet-wide
          { record: `region:cdn_balancer_request_duration_seconds:${p}_rate1m`, expr: `histogram_quantile(${q}, sum by (region, le) (rate(cdn_balancer_request_duration_seconds_bucket{edge!="-"}[1m])))` },
          { record: `:cdn_balancer_request_duration_seconds:${p}_rate1m`, expr: `histogram_quantile(${q}, sum by (le) (rate(cdn_balancer_request_duration_seconds_bucket{edge!="-"}[1m])))` },
          // the edge's misses: time until the upstream's headers arrived
          { record: `edge_region:cdn_edge_upstream_header_seconds:${p}_rate1m`, expr: `histogram_quantile(${q}, sum by (edge, region, le) (rate(cdn_edge_upstream_header_seconds_bucket[1m])))` },
          { record: `:cdn_edge_upstream_header_seconds:${p}_rate1m`, expr: `histogram_quantile(${q}, sum by (le) (rate(cdn_edge_upstream_header_seconds_bucket[1m])))` },
          // the origin's delivery routes
          { record: `:cdn_origin_http_request_duration_seconds:${p}_rate1m`, expr: `histogram_quantile(${q}, sum by (le) (rate(cdn_origin_http_request_duration_seconds_bucket{${ORIGIN_DELIVERY}}[1m])))` },
        ];
      }),
    ],
  },
];

export const ALERT_RULES: RuleGroup<AlertRule>[] = [
  {
    name: 'cdn-availability',
    rules: [
      {
        alert: 'CdnEdgeDown',
        expr: 'up{job="edge"} == 0',
        for: '30s',
        labels: { severity: 'critical' },
        annotations: {
          summary: 'Edge {{ $labels.edge }} ({{ $labels.region }}) is down',
          description: 'Prometheus cannot scrape edge {{ $labels.edge }} at {{ $labels.instance }}. The balancer routes its objects to the next edge of the ring, whose cache is colder: expect more origin traffic.',
        },
      },
      {
        alert: 'CdnEdgeOutOfRotation',
        expr: 'cdn_balancer_edge_up == 0',
        for: '1m',
        labels: { severity: 'warning' },
        annotations: {
          summary: 'The balancer took edge {{ $labels.edge }} ({{ $labels.region }}) out of rotation',
          description: 'Its health checks (active or passive) fail. See the balancer status page.',
        },
      },
      {
        alert: 'CdnRegionWithoutEdges',
        expr: 'sum by (region) (cdn_balancer_edge_up) == 0',
        for: '30s',
        labels: { severity: 'critical' },
        annotations: {
          summary: 'No edge of region {{ $labels.region }} is in rotation',
          description: 'Its shoppers are handed over to the next region in the fallback order.',
        },
      },
      {
        alert: 'CdnOriginDown',
        expr: 'up{job="origin"} == 0',
        for: '1m',
        labels: { severity: 'critical' },
        annotations: { summary: 'The origin is down', description: 'Edges serve what they hold (stale-if-error); misses fail and purges cannot be published.' },
      },
      {
        alert: 'CdnBalancerDown',
        expr: 'up{job="balancer"} == 0',
        for: '1m',
        labels: { severity: 'critical' },
        annotations: { summary: 'The balancer is down', description: 'Prometheus cannot scrape the balancer at {{ $labels.instance }}: shoppers may not reach the CDN.' },
      },
    ],
  },
  {
    // The balancer's certificate (spec balancer.tls): source="loaded" is what nginx
    // serves, source="file" what is on disk (cdn.balancer.certificates).
    name: 'cdn-tls',
    rules: [
      {
        alert: 'CdnTlsCertificateExpiresSoon',
        expr: `${TLS_NOT_AFTER}{source="loaded"} - time() < 14 * 86400`,
        for: '10m',
        labels: { severity: 'warning' },
        annotations: {
          summary: 'The balancer\'s TLS certificate {{ $labels.subject }} expires in {{ $value | humanizeDuration }}',
          description: `Renew {{ $labels.path }}, then ${RELOAD_BALANCER}: nginx serves a new certificate only after a reload.`,
        },
      },
      {
        alert: 'CdnTlsCertificateExpiresVerySoon',
        expr: `${TLS_NOT_AFTER}{source="loaded"} - time() < 3 * 86400`,
        for: '10m',
        labels: { severity: 'critical' },
        annotations: {
          summary: 'The balancer\'s TLS certificate {{ $labels.subject }} expires in {{ $value | humanizeDuration }}',
          description: `Browsers refuse the CDN once it has expired. Renew {{ $labels.path }}, then ${RELOAD_BALANCER}.`,
        },
      },
      {
        alert: 'CdnTlsCertificateRenewedNotLoaded',
        // a newer certificate on disk than the one nginx loaded
        expr: `${TLS_NOT_AFTER}{source="file"} > ignoring (source, subject) ${TLS_NOT_AFTER}{source="loaded"}`,
        for: '1h',
        labels: { severity: 'warning' },
        annotations: {
          summary: 'The balancer serves an older certificate than {{ $labels.path }} holds',
          description: `The certificate was renewed on disk but nginx has not reloaded it: ${RELOAD_BALANCER}.`,
        },
      },
      {
        alert: 'CdnTlsCertificateFileUnreadable',
        // without the file series the renewal alert above cannot see a renewal
        expr: `${TLS_FILE_READABLE} == 0`,
        for: '15m',
        labels: { severity: 'warning' },
        annotations: {
          summary: "The balancer's workers cannot read {{ $labels.path }}",
          description:
            'The certificate file cannot be read or parsed by the nginx workers (e.g. root-only permissions), so a renewal on disk goes unnoticed: let the workers read it (nginx itself loads it as root).',
        },
      },
    ],
  },
  {
    name: 'cdn-cache',
    rules: [
      {
        alert: 'CdnHitRatioDrop',
        // a quarter below what it was an hour ago, with real traffic
        expr: '(:cdn_edge_hit_ratio:ratio_rate5m < 0.75 * (:cdn_edge_hit_ratio:ratio_rate5m offset 1h)) and on() (sum(rate(cdn_edge_requests_total[5m])) > 1)',
        for: '10m',
        labels: { severity: 'warning' },
        annotations: {
          summary: 'The fleet hit ratio dropped to {{ $value | humanizePercentage }}',
          description: 'Down by more than 25% from an hour ago: a purge storm, a new cache-busting query parameter, a cold edge or a deploy. The origin takes the difference.',
        },
      },
      {
        alert: 'CdnHitRatioLow',
        expr: '(:cdn_edge_hit_ratio:ratio_rate5m < 0.5) and on() (sum(rate(cdn_edge_requests_total[5m])) > 1)',
        for: '15m',
        labels: { severity: 'warning' },
        annotations: { summary: 'The fleet hit ratio is {{ $value | humanizePercentage }}', description: 'Under half of the requests are served from cache.' },
      },
      {
        alert: 'CdnEdge5xxRate',
        expr: 'sum by (edge, region) (rate(cdn_edge_requests_total{status_class="5xx"}[5m])) / sum by (edge, region) (rate(cdn_edge_requests_total[5m])) > 0.02',
        for: '5m',
        labels: { severity: 'warning' },
        annotations: { summary: 'Edge {{ $labels.edge }} answers {{ $value | humanizePercentage }} 5xx', description: 'More than 2% of its responses are server errors.' },
      },
    ],
  },
  {
    name: 'cdn-origin',
    rules: [
      {
        alert: 'CdnOrigin5xxRate',
        expr: 'sum(rate(cdn_origin_http_requests_total{status_class="5xx"}[5m])) / sum(rate(cdn_origin_http_requests_total[5m])) > 0.05',
        for: '5m',
        labels: { severity: 'critical' },
        annotations: { summary: 'The origin answers {{ $value | humanizePercentage }} 5xx', description: 'More than 5% of the origin\'s responses are server errors; check its storage (cdn_origin_storage_errors_total) and Redis.' },
      },
      {
        alert: 'CdnOriginStorageErrors',
        expr: 'sum by (driver, operation) (rate(cdn_origin_storage_errors_total[5m])) > 0',
        for: '5m',
        labels: { severity: 'warning' },
        annotations: { summary: 'Storage {{ $labels.operation }} operations fail ({{ $labels.driver }})', description: 'The origin\'s storage driver reports failures.' },
      },
      {
        alert: 'CdnOriginOffloadLow',
        expr: '(:cdn_origin_offload:ratio_rate1m < 0.5) and on() (sum(rate(cdn_edge_requests_total[5m])) > 10)',
        for: '15m',
        labels: { severity: 'warning' },
        annotations: { summary: 'The origin serves more than half of the requests (offload {{ $value | humanizePercentage }})', description: 'The CDN is not protecting the origin.' },
      },
    ],
  },
  {
    name: 'cdn-invalidation',
    rules: [
      {
        alert: 'CdnPurgeLag',
        // while connected, the lag is the age of the last purge when the edge applied it
        expr: '(cdn_edge_invalidation_lag_seconds > 2) and on (edge, region) (cdn_edge_invalidation_connected == 1)',
        for: '2m',
        labels: { severity: 'warning' },
        annotations: { summary: 'Purges reach edge {{ $labels.edge }} {{ $value | humanizeDuration }} late', description: 'Purges should land in milliseconds; the edge or Redis is overloaded.' },
      },
      {
        alert: 'CdnInvalidationDisconnected',
        expr: 'cdn_edge_invalidation_connected == 0',
        for: '1m',
        labels: { severity: 'critical' },
        annotations: {
          summary: 'Edge {{ $labels.edge }} does not follow the purge stream',
          description: 'It keeps serving and stores new responses for at most purge.busDownMaxTtl; purges reach it once it reconnects. Check Redis.',
        },
      },
      {
        alert: 'CdnInvalidationLag',
        // while cut off, the lag is the time since it last heard from the stream
        expr: 'cdn_edge_invalidation_lag_seconds > 60',
        for: '1m',
        labels: { severity: 'critical' },
        annotations: { summary: 'Edge {{ $labels.edge }} is {{ $value | humanizeDuration }} behind the purge stream', description: 'Shoppers may see purged prices or photos on this edge.' },
      },
      {
        alert: 'CdnEdgeCacheDiskNearlyFull',
        expr: 'cdn_edge_cache_filesystem_avail_bytes / cdn_edge_cache_filesystem_size_bytes < 0.1',
        for: '10m',
        labels: { severity: 'warning' },
        annotations: {
          summary: 'The disk under edge {{ $labels.edge }}\'s cache has {{ $value | humanizePercentage }} left',
          description: 'nginx keeps the cache under cache.maxSize, but the filesystem below it is running out (logs, a maxSize too large for the disk).',
        },
      },
      {
        alert: 'CdnPurgePublishFailing',
        expr: 'sum(increase(cdn_origin_purge_publish_failures_total[5m])) > 0',
        for: '0m',
        labels: { severity: 'critical' },
        annotations: { summary: 'The origin cannot publish purges', description: 'Purge requests get 503 (Redis unreachable): nothing is invalidated until it is back.' },
      },
    ],
  },
];

function yamlQuote(s: string): string {
  return JSON.stringify(s);
}

function block(key: string, text: string, indent: string): string[] {
  if (!text.includes('\n')) return [`${indent}${key}: ${yamlQuote(text)}`];
  return [`${indent}${key}: |-`, ...text.split('\n').map((l) => `${indent}  ${l}`)];
}

function map(key: string, m: Record<string, string> | undefined, indent: string): string[] {
  if (!m || Object.keys(m).length === 0) return [];
  return [`${indent}${key}:`, ...Object.entries(m).map(([k, v]) => `${indent}  ${k}: ${yamlQuote(v)}`)];
}

/** One rule file (YAML) from groups of recording or alert rules. */
export function renderRuleFile(groups: RuleGroup<RecordingRule | AlertRule>[]): string {
  const lines = ['# Rendered from observability/rules.ts: do not edit, change the rules there.', 'groups:'];
  for (const g of groups) {
    lines.push(`  - name: ${yamlQuote(g.name)}`);
    if (g.interval) lines.push(`    interval: ${g.interval}`);
    lines.push('    rules:');
    for (const r of g.rules) {
      if ('record' in r) {
        lines.push(`      - record: ${yamlQuote(r.record)}`, ...block('expr', r.expr, '        '), ...map('labels', r.labels, '        '));
      } else {
        lines.push(`      - alert: ${yamlQuote(r.alert)}`, ...block('expr', r.expr, '        '), `        for: ${r.for}`, ...map('labels', r.labels, '        '), ...map('annotations', r.annotations, '        '));
      }
    }
  }
  return lines.join('\n') + '\n';
}

/** Rule files, relative to prometheus.yml's directory (Prometheus resolves rule_files from there). */
export const RULE_FILES = { recording: 'rules/cdn-recording.yml', alerts: 'rules/cdn-alerts.yml' } as const;

export function renderRules(): RenderedFile[] {
  return [
    { path: RULE_FILES.recording, content: renderRuleFile(RECORDING_RULES) },
    { path: RULE_FILES.alerts, content: renderRuleFile(ALERT_RULES) },
  ];
}
