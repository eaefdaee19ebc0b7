/**
 * Grafana Alloy configuration shipping the CDN's logs to Loki (docs/design-notes.md §1;
 * Promtail is end-of-life). Two variants:
 *
 *   docker   containers' stdout/stderr through the Docker socket (the origin's pino
 *            JSON; Redis, Prometheus, MinIO, Grafana, Loki), labelled from the
 *            containers' `cdn.role` and `cdn.unit` labels; plus nginx JSON access logs
 *            from files under /var/log/cdn/<unit>/access.log (each nginx unit's logs
 *            directory is a volume, mounted read-only into Alloy's container:
 *            infra/targets/docker/stack.ts).
 *   systemd  the cdn-*.service units' journal (aws instances), plus the nginx access
 *            logs of the units on the host (/etc/cdn/<unit>/logs/access.log), where
 *            Alloy runs from Grafana's Debian package (infra/targets/aws/cloud-init.ts).
 *
 * Both access-log globs are derived from where nginx writes (infra/render/nginx.ts) and
 * where units live (infra/model/layout.ts), so they cannot drift apart.
 *
 * Only low-cardinality fields become labels: `role`, `unit`, `level` (origin) and
 * `cache` (nginx's upstream cache status); request ids, URIs and statuses stay in the
 * line, for `| json` in LogQL (see LOGQL in observability/dashboards.ts).
 *
 * No Alloy binary runs here: the rendered files get static checks only
 * (observability/alloy.test.ts).
 */
import * as path from 'node:path';
import { containerLayout } from '../infra/model/layout';
import { NGINX_ACCESS_LOG, NGINX_ERROR_LOG } from '../infra/render/nginx';

export type AlloySource = 'docker' | 'systemd';

export interface AlloyOptions {
  source: AlloySource;
  /** Loki's push endpoint, or an Alloy expression (e.g. `sys.env("CDN_LOKI_PUSH_URL")`) when `urlIsExpression`. */
  lokiPushUrl: string;
  urlIsExpression?: boolean;
  /** Globs of the nginx access and error logs (defaults per source). */
  accessLogs?: string;
  errorLogs?: string;
  /**
   * docker: only containers on this network (the stack's) are shipped, not other
   * stacks' or programs' on the same host.
   */
  dockerNetwork?: string;
}

/** Inside Alloy's container: where each nginx unit's logs directory is mounted (read-only). */
export function dockerLogDir(unit: string): string {
  return path.posix.join('/var/log/cdn', unit);
}

function nginxLogGlobs(log: string): Record<AlloySource, string> {
  return {
    docker: path.posix.join(dockerLogDir('*'), path.posix.basename(log)),
    systemd: path.posix.join(containerLayout().unitDir('*'), log),
  };
}

export const ACCESS_LOGS = nginxLogGlobs(NGINX_ACCESS_LOG);
export const ERROR_LOGS = nginxLogGlobs(NGINX_ERROR_LOG);

/** Loki's push API. */
export function lokiPushUrl(base: string): string {
  return `${base}/loki/api/v1/push`;
}

/**
 * How both targets run Alloy: its HTTP server (UI, /metrics, /-/ready) on the
 * loopback only, so no port of it is reachable from any other host; it only
 * pushes to Loki. The storage path keeps the read positions of the log files.
 */
export const ALLOY_HTTP_LISTEN = '127.0.0.1:12345';
export const ALLOY_STORAGE = '/var/lib/alloy/data';

export function alloyRunArgs(configFile: string): string[] {
  return ['run', `--server.http.listen-addr=${ALLOY_HTTP_LISTEN}`, `--storage.path=${ALLOY_STORAGE}`, configFile];
}

/** The labels a log line can carry in Loki (what LogQL selectors may use). */
export const LOG_LABELS = ['role', 'unit', 'level', 'cache'] as const;

const q = (s: string) => JSON.stringify(s);

/** The Docker API socket, at the same path on the host and inside Alloy's container. */
export const DOCKER_SOCKET = '/var/run/docker.sock';

function dockerSource(network?: string): string {
  const filter = network
    ? `
  // only this stack's containers, not other stacks' or programs' on the host
  filter {
    name   = "network"
    values = [${q(network)}]
  }`
    : '';
  return `// Containers on this host, labelled by the CDN's container labels.
discovery.docker "containers" {
  host = "unix://${DOCKER_SOCKET}"${filter}
}

discovery.relabel "containers" {
  targets = discovery.docker.containers.targets

  rule {
    source_labels = ["__meta_docker_container_label_cdn_role"]
    target_label  = "role"
  }
  rule {
    source_labels = ["__meta_docker_container_label_cdn_unit"]
    target_label  = "unit"
  }
  // Grafana, Loki, MinIO: not the CDN's, but worth keeping under their own names.
  rule {
    source_labels = ["__meta_docker_container_name", "role"]
    regex         = "/(.+);"
    target_label  = "unit"
  }
}

loki.source.docker "containers" {
  host          = "unix://${DOCKER_SOCKET}"
  targets       = discovery.relabel.containers.output
  relabel_rules = discovery.relabel.containers.rules
  forward_to    = [loki.process.cdn.receiver]
}
`;
}

function systemdSource(): string {
  return `// The CDN's systemd units (cdn-<unit>.service) on this host.
loki.relabel "journal" {
  forward_to = []

  rule {
    source_labels = ["__journal__systemd_unit"]
    regex         = "cdn-(.+)\\\\.service"
    target_label  = "unit"
  }
  rule {
    source_labels = ["unit"]
    regex         = "(edge|balancer|origin|redis|prometheus).*"
    target_label  = "role"
  }
}

loki.source.journal "units" {
  matches       = "_SYSTEMD_UNIT=cdn-*.service"
  relabel_rules = loki.relabel.journal.rules
  forward_to    = [loki.process.cdn.receiver]
}
`;
}

/** The file source of one kind of nginx log, with `unit` and `role` taken from its path. */
function nginxLogSource(name: string, glob: string, file: string, stages: string, forwardTo: string): string {
  return `local.file_match "${name}" {
  path_targets = [{"__path__" = ${q(glob)}}]
}

loki.source.file "${name}" {
  targets    = local.file_match.${name}.targets
  forward_to = [loki.process.${name}.receiver]
}

loki.process "${name}" {
  stage.regex {
    source     = "filename"
    expression = "/(?P<unit>[a-z0-9-]+)/(logs/)?${file.replace('.', '\\\\.')}$"
  }
  stage.regex {
    source     = "unit"
    expression = "^(?P<role>edge|balancer)"
  }
${stages}  stage.label_drop {
    values = ["filename"]
  }
  forward_to = [${forwardTo}]
}
`;
}

function accessLogSource(glob: string): string {
  return `// nginx JSON access logs (edges and balancer): log_format cdn_json in infra/render/nginx.ts.
${nginxLogSource(
  'access_logs',
  glob,
  path.posix.basename(NGINX_ACCESS_LOG),
  `  stage.labels {
    values = { unit = "", role = "" }
  }
`,
  'loki.process.cdn.receiver',
)}`;
}

function errorLogSource(glob: string): string {
  return `// nginx error logs (edges and balancer): plain text, "yyyy/mm/dd hh:mm:ss [level] ...",
// in the instance's or container's time zone (UTC in both targets).
${nginxLogSource(
  'error_logs',
  glob,
  path.posix.basename(NGINX_ERROR_LOG),
  `  stage.regex {
    expression = "^(?P<time>\\\\d{4}/\\\\d{2}/\\\\d{2} \\\\d{2}:\\\\d{2}:\\\\d{2}) \\\\[(?P<level>[a-z]+)\\\\]"
  }
  stage.labels {
    values = { unit = "", role = "", level = "" }
  }
  stage.timestamp {
    source            = "time"
    format            = "2006/01/02 15:04:05"
    action_on_failure = "skip"
  }
`,
  'loki.write.loki.receiver',
)}`;
}

export function renderAlloyConfig(o: AlloyOptions): string {
  const url = o.urlIsExpression ? o.lokiPushUrl : q(o.lokiPushUrl);
  return `// Rendered from observability/alloy.ts: do not edit, change the renderer instead.
// Grafana Alloy: the CDN's logs (${o.source}) to Loki.

${o.source === 'docker' ? dockerSource(o.dockerNetwork) : systemdSource()}
${accessLogSource(o.accessLogs ?? ACCESS_LOGS[o.source])}
${errorLogSource(o.errorLogs ?? ERROR_LOGS[o.source])}
// JSON lines: the origin's pino logs ("level", "time") and nginx's ("cache", "ts").
// Only low-cardinality fields become labels; the rest stays for "| json".
loki.process "cdn" {
  stage.json {
    expressions = { level = "level", cache = "cache", ts = "ts", time = "time" }
  }
  stage.labels {
    values = { level = "", cache = "" }
  }
  stage.timestamp {
    source            = "ts"
    format            = "RFC3339"
    action_on_failure = "skip"
  }
  stage.timestamp {
    source            = "time"
    format            = "RFC3339Nano"
    action_on_failure = "skip"
  }
  forward_to = [loki.write.loki.receiver]
}

loki.write "loki" {
  endpoint {
    url = ${url}
  }
}
`;
}

/** The environment variable the systemd variant reads Loki's push URL from (set by the aws target per instance). */
export const LOKI_URL_ENV = 'CDN_LOKI_PUSH_URL';

/**
 * The systemd variant as every aws instance runs it: one file for all, the Loki
 * address comes from the environment (examples/rendered/aws/alloy/config.alloy).
 */
export function renderSystemdAlloyConfig(): string {
  return renderAlloyConfig({ source: 'systemd', lokiPushUrl: `sys.env(${q(LOKI_URL_ENV)})`, urlIsExpression: true });
}
