/**
 * The parts of nginx.conf that the edge and the balancer share. Both render their
 * whole configuration (never Debian's stock nginx.conf: its `tcp_nopush on` with
 * proxy_cache stalled 100 KiB hits on kept-alive connections by ~44 ms here).
 */
import * as path from 'node:path';
import type { Layout } from '../model/layout';
import type { CdnSpec } from '../model/spec';

/**
 * Where an nginx unit writes its logs, relative to its directory (the `-p` prefix):
 * the log shipper (observability/alloy.ts) and the targets' log volumes follow these.
 */
export const NGINX_LOGS_DIR = 'logs';
export const NGINX_ACCESS_LOG = `${NGINX_LOGS_DIR}/access.log`;
export const NGINX_ERROR_LOG = `${NGINX_LOGS_DIR}/error.log`;
export const NGINX_PID_FILE = `${NGINX_LOGS_DIR}/nginx.pid`;
/** The unit's logrotate config (renderLogrotate), run by scripts/run-unit.sh ($CDN_LOGROTATE). */
export const NGINX_LOGROTATE_CONF = 'conf/logrotate.conf';

/**
 * nginx has no log rotation of its own, and a busy edge writes gigabytes of access
 * log a day. scripts/run-unit.sh runs logrotate with this every few minutes: a log
 * over 100 MB is renamed, nginx reopens its logs on USR1 (it writes on to the
 * renamed file until then, hence delaycompress), and 5 rotations are kept.
 */
export function renderLogrotate(unitDir: string): string {
  const logs = [NGINX_ACCESS_LOG, NGINX_ERROR_LOG].map((l) => path.posix.join(unitDir, l)).join(' ');
  return `# Rendered by the CDN's renderer: do not edit, change the renderer instead.
${logs} {
    size 100M
    rotate 5
    compress
    delaycompress
    missingok
    notifempty
    sharedscripts
    postrotate
        kill -USR1 "$(cat ${path.posix.join(unitDir, NGINX_PID_FILE)})" 2>/dev/null || true
    endscript
}
`;
}

/**
 * Descriptors an nginx worker may hold (worker_rlimit_nofile). nginx raises its own
 * soft limit to this, which the hard limit must allow: the deploy targets set it
 * (docker ulimits, the systemd unit's LimitNOFILE).
 */
export const NGINX_OPEN_FILES = 16384;

/**
 * The request pool: room for a request's variables, headers and Lua state in one
 * block. With nginx's 4k a cache HIT at the edge took more blocks from malloc,
 * about 5% of its instructions (callgrind). Plain nginx proxy_cache gains about
 * 6% from it too, so bench/edge.ts gives its plain references the same.
 */
export const REQUEST_POOL = `    request_pool_size 16k;
`;

export interface NginxMainOptions {
  layout: Layout;
  workers: number;
  /** Lua package roots, searched in order. */
  luaRoots: string[];
  /** `lua_shared_dict` name -> its size and what it holds (rendered as a comment). */
  sharedDicts: Record<string, { size: string; holds: string }>;
  /** init_by_lua call, e.g. `require("cdn.edge").init("/path/edge.json")`. */
  init: string;
  initWorker: string;
  /**
   * Continue an incoming X-Request-Id (edges, behind the balancer) or always mint a
   * new one (the balancer: ids from the internet are not trusted).
   */
  continueRequestId: boolean;
  /** Log "?sig=[redacted]" for URLs with a signature (spec downloads.prefixes: download tokens must never be logged). */
  redactSignatures?: boolean;
  /** What a client may send, and how slowly (spec balancer.maxRequestBody, clientTimeout). */
  client: { maxBody: string; timeoutSeconds: number };
  /** Everything inside `http { }` after the common part. */
  http: string;
}

/** The client limits of the spec, the same at the balancer and the edges. */
export function clientLimits(spec: CdnSpec): NginxMainOptions['client'] {
  return { maxBody: spec.balancer.maxRequestBody, timeoutSeconds: spec.balancer.clientTimeout };
}

/**
 * The health and metrics listener of an nginx service; never published. `extra`
 * adds locations (the balancer's traffic status page).
 */
export function internalServer(listen: string, luaModule: string, extra = ''): string {
  return `    # Health and metrics: a separate listener, reachable only from inside.
    server {
        listen ${listen};
        access_log off;
        location = /healthz { content_by_lua_block { require("${luaModule}").serve_health() } }
        location = /metrics { content_by_lua_block { require("${luaModule}").serve_metrics() } }
${extra ? extra + '\n' : ''}        location / { return 404; }
    }`;
}

/**
 * Headers that let a client rewrite the method, URL, scheme, host or client address
 * an origin believes, none of them in the cache key (poisoning, CPDoS): never
 * passed upstream. The forwarding headers the CDN means (X-Forwarded-For, -Proto)
 * are set by the balancer itself.
 */
const OVERRIDE_HEADERS = [
  // method overrides
  'X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override',
  // URL overrides
  'X-Original-URL', 'X-Rewrite-URL', 'X-Forwarded-Prefix',
  // scheme, host and client address claims
  'X-Forwarded-Scheme', 'X-Forwarded-Ssl', 'Front-End-Https', 'X-Forwarded-Server', 'X-Host', 'X-Original-Host', 'True-Client-IP', 'X-Client-IP',
];

export const DROP_OVERRIDE_HEADERS = `            # Method, URL, scheme, host and client-address overrides never reach an
            # origin: none is in the cache key (cache poisoning, CPDoS).
${OVERRIDE_HEADERS.map((h) => `            proxy_set_header ${h} "";`).join('\n')}`;

export function luaString(s: string): string {
  return JSON.stringify(s);
}

function requestIdMap(continueIncoming: boolean): string {
  if (!continueIncoming) {
    return `    # A fresh request id per request; ids sent from the internet are ignored.
    map $request_id $cdn_request_id {
        default $request_id;
    }`;
  }
  // No regex here: this map is evaluated for every request's log line, and only
  // the balancer reaches an edge's traffic port in a deployed stack. escape=json
  // keeps whatever arrives a JSON string; header limits keep it short.
  return `    # Continue the balancer's request id so logs join up.
    map $http_x_request_id $cdn_request_id {
        "" $request_id;
        default $http_x_request_id;
    }`;
}

/**
 * The access log of every nginx service: one JSON line per request, written in
 * 64 KiB batches. Exported for the edge benchmark, whose plain-nginx references
 * log the same way.
 */
// With signed downloads (spec downloads.prefixes) a URL's signature is never
// logged: whoever reads the log could download with it. Only then: the map costs
// every request about 700 instructions (callgrind, a 1 KiB HIT), and signed image
// URLs are not secrets (storefront pages carry them).
const SIGNATURES_REDACTED = `    map $request_uri $cdn_log_uri {
        "~^(?<cdn_log_path>[^?]*)\\?(.*&)?sig=" "$cdn_log_path?sig=[redacted]";
        default $request_uri;
    }
`;

export function accessLog(continueRequestId: boolean, redactSignatures = false): string {
  return `    # A request id shared across balancer, edge and origin logs.
    log_format cdn_json escape=json '{"ts":"$time_iso8601","req_id":"$cdn_request_id",'
        '"host":"$host","method":"$request_method","uri":"${redactSignatures ? '$cdn_log_uri' : '$request_uri'}","status":$status,'
        '"bytes":$body_bytes_sent,"rt":$request_time,"urt":"$upstream_response_time",'
        '"cache":"$upstream_cache_status","upstream":"$upstream_addr","ua":"$http_user_agent"}';
    access_log ${NGINX_ACCESS_LOG} cdn_json buffer=64k flush=1s;
${redactSignatures ? SIGNATURES_REDACTED : ''}${requestIdMap(continueRequestId)}`;
}

export function renderNginxConf(o: NginxMainOptions): string {
  const luaPath = [...o.luaRoots.map((r) => `${r}/?.lua`), `${o.layout.systemLuaPath}/?.lua`, ';'].join(';');
  const dicts = Object.entries(o.sharedDicts)
    .map(([name, d]) => `    # ${d.holds}\n    lua_shared_dict ${name} ${d.size};`)
    .join('\n');
  const conf = `# Rendered by the CDN's renderer: do not edit, change the spec instead.
load_module ${o.layout.nginxModulesDir}/ndk_http_module.so;
load_module ${o.layout.nginxModulesDir}/ngx_http_lua_module.so;

${o.layout.nginxUser ? `user ${o.layout.nginxUser};\n` : ''}# One worker per core the service is given.
# https://nginx.org/en/docs/ngx_core_module.html#worker_processes
worker_processes ${o.workers};
error_log ${NGINX_ERROR_LOG} notice;
pid ${NGINX_PID_FILE};
# Lets the purge reader's blocking read end promptly on shutdown.
worker_shutdown_timeout 5s;

# A proxied connection holds two descriptors and the edge keeps up to 4096 hot
# cache files open (open_file_cache): a soft limit of 1024, common under systemd
# and Docker, would refuse connections long before worker_connections is
# reached. Raising the soft limit needs a hard limit at least this high.
worker_rlimit_nofile ${NGINX_OPEN_FILES};

events {
    worker_connections 4096;
}

http {
    default_type application/octet-stream;
    server_tokens off;
    # sendfile roughly doubles 100 KiB hit throughput; tcp_nopush stays off (see above).
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 10000;
${REQUEST_POOL}    # Header limits: large enough for real storefront cookies, small enough that
    # oversized headers are refused (431/400) here rather than cached downstream.
    client_header_buffer_size 4k;
    large_client_header_buffers 4 16k;
    # A storefront's forms and carts, not uploads (those go to the origin's API):
    # a larger body is refused (413) on its Content-Length, before it is read.
    client_max_body_size ${o.client.maxBody};
    # Slow clients (slowloris, a byte of body every few seconds) lose their
    # connection instead of holding it: the header must arrive, and the body and
    # the response move, within this many seconds.
    client_header_timeout ${o.client.timeoutSeconds}s;
    client_body_timeout ${o.client.timeoutSeconds}s;
    send_timeout ${Math.max(30, o.client.timeoutSeconds)}s;
    reset_timedout_connection on;
${accessLog(o.continueRequestId, o.redactSignatures)}

    # The service's Lua, then Debian's Lua libraries (lua-resty-core, cjson, nginx.redis).
    lua_package_path ${luaString(luaPath)};
    # Memory every worker shares (each zone's size is fixed at start).
${dicts}
    # Settings are read once, as nginx loads this file; each worker then starts its timers.
    init_by_lua_block { ${o.init} }
    init_worker_by_lua_block { ${o.initWorker} }

${o.http}
}
`;
  // blocks a spec leaves out would otherwise leave runs of blank lines
  return conf.replace(/\n{3,}/g, '\n\n');
}
