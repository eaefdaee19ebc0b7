/**
 * Renders one edge's files: nginx.conf and the JSON settings its Lua reads.
 * Pure: the same inputs give the same bytes on every target.
 */
import * as path from 'node:path';
import { DROP_OVERRIDE_HEADERS, internalServer, luaString, renderNginxConf } from '../infra/nginx';
import type { Layout } from '../infra/layout';
import type { CdnSpec } from '../infra/spec';
import { hostPort, type EdgePlacement, type Topology } from '../infra/topology';
import type { RenderedFile } from '../infra/units';

export interface EdgeSettings {
  id: string;
  region: string;
  stream: string;
  /** `passwordFile` (mode 0600) holds the Redis password when the bus requires one. */
  redis: { host: string; port: number; passwordFile?: string };
}

export function edgeSettings(spec: CdnSpec, topology: Topology, edge: EdgePlacement): EdgeSettings {
  return {
    id: edge.id,
    region: edge.region,
    stream: spec.purge.stream,
    redis: { host: topology.redis.reach.host, port: topology.redis.reach.port },
  };
}

export function renderEdge(spec: CdnSpec, topology: Topology, edge: EdgePlacement, layout: Layout): RenderedFile[] {
  const dir = layout.unitDir(`edge-${edge.id}`);
  const settingsPath = path.join(dir, 'edge.json');
  const http = `    # Disk cache. Keys are computed in Lua (host, normalised path, filtered query,
    # invalidation generations); purges change the key instead of deleting files.
    # https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_cache_path
    proxy_cache_path cache levels=1:2 keys_zone=edge:${spec.cache.keysZone} max_size=${spec.cache.maxSize} inactive=${spec.cache.inactive} use_temp_path=off;
    proxy_temp_path tmp;
    client_body_temp_path tmp;

    upstream origin {
        server ${hostPort(topology.origin.reach)} max_fails=0;
        keepalive 32;
    }

    server {
        listen ${hostPort(edge.traffic.listen)} backlog=4096;
        server_name _;

        location / {
            set $cdn_cache_key "";
            access_by_lua_block { require("cdn.edge").access() }

            proxy_cache edge;
            proxy_cache_key $cdn_cache_key;
            proxy_cache_methods GET HEAD;
            # Only what the origin marks cacheable is stored (no proxy_cache_valid):
            # never by file extension (web cache deception).
            proxy_cache_revalidate on;
            # Concurrent misses for one key wait for the first fetch (collapsing).
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            proxy_cache_lock_age 10s;
            # Serve the stored copy while the origin fails or while it refreshes.
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;

            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id $cdn_request_id;
${DROP_OVERRIDE_HEADERS}
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass http://origin;

            header_filter_by_lua_block { require("cdn.edge").header_filter() }
            log_by_lua_block { require("cdn.edge").log() }
        }

        # The origin's operational endpoints are for monitoring, not the internet.
        location ~ ^/(metrics|healthz|readyz)$ {
            return 404;
        }
    }

${internalServer(hostPort(edge.internal.listen), 'cdn.edge')}`;
  const conf = renderNginxConf({
    layout,
    workers: spec.workers,
    luaRoots: [layout.edgeLuaRoot],
    sharedDicts: { cdn_gens: '16m', cdn_tags: '32m', cdn_state: '1m', cdn_metrics: '4m' },
    init: `require("cdn.edge").init(${luaString(settingsPath)})`,
    initWorker: 'require("cdn.edge").init_worker()',
    continueRequestId: true,
    http,
  });
  return [
    { path: 'conf/nginx.conf', content: conf },
    { path: 'edge.json', content: JSON.stringify(edgeSettings(spec, topology, edge), null, 2) + '\n' },
  ];
}
