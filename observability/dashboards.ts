/**
 * The Grafana dashboards (issue #7), as data: `npm run observability:render`
 * (observability/generate.ts) writes them to observability/dashboards/*.json, which Grafana's file provider
 * loads (observability/grafana.ts). A unit test keeps the JSON files in sync with this
 * module; an end-to-end test runs every PromQL expression against a real Prometheus.
 *
 * Panels read the recording rules of observability/rules.ts where one exists, so a
 * dashboard and an alert never disagree about what "hit ratio" means.
 */
import { DATASOURCE_UIDS } from './grafana';
import { ORIGIN_DELIVERY } from './rules';

const PROM = { type: 'prometheus', uid: DATASOURCE_UIDS.prometheus } as const;
const LOKI = { type: 'loki', uid: DATASOURCE_UIDS.loki } as const;

export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: typeof PROM | typeof LOKI;
  instant?: boolean;
}

export interface Panel {
  id: number;
  type: 'timeseries' | 'stat' | 'logs' | 'table' | 'bargauge';
  title: string;
  description?: string;
  datasource: typeof PROM | typeof LOKI;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: Target[];
  fieldConfig?: { defaults: Record<string, unknown>; overrides: unknown[] };
  options?: Record<string, unknown>;
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  timezone: 'browser';
  editable: boolean;
  schemaVersion: number;
  version: number;
  refresh: string;
  time: { from: string; to: string };
  templating: { list: unknown[] };
  links: unknown[];
  panels: Panel[];
}

type Unit = 'reqps' | 'percentunit' | 'Bps' | 's' | 'short' | 'bool_on_off' | 'ops';

interface PanelSpec {
  title: string;
  description?: string;
  type?: Panel['type'];
  unit?: Unit;
  w?: number;
  h?: number;
  targets: (string | [expr: string, legend: string])[];
  min?: number;
  max?: number;
}

function layout(specs: PanelSpec[]): Panel[] {
  let x = 0;
  let y = 0;
  let rowH = 0;
  return specs.map((s, i) => {
    const w = s.w ?? 12;
    const h = s.h ?? (s.type === 'stat' ? 4 : 8);
    if (x + w > 24) {
      x = 0;
      y += rowH;
      rowH = 0;
    }
    const gridPos = { x, y, w, h };
    x += w;
    rowH = Math.max(rowH, h);
    const type = s.type ?? 'timeseries';
    const isLogs = type === 'logs';
    const ds = isLogs ? LOKI : PROM;
    const defaults: Record<string, unknown> = {};
    if (s.unit) defaults.unit = s.unit;
    if (s.min !== undefined) defaults.min = s.min;
    if (s.max !== undefined) defaults.max = s.max;
    const panel: Panel = {
      id: i + 1,
      type,
      title: s.title,
      ...(s.description ? { description: s.description } : {}),
      datasource: ds,
      gridPos,
      targets: s.targets.map((t, j) => {
        const [expr, legendFormat] = typeof t === 'string' ? [t, undefined] : t;
        return { refId: String.fromCharCode(65 + j), datasource: ds, expr, ...(legendFormat ? { legendFormat } : {}), ...(type === 'stat' ? { instant: true } : {}) };
      }),
    };
    if (!isLogs) panel.fieldConfig = { defaults, overrides: [] };
    if (isLogs) panel.options = { showTime: true, wrapLogMessage: true, sortOrder: 'Descending', enableLogDetails: true, prettifyLogMessage: false };
    if (type === 'stat') panel.options = { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'area', textMode: 'auto' };
    return panel;
  });
}

const variable = (name: string, label: string, query: string) => ({
  name,
  label,
  type: 'query',
  datasource: PROM,
  query: { query, refId: `${name}-var` },
  definition: query,
  refresh: 2,
  includeAll: true,
  multi: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  sort: 1,
});

function dashboard(uid: string, title: string, description: string, specs: PanelSpec[], vars: unknown[] = []): Dashboard {
  return {
    uid,
    title,
    description,
    tags: ['cdn'],
    timezone: 'browser',
    editable: false,
    schemaVersion: 39,
    version: 1,
    refresh: '10s',
    time: { from: 'now-1h', to: 'now' },
    templating: { list: vars },
    links: [{ type: 'dashboards', tags: ['cdn'], asDropdown: true, title: 'CDN dashboards' }],
    panels: layout(specs),
  };
}

const REGION = variable('region', 'Region', 'label_values(cdn_balancer_edge_up, region)');
const EDGE = variable('edge', 'Edge', 'label_values(cdn_balancer_edge_up{region=~"$region"}, edge)');
const RI = '$__rate_interval';
const E = 'edge=~"$edge", region=~"$region"';

/**
 * The LogQL queries of the logs panels (also documented in README, "Observability and
 * load"). Labels come from the Alloy pipeline (observability/alloy.ts): `role`
 * (edge, balancer, origin, ...), `unit` (edge-eu-1, ...), and from the JSON line
 * `level` (origin) and `cache` (nginx access logs); everything else via `| json`.
 */
// nginx's access logs are the edge and balancer streams without a `level` label;
// their error logs (plain text) carry one.
export const LOGQL = {
  edgeErrors: '{role=~"edge|balancer", level=""} | json | status >= 500',
  nginxErrors: '{role=~"edge|balancer", level=~"error|crit|alert|emerg"}',
  edgeLogs: '{role="edge", unit=~"edge-($edge)", level=""} | json',
  requestTrace: '{role=~"balancer|edge|origin"} |= "$req_id"',
  originErrors: '{role="origin", level=~"error|fatal"}',
  purgeAudit: '{role="origin"} | json | audit="purge"',
  missesPerEdge: 'sum by (unit) (count_over_time({role="edge", cache=~"MISS|EXPIRED"}[5m]))',
} as const;

const REQ_ID = { name: 'req_id', label: 'Request id (X-Request-Id)', type: 'textbox', query: '', current: { text: '', value: '' } };

export function overview(): Dashboard {
  return dashboard(
    'cdn-overview',
    'CDN overview',
    'Is the CDN healthy, where do misses come from, is the origin at risk? One glance.',
    [
      { title: 'Requests/s (shoppers, through the balancer)', type: 'stat', unit: 'reqps', w: 6, targets: ['sum(region:cdn_balancer_requests:rate1m)'] },
      { title: 'Hit ratio (requests)', type: 'stat', unit: 'percentunit', w: 6, targets: [':cdn_edge_hit_ratio:ratio_rate1m'] },
      { title: 'Origin offload (requests)', type: 'stat', unit: 'percentunit', w: 6, targets: [':cdn_origin_offload:ratio_rate1m'] },
      { title: 'Edges in rotation', type: 'stat', unit: 'short', w: 6, targets: ['sum(cdn_balancer_edge_up)'] },
      { title: 'Traffic by region', unit: 'reqps', targets: [['sum by (region) (rate(cdn_balancer_requests_total{edge!="-", region=~"$region"}[' + RI + ']))', '{{region}}']] },
      { title: 'Bandwidth by region', unit: 'Bps', targets: [['sum by (region) (rate(cdn_balancer_response_bytes_total{region=~"$region"}[' + RI + ']))', '{{region}}']] },
      {
        title: 'Hit ratio by region (requests and bytes)',
        unit: 'percentunit',
        min: 0,
        max: 1,
        targets: [
          ['region:cdn_edge_hit_ratio:ratio_rate1m{region=~"$region"}', 'requests {{region}}'],
          [':cdn_edge_byte_hit_ratio:ratio_rate1m', 'bytes (fleet)'],
        ],
      },
      {
        title: 'Origin offload (requests and bytes)',
        description: 'Share of shoppers\' requests (bytes) the origin did not serve: 1 − origin delivery / edge responses.',
        unit: 'percentunit',
        min: 0,
        max: 1,
        targets: [
          [':cdn_origin_offload:ratio_rate1m', 'requests'],
          [':cdn_origin_byte_offload:ratio_rate1m', 'bytes'],
        ],
      },
      {
        title: 'Latency p50 / p99 per layer',
        unit: 's',
        targets: [
          [':cdn_balancer_request_duration_seconds:p50_rate1m', 'balancer p50'],
          [':cdn_balancer_request_duration_seconds:p99_rate1m', 'balancer p99'],
          [':cdn_edge_upstream_header_seconds:p99_rate1m', 'edge → origin p99 (misses)'],
          [':cdn_origin_http_request_duration_seconds:p99_rate1m', 'origin delivery p99'],
        ],
      },
      {
        title: 'Errors by status class (edges and origin)',
        unit: 'reqps',
        targets: [
          ['sum by (status_class) (rate(cdn_edge_requests_total{status_class=~"4xx|5xx", region=~"$region"}[' + RI + ']))', 'edges {{status_class}}'],
          ['sum by (status_class) (rate(cdn_origin_http_requests_total{status_class=~"4xx|5xx"}[' + RI + ']))', 'origin {{status_class}}'],
        ],
      },
      { title: 'Cache status mix', unit: 'reqps', targets: [['sum by (cache_status) (rate(cdn_edge_requests_total{region=~"$region"}[' + RI + ']))', '{{cache_status}}']] },
      // also counted as HITs above: the requests that waited on the cache lock for another request's fetch
      { title: 'Collapsed requests per second (waited for another request\'s fetch)', unit: 'reqps', targets: [['sum by (edge) (rate(cdn_edge_collapsed_total{region=~"$region"}[' + RI + ']))', '{{edge}}']] },
      { title: 'Purges applied per second (per edge)', unit: 'ops', targets: [['sum by (edge) (rate(cdn_edge_purges_applied_total{region=~"$region"}[' + RI + ']))', '{{edge}}']] },
      { title: 'Edge and balancer 5xx (logs)', type: 'logs', targets: [LOGQL.edgeErrors] },
      { title: 'nginx errors on edges and balancer (error logs)', type: 'logs', targets: [LOGQL.nginxErrors] },
      { title: 'One request across balancer, edge and origin (logs; set the request id above)', type: 'logs', targets: [LOGQL.requestTrace] },
    ],
    [REGION, REQ_ID],
  );
}

export function edgeDetail(): Dashboard {
  return dashboard(
    'cdn-edge',
    'CDN edge detail',
    'One edge (or several): its traffic, cache, misses and invalidation.',
    [
      { title: 'Requests/s by edge', unit: 'reqps', targets: [['sum by (edge) (rate(cdn_edge_requests_total{' + E + '}[' + RI + ']))', '{{edge}}']] },
      { title: 'Hit ratio by edge', unit: 'percentunit', min: 0, max: 1, targets: [['edge_region:cdn_edge_hit_ratio:ratio_rate1m{' + E + '}', '{{edge}}']] },
      { title: 'Byte hit ratio by edge', unit: 'percentunit', min: 0, max: 1, targets: [['edge_region:cdn_edge_byte_hit_ratio:ratio_rate1m{' + E + '}', '{{edge}}']] },
      { title: 'Bytes/s by cache status', unit: 'Bps', targets: [['sum by (cache_status) (rate(cdn_edge_response_bytes_total{' + E + '}[' + RI + ']))', '{{cache_status}}']] },
      {
        title: 'Miss latency to the origin (p50 / p99)',
        unit: 's',
        targets: [
          ['edge_region:cdn_edge_upstream_header_seconds:p50_rate1m{' + E + '}', 'p50 {{edge}}'],
          ['edge_region:cdn_edge_upstream_header_seconds:p99_rate1m{' + E + '}', 'p99 {{edge}}'],
        ],
      },
      { title: 'Status classes', unit: 'reqps', targets: [['sum by (edge, status_class) (rate(cdn_edge_requests_total{' + E + '}[' + RI + ']))', '{{edge}} {{status_class}}']] },
      { title: 'In rotation (balancer health)', unit: 'bool_on_off', targets: [['cdn_balancer_edge_up{' + E + '}', '{{edge}}']] },
      { title: 'Requests in flight (balancer → edge)', unit: 'short', targets: [['cdn_balancer_edge_requests_in_flight{' + E + '}', '{{edge}}']] },
      {
        title: 'Balancer latency to the edge (p50 / p99)',
        unit: 's',
        targets: [
          ['histogram_quantile(0.5, sum by (edge, le) (rate(cdn_balancer_request_duration_seconds_bucket{' + E + '}[' + RI + '])))', 'p50 {{edge}}'],
          ['histogram_quantile(0.99, sum by (edge, le) (rate(cdn_balancer_request_duration_seconds_bucket{' + E + '}[' + RI + '])))', 'p99 {{edge}}'],
        ],
      },
      {
        title: 'Failed connections to the edge',
        description: 'Zero when healthy (the "or" keeps the panel from reading "no data").',
        unit: 'ops',
        targets: [['sum by (edge) (rate(cdn_balancer_upstream_failures_total{' + E + '}[' + RI + '])) or on() vector(0)', '{{edge}}']],
      },
      { title: 'Scrape up', unit: 'bool_on_off', targets: [['up{job="edge", ' + E + '}', '{{edge}}']] },
      { title: 'Edge access logs', type: 'logs', targets: [LOGQL.edgeLogs] },
    ],
    [REGION, EDGE],
  );
}

export function origin(): Dashboard {
  return dashboard(
    'cdn-origin',
    'CDN origin',
    'Is the origin at risk: what reaches it, how fast it answers, its storage.',
    [
      { title: 'Origin requests/s by route', unit: 'reqps', targets: [['sum by (route) (route_status_class:cdn_origin_http_requests:rate1m)', '{{route}}']] },
      { title: 'Origin status classes', unit: 'reqps', targets: [['sum by (status_class) (route_status_class:cdn_origin_http_requests:rate1m)', '{{status_class}}']] },
      {
        title: 'Delivery latency (p50 / p99)',
        unit: 's',
        targets: [
          [':cdn_origin_http_request_duration_seconds:p50_rate1m', 'p50'],
          [':cdn_origin_http_request_duration_seconds:p99_rate1m', 'p99'],
        ],
      },
      {
        title: 'Delivery requests vs shoppers\' requests',
        unit: 'reqps',
        targets: [
          [`sum(rate(cdn_origin_http_requests_total{${ORIGIN_DELIVERY}}[${RI}]))`, 'origin delivery'],
          [`sum(rate(cdn_edge_requests_total[${RI}]))`, 'edges (all)'],
        ],
      },
      { title: 'Response bytes/s by route', unit: 'Bps', targets: [['sum by (route) (rate(cdn_origin_http_response_bytes_total[' + RI + ']))', '{{route}}']] },
      {
        title: 'Storage operations p99',
        unit: 's',
        targets: [['histogram_quantile(0.99, sum by (operation, le) (rate(cdn_origin_storage_operation_duration_seconds_bucket[' + RI + '])))', '{{operation}}']],
      },
      { title: 'Storage errors', description: 'Zero when healthy.', unit: 'ops', targets: [['sum by (operation) (rate(cdn_origin_storage_errors_total[' + RI + '])) or on() vector(0)', '{{operation}}']] },
      { title: 'Origin event-loop lag p99', unit: 's', targets: [['nodejs_eventloop_lag_p99_seconds{job="origin"}', 'event-loop lag p99']] },
      {
        title: 'Image variants: made, read from the reserve, refused',
        description: 'Transforms by output format; variants another edge already had made (reserve); refusals by reason (docs/images.md).',
        unit: 'ops',
        targets: [
          ['sum by (format) (rate(cdn_origin_image_transforms_total[' + RI + ']))', 'made {{format}}'],
          ['sum(rate(cdn_origin_image_reserve_hits_total[' + RI + ']))', 'from the reserve'],
          ['sum by (reason) (rate(cdn_origin_image_refusals_total[' + RI + '])) or on() vector(0)', 'refused {{reason}}'],
        ],
      },
      {
        title: 'Image transforms: p50 / p99 and queue',
        description: 'Time per transform; transforms waiting for a slot (503 beyond images.queue).',
        unit: 's',
        targets: [
          ['histogram_quantile(0.5, sum by (le) (rate(cdn_origin_image_transform_duration_seconds_bucket[' + RI + '])))', 'p50'],
          ['histogram_quantile(0.99, sum by (le) (rate(cdn_origin_image_transform_duration_seconds_bucket[' + RI + '])))', 'p99'],
          ['sum(cdn_origin_image_queue_depth)', 'queued'],
        ],
      },
      { title: 'Origin errors (logs)', type: 'logs', w: 24, targets: [LOGQL.originErrors] },
    ],
  );
}

export function purges(): Dashboard {
  return dashboard(
    'cdn-purges',
    'CDN purges and invalidation',
    'How fast purges land: published by the origin, applied by every edge, and whether an edge is cut off.',
    [
      { title: 'Purge requests by outcome', unit: 'ops', targets: [['sum by (source, outcome) (rate(cdn_origin_purges_total[' + RI + ']))', '{{source}} {{outcome}}']] },
      {
        title: 'Published vs applied (per edge)',
        unit: 'ops',
        targets: [
          ['sum(rate(cdn_origin_purges_published_total[' + RI + ']))', 'published'],
          ['sum by (edge) (rate(cdn_edge_purges_applied_total{' + E + '}[' + RI + ']))', 'applied {{edge}}'],
        ],
      },
      {
        title: 'Invalidation lag per edge',
        description: 'While connected: the age of the last purge when the edge applied it. While cut off: seconds since it last heard from the stream.',
        unit: 's',
        targets: [['max by (edge) (cdn_edge_invalidation_lag_seconds{' + E + '})', '{{edge}}']],
      },
      { title: 'Following the purge stream', unit: 'bool_on_off', targets: [['cdn_edge_invalidation_connected{' + E + '}', '{{edge}}']] },
      { title: 'Publish failures (Redis unreachable)', description: 'Zero when healthy.', unit: 'ops', targets: [['sum(rate(cdn_origin_purge_publish_failures_total[' + RI + ']))', 'failures']] },
      { title: 'Hit ratio (purges cost hits)', unit: 'percentunit', min: 0, max: 1, targets: [[':cdn_edge_hit_ratio:ratio_rate1m', 'fleet']] },
      { title: 'Purge audit log', type: 'logs', w: 24, targets: [LOGQL.purgeAudit] },
    ],
    [REGION, EDGE],
  );
}

export const DASHBOARDS: Record<string, () => Dashboard> = {
  'cdn-overview.json': overview,
  'cdn-edge.json': edgeDetail,
  'cdn-origin.json': origin,
  'cdn-purges.json': purges,
};

export function renderDashboards(): { file: string; content: string }[] {
  return Object.entries(DASHBOARDS).map(([file, make]) => ({ file, content: JSON.stringify(make(), null, 2) + '\n' }));
}

/** Every PromQL expression of a dashboard: panel targets on the Prometheus data source. */
export function promqlOf(d: Dashboard): { panel: string; expr: string }[] {
  return d.panels.flatMap((p) => p.targets.filter((t) => (t.datasource ?? p.datasource).type === 'prometheus').map((t) => ({ panel: p.title, expr: t.expr })));
}
