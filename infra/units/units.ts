/**
 * Service units: what each box needs to run (Debian packages, rendered files, a
 * command, a health check). Every target maps units onto its own mechanism: child
 * processes natively, containers with @pulumi/docker, systemd units from cloud-init.
 * That keeps the targets thin mappings instead of three copies of the system.
 */
import * as path from 'node:path';
import { renderBalancer } from '../../balancer/render';
import { renderEdge } from '../../edge/render';
import { renderPrometheus } from '../../observability/prometheus';
import { renderOriginEnv } from '../../origin/render';
import { secretFile, type Layout } from '../model/layout';
import { NGINX_ERROR_LOG, NGINX_LOGROTATE_CONF, NGINX_LOGS_DIR, renderLogrotate } from '../render/nginx';
import { renderRedis } from '../render/redis';
import type { RenderedFile } from '../model/rendered-file';
import type { CdnSpec } from '../model/spec';
import { url, type EdgePlacement, type Topology } from '../model/topology';

export type Role = 'redis' | 'origin' | 'edge' | 'balancer' | 'prometheus';

export type HealthCheck = { kind: 'http'; url: string } | { kind: 'redis'; host: string; port: number };

export interface ServiceUnit {
  name: string;
  role: Role;
  region?: string;
  /** Debian packages the unit needs (the setup script, Dockerfiles and cloud-init install them). */
  packages: string[];
  /** Absolute directory of the unit: its files, logs, cache and data. */
  dir: string;
  /** Directories to create under `dir` before start. */
  dirs: string[];
  files: RenderedFile[];
  command: string[];
  env: Record<string, string>;
  health: HealthCheck;
  /** The URL a person uses (or null for internal-only services). */
  url: string | null;
  /** Units that must be healthy first. */
  dependsOn: string[];
}

/** Debian packages per role: the single list the setup script, Dockerfiles and cloud-init share. */
export const PACKAGES: Record<Role, string[]> = {
  redis: ['redis-server'],
  origin: [],
  edge: ['nginx', 'libnginx-mod-http-lua', 'libnginx-mod-http-ndk', 'lua-resty-core', 'lua-resty-lrucache', 'lua-nginx-redis', 'lua-cjson', 'logrotate'],
  balancer: ['nginx', 'libnginx-mod-http-lua', 'libnginx-mod-http-ndk', 'lua-resty-core', 'lua-resty-lrucache', 'lua-cjson', 'logrotate'],
  prometheus: ['prometheus'],
};

export interface UnitOptions {
  spec: CdnSpec;
  topology: Topology;
  layout: Layout;
  adminTokenFile: string;
  withPrometheus: boolean;
}

/** The roles whose unit is an nginx (nginxUnit): logs under logs/, descriptor limits. */
export function runsNginx(role: Role): boolean {
  return role === 'edge' || role === 'balancer';
}

function nginxUnit(name: string, layout: Layout, files: RenderedFile[]): Pick<ServiceUnit, 'dir' | 'dirs' | 'files' | 'command' | 'env'> {
  const dir = layout.unitDir(name);
  return {
    dir,
    dirs: [NGINX_LOGS_DIR, 'cache', 'tmp', 'conf'],
    files: [...files, { path: NGINX_LOGROTATE_CONF, content: renderLogrotate(dir) }],
    command: [layout.nginx, '-p', dir, '-c', path.join(dir, 'conf', 'nginx.conf'), '-e', path.join(dir, NGINX_ERROR_LOG), '-g', 'daemon off;'],
    // scripts/run-unit.sh rotates the logs with it (the deployed targets)
    env: { CDN_LOGROTATE: path.join(dir, NGINX_LOGROTATE_CONF) },
  };
}

export function edgeUnit(spec: CdnSpec, topology: Topology, edge: EdgePlacement, layout: Layout, adminTokenFile?: string): ServiceUnit {
  const name = `edge-${edge.id}`;
  return {
    name,
    role: 'edge',
    region: edge.region,
    packages: PACKAGES.edge,
    ...nginxUnit(name, layout, renderEdge(spec, topology, edge, layout, adminTokenFile)),
    health: { kind: 'http', url: url(edge.internal.reach, '/healthz') },
    url: url(edge.traffic.reach),
    dependsOn: ['origin'],
  };
}

export function buildUnits(o: UnitOptions): ServiceUnit[] {
  const { spec, topology, layout } = o;
  const units: ServiceUnit[] = [];

  const redisDir = layout.unitDir('redis');
  units.push({
    name: 'redis',
    role: 'redis',
    packages: PACKAGES.redis,
    dir: redisDir,
    dirs: ['data'],
    files: renderRedis(topology, { authInclude: spec.secrets.redisPassword ? secretFile(layout, 'redisAuthConf') : undefined }),
    command: [layout.redisServer, path.join(redisDir, 'redis.conf')],
    env: {},
    health: { kind: 'redis', host: topology.redis.reach.host, port: topology.redis.reach.port },
    url: `redis://${topology.redis.reach.host}:${topology.redis.reach.port}`,
    dependsOn: [],
  });

  const originDir = layout.unitDir('origin');
  units.push({
    name: 'origin',
    role: 'origin',
    packages: PACKAGES.origin,
    dir: originDir,
    dirs: ['storage'],
    files: [],
    command: [layout.node, layout.originEntry],
    env: renderOriginEnv(spec, topology, path.join(originDir, 'storage'), {
      adminTokenFile: o.adminTokenFile,
      // Present only where the layout has a secrets directory (docker, aws).
      redisPasswordFile: secretFile(layout, 'redisPassword'),
      s3AccessKeyFile: secretFile(layout, 's3AccessKey'),
      s3SecretKeyFile: secretFile(layout, 's3SecretKey'),
    }),
    health: { kind: 'http', url: url(topology.origin.reach, '/readyz') },
    url: url(topology.origin.reach),
    dependsOn: ['redis'],
  });

  for (const edge of topology.edges) units.push(edgeUnit(spec, topology, edge, layout, o.adminTokenFile));

  units.push({
    name: 'balancer',
    role: 'balancer',
    packages: PACKAGES.balancer,
    ...nginxUnit('balancer', layout, renderBalancer(spec, topology, layout)),
    health: { kind: 'http', url: url(topology.balancer.internal.reach, '/healthz') },
    url: url(topology.balancer.traffic.reach),
    dependsOn: topology.edges.map((e) => `edge-${e.id}`),
  });

  if (o.withPrometheus && topology.prometheus) {
    const dir = layout.unitDir('prometheus');
    const p = topology.prometheus;
    units.push({
      name: 'prometheus',
      role: 'prometheus',
      packages: PACKAGES.prometheus,
      dir,
      dirs: ['data'],
      files: renderPrometheus(topology),
      command: [
        layout.prometheus,
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=${p.listen.host}:${p.listen.port}`,
        '--storage.tsdb.retention.time=2d',
      ],
      env: {},
      health: { kind: 'http', url: url(p.reach, '/-/ready') },
      url: url(p.reach),
      dependsOn: ['origin', 'balancer'],
    });
  }
  return units;
}
