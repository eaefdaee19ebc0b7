/**
 * Renders the balancer's files: nginx.conf and the JSON settings (regions, edges and
 * their health-check addresses, fallback order, health and bounded-load parameters)
 * its Lua reads. Pure, like every renderer.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { clientLimits, DROP_OVERRIDE_HEADERS, internalServer, luaString, renderNginxConf } from '../infra/render/nginx';
import type { Layout } from '../infra/model/layout';
import { LATENCY_BUCKETS } from '../origin/contract/metrics';
import { regionOrder, type CdnSpec } from '../infra/model/spec';
import { hostPort, type Topology } from '../infra/model/topology';
import type { RenderedFile } from '../infra/model/rendered-file';

export interface BalancerEdge {
  id: string;
  /** Shopper traffic goes here. */
  host: string;
  port: number;
  /** The edge's internal listener, where the balancer's active checks GET /healthz. */
  health: { host: string; port: number };
}

export interface BalancerSettings {
  /** Changes whenever anything below changes; /healthz reports it, so a reload can be awaited. */
  revision: string;
  regions: { name: string; edges: BalancerEdge[] }[];
  /** Regions in fallback order: the default region first. */
  order: string[];
  /**
   * Extra attempts on other edges after a failed one (not for the methods
   * outside RETRIED_METHODS). nginx.conf carries them (one placeholder server
   * per try); kept here for /status.json readers.
   */
  retries: number;
  /** nginx's variable for the header a trusted proxy names the shopper's region in. */
  regionHeaderVariable: string;
  /** For the status page and the Lua's fast paths; nginx's geo blocks do the matching. */
  trustedProxies: string[];
  cidrRegions: { cidr: string; region: string }[];
  health: { interval: number; timeout: number; fall: number; rise: number };
  /** Bounded-load factor c (Mirrokni et al.). */
  boundedLoad: number;
  /** In-flight requests an edge always takes before the bound applies. */
  boundedLoadFloor: number;
  /** Served hosts (lowercase, no port), or null for any host. */
  hosts: string[] | null;
  /** Certificate files nginx serves (spec balancer.tls): their expiry is exported on /metrics. */
  tlsCertificates: string[];
  /** Bounds of the latency histograms, in seconds: the same on every layer. */
  latencyBuckets: number[];
}

export function balancerSettings(spec: CdnSpec, topology: Topology): BalancerSettings {
  const b = spec.balancer;
  const body: Omit<BalancerSettings, 'revision'> = {
    regions: spec.regions.map((r) => ({
      name: r.name,
      edges: topology.edges
        .filter((e) => e.region === r.name)
        .map((e) => ({
          id: e.id,
          host: e.traffic.reach.host,
          port: e.traffic.reach.port,
          health: { host: e.internal.reach.host, port: e.internal.reach.port },
        })),
    })),
    order: regionOrder(spec),
    retries: b.retries,
    regionHeaderVariable: headerVariable(b.regionHeader),
    trustedProxies: [...b.trustedProxies],
    cidrRegions: b.cidrRegions.map((c) => ({ ...c })),
    health: { ...b.health },
    boundedLoad: b.boundedLoad,
    boundedLoadFloor: b.boundedLoadFloor,
    hosts: b.hosts ? [...b.hosts] : null,
    tlsCertificates: b.tls ? [b.tls.cert] : [],
    latencyBuckets: [...LATENCY_BUCKETS],
  };
  const revision = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 12);
  return { revision, ...body };
}

/** Longest prefix first, so the reader sees what wins (nginx's geo does the same itself). */
function geoBlocks(spec: CdnSpec): string {
  const b = spec.balancer;
  const prefix = (c: string) => Number(c.split('/')[1]);
  const proxies = b.trustedProxies.map((c) => `        proxy ${c};`).join('\n');
  const regions = [...b.cidrRegions].sort((x, y) => prefix(y.cidr) - prefix(x.cidr)).map((c) => `        ${c.cidr} ${c.region};`);
  const trusted = b.trustedProxies.map((c) => `        ${c} 1;`);
  return `    # The client network's region (spec balancer.cidrRegions). For a trusted proxy
    # the client address is taken from its X-Forwarded-For instead of the peer's.
    # https://nginx.org/en/docs/http/ngx_http_geo_module.html
    geo $cdn_cidr_region {
${proxies ? proxies + '\n        proxy_recursive;\n' : ''}        default "";
${regions.join('\n')}
    }

    # Peers whose region header and X-Forwarded-For are believed (balancer.trustedProxies).
    geo $cdn_trusted_peer {
        default 0;
${trusted.join('\n')}
    }
${trustsProxies(spec) ? TRUSTED_PEER_MAPS : ''}
    # Requests in progress per client address${trustsProxies(spec) ? '; trusted proxies (an empty key) are\n    # not counted' : ''}. https://nginx.org/en/docs/http/ngx_http_limit_conn_module.html
    limit_conn_zone ${trustsProxies(spec) ? '$cdn_conn_key' : '$binary_remote_addr'} zone=cdn_conn:10m;`;
}

/**
 * Whether peers may speak for clients (balancer.trustedProxies): only then are
 * $cdn_trusted_peer and the maps on it rendered and looked up per request.
 */
function trustsProxies(spec: CdnSpec): boolean {
  return spec.balancer.trustedProxies.length > 0;
}

// Only with trusted proxies configured: without, every peer is a client and
// nginx's own variables do (each map costs a lookup per request).
const TRUSTED_PEER_MAPS = `
    # Forwarding headers are set here: a trusted proxy's chain is extended, anyone
    # else's X-Forwarded-For is replaced by the address we saw.
    map $cdn_trusted_peer $cdn_forwarded_for {
        "1" $proxy_add_x_forwarded_for;
        default $remote_addr;
    }

    map $cdn_trusted_peer $cdn_conn_key {
        "1" "";
        default $binary_remote_addr;
    }
`;

/**
 * What routing depends on, as one variable: the key of the balancer's per-worker
 * route memo (balancer.lua). The region sources the spec configures (each costs a
 * lookup per request, so unconfigured ones stay out), the host, the target.
 */
function routeSignature(spec: CdnSpec): string {
  const b = spec.balancer;
  const parts: string[] = [];
  // "0"/"1", then the header (believed from trusted peers only)
  if (trustsProxies(spec)) parts.push(`$cdn_trusted_peer$${headerVariable(b.regionHeader)}`);
  if (b.cidrRegions.length > 0) parts.push('$cdn_cidr_region');
  return [...parts, '$host', '$http_host', '$request_uri'].join('\\n');
}

function tlsDirectives(spec: CdnSpec): string {
  const tls = spec.balancer.tls;
  if (!tls) return '';
  return `        # TLS termination (spec balancer.tls); edges are reached over plain HTTP inside.
        ssl_certificate ${tls.cert};
        ssl_certificate_key ${tls.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:cdn_tls:10m;
        ssl_session_timeout 1h;
`;
}

/** nginx's variable for a request header: X-Cdn-Region -> http_x_cdn_region. */
function headerVariable(name: string): string {
  return `http_${name.toLowerCase().replace(/-/g, '_')}`;
}

/** Methods nginx may send to another edge after a failure (GET implies HEAD; nginx refuses TRACE itself). */
const RETRIED_METHODS = ['GET', 'OPTIONS', 'PUT', 'DELETE', 'POST', 'PATCH', 'LOCK'];

// Only with served hosts configured (spec balancer.hosts): otherwise the Lua
// never answers 421, and each \`if\` costs a test on every request.
const REFUSE_UNKNOWN_HOST = `        if ($cdn_refuse = "421") {
            return 421;
        }
`;

/** An upstream the Lua balancer picks every peer of, allowing `tries` attempts. */
function luaUpstream(name: string, tries: number): string {
  const placeholders = Array.from({ length: tries }, (_, i) => `        server 0.0.0.${i + 1}:1;`).join('\n');
  return `    upstream ${name} {
${placeholders}
        balancer_by_lua_block { require("cdn.balancer").balance() }
        keepalive 64;
        keepalive_requests 10000;
    }`;
}

/**
 * The public readiness answer (200 ready / 503 not ready): every edge checked, its
 * last check passed, in rotation. Deployments poll it; it reveals nothing else.
 */
export const READY_PATH = '/.well-known/cdn-ready';

const STATUS_LOCATIONS = `        # Traffic status (the VTS replacement): a page, its JSON, and /metrics above.
        location = /status { content_by_lua_block { require("cdn.balancer").serve_status() } }
        location = /status.json { content_by_lua_block { require("cdn.balancer").serve_status_json() } }
        location = / { return 302 /status; }
        # Cache warming (the origin's POST /v1/warm): GET /warm/<path> goes to the
        # object's home edge in the region X-Cdn-Warm-Region names, as a
        # shopper's request there would, and is stored there.
        location ^~ /warm/ {
            limit_except GET { deny all; }
            set_by_lua_block $cdn_refuse { return require("cdn.balancer").route_warm() }
            if ($cdn_refuse) {
                return 400;
            }
            rewrite ^/warm(/.*)$ $1 break;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Cdn-Warm-Region "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 60s;
            proxy_pass http://edges_once;
            log_by_lua_block { require("cdn.balancer").log_warm() }
        }`;

export function renderBalancer(spec: CdnSpec, topology: Topology, layout: Layout): RenderedFile[] {
  const b = spec.balancer;
  const settingsPath = path.join(layout.unitDir('balancer'), 'balancer.json');
  const http = `${geoBlocks(spec)}

    # The health checker logs its own failures (at warn, with the edge's id); the
    # cosocket's generic "connect() failed" lines would only repeat them as errors.
    lua_socket_log_errors off;

    # What the log phase records, as one variable (see balancer.lua).
    map "" $cdn_log {
        default "$bytes_sent\\n$upstream_http_cache_status";
    }

    # Placeholders: the Lua balancer sets the real peer for every attempt. nginx
    # allows one try per server listed, so there is one per try (balancer.retries
    # + 1) instead of a set_more_tries call per request.
${luaUpstream('edges', b.retries + 1)}

${luaUpstream('edges_once', 1)}

    server {
        listen ${hostPort(topology.balancer.traffic.listen)}${b.tls ? ' ssl' : ''} backlog=4096;
        server_name _;
${tlsDirectives(spec)}        client_body_temp_path tmp;
        proxy_temp_path tmp;
        limit_conn cdn_conn ${b.maxConnsPerClient};
        limit_conn_status 429;
        limit_conn_log_level warn;

        # Front-door checks, region, and the object key the ring hashes. set_by_lua
        # runs without a coroutine (cheaper than access_by_lua); nginx's own
        # \`return 400\` also closes the connection, so nothing pipelined behind a
        # refused request is read as a request.
        # The request's signature, the one variable the Lua routing reads.
        set $cdn_route "${routeSignature(spec)}";
        set_by_lua_block $cdn_refuse { return require("cdn.balancer").route() }
        if ($cdn_refuse = "400") {
            return 400;
        }
${b.hosts ? REFUSE_UNKNOWN_HOST : ''}        # Statistics for every request of this server, refused ones included.
        log_by_lua_block { require("cdn.balancer").log() }

        # Readiness for deployments (the aws target's readiness check polls it):
        # 200 when every edge has passed its health check and is in rotation, 503
        # otherwise, and nothing more. Answered here, never proxied or cached.
        location = ${READY_PATH} {
            content_by_lua_block { require("cdn.balancer").serve_ready() }
        }

        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # Forwarding headers are set here, never passed on from clients.
            proxy_set_header X-Forwarded-For ${trustsProxies(spec) ? '$cdn_forwarded_for' : '$remote_addr'};
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header X-Forwarded-Port "";
            proxy_set_header X-Real-IP "";
            proxy_set_header Forwarded "";
            proxy_set_header ${b.regionHeader} "";
            proxy_set_header X-Request-Id $cdn_request_id;
${DROP_OVERRIDE_HEADERS}
            # A dead edge costs one short connect timeout at most, then the next edge
            # on the ring is tried (see limit_except below for which requests may be).
            proxy_connect_timeout ${b.connectTimeout}s;
            proxy_read_timeout 60s;
            # Only what never reached an edge, or got no answer, is retried: an
            # origin's own 5xx, relayed by the edge, would otherwise reach a failing
            # origin twice.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries ${b.retries + 1};
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            # Bodies are passed on as they arrive, not read whole first.
            proxy_request_buffering off;
            proxy_pass http://edges;
            # Shoppers get the Date of the response (the origin's, kept by the edge
            # with the stored copy), not the time this hop passed it on.
            proxy_pass_header Date;
            # Methods that get one try only. nginx itself never sends a POST, PATCH
            # or LOCK to the next edge once one had it (a failed connect is retried:
            # it never arrived), but it would resend other non-idempotent methods
            # (MKCOL, MOVE, ...). limit_except only picks their upstream here (no
            # access rule): a method bit test, where an \`if\` cost a map lookup and
            # a rewrite phase on every request.
            limit_except ${RETRIED_METHODS.join(' ')} {
                proxy_pass http://edges_once;
            }
            add_header X-Request-Id $cdn_request_id always;
        }
    }

${internalServer(hostPort(topology.balancer.internal.listen), 'cdn.balancer', STATUS_LOCATIONS)}`;
  const conf = renderNginxConf({
    layout,
    workers: spec.workers,
    client: clientLimits(spec),
    luaRoots: [layout.balancerLuaRoot, layout.sharedLuaRoot],
    sharedDicts: {
      cdn_health: { size: '1m', holds: "Each edge's health: checks, failures, up or down" },
      cdn_metrics: { size: '4m', holds: 'Counters and histograms served on /metrics' },
    },
    init: `require("cdn.balancer").init(${luaString(settingsPath)})`,
    initWorker: 'require("cdn.balancer").init_worker()',
    continueRequestId: false,
    redactSignatures: spec.downloads.prefixes.length > 0,
    http,
  });
  return [
    { path: 'conf/nginx.conf', content: conf },
    { path: 'balancer.json', content: JSON.stringify(balancerSettings(spec, topology), null, 2) + '\n' },
  ];
}
