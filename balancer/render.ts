/**
 * Renders the balancer's files: nginx.conf and the JSON settings (regions, edges,
 * fallback order) its Lua reads. Pure, like every renderer.
 */
import * as path from 'node:path';
import { DROP_OVERRIDE_HEADERS, internalServer, luaString, renderNginxConf } from '../infra/nginx';
import type { Layout } from '../infra/layout';
import { regionOrder, type CdnSpec } from '../infra/spec';
import { hostPort, type Topology } from '../infra/topology';
import type { RenderedFile } from '../infra/units';

export interface BalancerSettings {
  regions: { name: string; edges: { id: string; host: string; port: number }[] }[];
  order: string[];
  /** Extra attempts on other edges after a failed one. */
  retries: number;
  /** Seconds a failed edge stays out of rotation before it is tried again. */
  failTimeout: number;
}

export function balancerSettings(spec: CdnSpec, topology: Topology): BalancerSettings {
  return {
    regions: spec.regions.map((r) => ({
      name: r.name,
      edges: topology.edges
        .filter((e) => e.region === r.name)
        .map((e) => ({ id: e.id, host: e.traffic.reach.host, port: e.traffic.reach.port })),
    })),
    order: regionOrder(spec),
    retries: 1,
    failTimeout: 5,
  };
}

export function renderBalancer(spec: CdnSpec, topology: Topology, layout: Layout): RenderedFile[] {
  const settingsPath = path.join(layout.unitDir('balancer'), 'balancer.json');
  const http = `    upstream edges {
        # Placeholder: the Lua balancer sets the real peer for every attempt.
        server 0.0.0.1:1;
        balancer_by_lua_block { require("cdn.balancer").balance() }
        keepalive 64;
    }

    server {
        listen ${hostPort(topology.balancer.traffic.listen)} backlog=4096;
        server_name _;
        client_body_temp_path tmp;
        proxy_temp_path tmp;

        location / {
            set $cdn_edge "";
            access_by_lua_block { require("cdn.balancer").access() }
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # Forwarding headers are set here, never passed on from clients.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header X-Request-Id $cdn_request_id;
${DROP_OVERRIDE_HEADERS}
            # A dead edge costs a 1 s connect timeout at most, then the next edge
            # on the ring is tried. Non-idempotent requests are never retried.
            proxy_connect_timeout 1s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 2;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass http://edges;
            add_header X-Request-Id $cdn_request_id always;
            log_by_lua_block { require("cdn.balancer").log() }
        }

    }

${internalServer(hostPort(topology.balancer.internal.listen), 'cdn.balancer')}`;
  const conf = renderNginxConf({
    layout,
    workers: spec.workers,
    luaRoots: [layout.balancerLuaRoot, layout.edgeLuaRoot],
    sharedDicts: { cdn_health: '1m', cdn_metrics: '2m' },
    init: `require("cdn.balancer").init(${luaString(settingsPath)})`,
    initWorker: 'require("cdn.balancer").init_worker()',
    continueRequestId: false,
    http,
  });
  return [
    { path: 'conf/nginx.conf', content: conf },
    { path: 'balancer.json', content: JSON.stringify(balancerSettings(spec, topology), null, 2) + '\n' },
  ];
}
