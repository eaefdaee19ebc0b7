/**
 * Service units: what each service needs to run (Debian packages or an image,
 * rendered files, secrets, a command, what it keeps, whom it talks to, a health
 * check). Every target maps units onto its own mechanism, the same way for every
 * unit: child processes natively, containers with @pulumi/docker, instances from
 * cloud-init. That keeps the targets thin mappings instead of three copies of the
 * system: adding a service is adding a unit here.
 */
import * as path from 'node:path';
import { renderBalancer } from '../../balancer/render';
import { renderEdge, type EdgeSecretFiles } from '../../edge/render';
import { renderPrometheus } from '../../observability/prometheus';
import { renderOriginEnv } from '../../origin/render';
import { secretFile, type Layout, type SecretName } from '../model/layout';
import type { RenderedFile } from '../model/rendered-file';
import type { CdnSpec } from '../model/spec';
import { acknowledgedAt, url, type EdgePlacement, type Placement, type Topology } from '../model/topology';
import { NGINX_ERROR_LOG, NGINX_LOGROTATE_CONF, NGINX_LOGS_DIR, NGINX_OPEN_FILES, renderLogrotate } from '../render/nginx';
import { renderRedis, type RedisOptions } from '../render/redis';

/** The CDN's own services: this repository's code and Debian packages, on every target. */
export type OwnRole = 'redis' | 'origin' | 'edge' | 'balancer' | 'prometheus';
/** Services the deployed stacks run from third-party images (never natively). */
export type ImageRole = 'object-store' | 'grafana' | 'loki' | 'log-shipper';
export type Role = OwnRole | ImageRole;

/** Third-party images by name; the targets pin each to a reference (infra/targets/pulumi/images.ts). */
export type ThirdPartyImage = 'minio' | 'grafana' | 'loki' | 'alloy';

export type HealthCheck =
  | { kind: 'http'; url: string }
  | { kind: 'redis'; host: string; port: number }
  /** A command run beside the service (inside its container). */
  | { kind: 'command'; command: string[] };

/** A port other units dial: `peer` is the unit that dials it. */
export interface Connection {
  peer: string;
  port: number;
  /** What the connection is for (security group rule descriptions). */
  purpose: string;
}

export interface ServiceUnit {
  name: string;
  role: Role;
  region?: string;
  /** Debian packages the unit needs (the setup script, Dockerfiles and cloud-init install them). */
  packages: string[];
  /** A third-party image the unit runs from instead (image-based units: never natively). */
  image?: ThirdPartyImage;
  /**
   * Units that share one machine name it (Prometheus, Grafana and Loki: `monitoring`);
   * every other unit is its own group. The aws target gives each group an instance.
   */
  group: string;
  /** Absolute directory of the unit: its files, logs, cache and data. */
  dir: string;
  /** Directories to create under `dir` before start. */
  dirs: string[];
  /** Relative to `dir`, or absolute (image-based units: paths inside the image). */
  files: RenderedFile[];
  /** Directories of this repository the unit reads, and where (Grafana's dashboards). */
  trees: { source: string; target: string }[];
  command: string[];
  env: Record<string, string>;
  /** Who the process runs as: a user name (own units, via scripts/run-unit.sh), or the uid an image runs as. */
  user: string;
  /** Secret files the unit reads (under the layout's secrets directory); nothing else of the secrets reaches it. */
  secrets: SecretName[];
  /** What outlives the process (cache, data, logs another unit reads): relative to `dir`, or absolute. */
  volumes: string[];
  /** Other units' volumes this one reads, read-only, and where (the log shipper reads nginx logs). */
  reads: { unit: string; volume: string; at: string }[];
  /** Host paths mounted read-only (the Docker socket, for the docker log shipper). */
  hostPaths: string[];
  /** Descriptors the process raises its limit to (nginx); the target allows at least this many. */
  openFiles?: number;
  health: HealthCheck | null;
  /** The URL a person uses (or null for internal-only services). */
  url: string | null;
  /** The port people reach from outside the stack: shoppers (the internet) or operators (the stack's network). */
  published?: { port: number; audience: 'shoppers' | 'operators' };
  /** Who dials which of this unit's ports; nothing else may reach it. */
  accepts: Connection[];
  /** Units that must be healthy first. */
  dependsOn: string[];
  /** The log shipper on the aws target runs once on every machine rather than once per stack. */
  onEveryHost?: boolean;
  /**
   * A shell script (sh) run inside the unit's container once its health check passes,
   * reading secrets from their files: the object store's read-only user for the edges.
   * Targets that cannot run it do not give the unit the secrets it needs (see deployed.ts).
   */
  postStart?: { purpose: string; script: string };
}

/** Debian packages per own role: the single list the setup script, Dockerfiles and cloud-init share. */
export const PACKAGES: Record<OwnRole, string[]> = {
  redis: ['redis-server'],
  origin: [],
  edge: ['nginx', 'libnginx-mod-http-lua', 'libnginx-mod-http-ndk', 'lua-resty-core', 'lua-resty-lrucache', 'lua-nginx-redis', 'lua-cjson', 'logrotate'],
  balancer: ['nginx', 'libnginx-mod-http-lua', 'libnginx-mod-http-ndk', 'lua-resty-core', 'lua-resty-lrucache', 'lua-cjson', 'logrotate'],
  prometheus: ['prometheus'],
};

/** The user each own role's process runs as (created by its Debian package or the origin image). */
export const RUN_AS: Record<OwnRole, string> = { redis: 'redis', origin: 'cdn', edge: 'root', balancer: 'root', prometheus: 'prometheus' };

export interface CdnUnitOptions {
  spec: CdnSpec;
  topology: Topology;
  layout: Layout;
  adminTokenFile: string;
  /** The debug token's file: the edges get it, never the admin token. */
  debugTokenFile: string;
  /** The URL signing keys' file (spec secrets.urlSigningKeys): edges verify signed URLs, the origin signs them. */
  urlSigningKeysFile: string;
  withPrometheus: boolean;
}

/** The roles whose unit is an nginx (nginxUnit): logs under logs/, descriptor limits. */
export function runsNginx(role: Role): boolean {
  return role === 'edge' || role === 'balancer';
}

export function isOwnRole(role: Role): role is OwnRole {
  return role in PACKAGES;
}

/** The fields every unit of the CDN's own services shares; the rest is the unit's own. */
function ownUnit(name: string, role: OwnRole, layout: Layout, rest: Omit<ServiceUnit, 'name' | 'role' | 'packages' | 'group' | 'dir' | 'trees' | 'user' | 'reads' | 'hostPaths'>): ServiceUnit {
  return { name, role, packages: PACKAGES[role], group: name, dir: layout.unitDir(name), trees: [], user: RUN_AS[role], reads: [], hostPaths: [], ...rest };
}

function nginxUnit(name: string, layout: Layout, files: RenderedFile[]): Pick<ServiceUnit, 'dirs' | 'files' | 'command' | 'env' | 'volumes' | 'openFiles'> {
  const dir = layout.unitDir(name);
  return {
    dirs: [NGINX_LOGS_DIR, 'cache', 'tmp', 'conf'],
    files: [...files, { path: NGINX_LOGROTATE_CONF, content: renderLogrotate(dir) }],
    command: [layout.nginx, '-p', dir, '-c', path.join(dir, 'conf', 'nginx.conf'), '-e', path.join(dir, NGINX_ERROR_LOG), '-g', 'daemon off;'],
    // scripts/run-unit.sh rotates the logs with it (the deployed targets)
    env: { CDN_LOGROTATE: path.join(dir, NGINX_LOGROTATE_CONF) },
    // the log shipper reads logs/ from beside the container
    volumes: [NGINX_LOGS_DIR],
    openFiles: NGINX_OPEN_FILES,
  };
}

/** Secret files a unit of the CDN reads, given the spec: the Redis password when the bus has one, the bucket keys with S3 storage. */
function bucketKeys(spec: CdnSpec, who: 'origin' | 'edge'): SecretName[] {
  if (spec.storage.kind !== 's3') return [];
  // The edges sign their bucket reads with their own (read-only) keys when the spec names them.
  return who === 'edge' && spec.storage.edgeAccessKeySecret ? ['s3EdgeAccessKey', 's3EdgeSecretKey'] : ['s3AccessKey', 's3SecretKey'];
}

const redisPassword = (spec: CdnSpec): SecretName[] => (spec.secrets.redisPassword ? ['redisPassword'] : []);

/** What a Redis server (primary or replica) reads: the password include, and with cross-region TLS its certificate, key and CA. */
function redisServerSecrets(spec: CdnSpec, topology: Topology): SecretName[] {
  return [...(spec.secrets.redisPassword ? (['redisAuthConf', 'redisPassword'] as const) : []), ...(topology.redisTls ? (['redisTlsCert', 'redisTlsKey', 'redisTlsCa'] as const) : [])];
}

function redisServerOptions(spec: CdnSpec, topology: Topology, layout: Layout): Omit<RedisOptions, 'replicaOf'> {
  const file = (name: SecretName) => secretFile(layout, name);
  const [cert, key, ca] = [file('redisTlsCert'), file('redisTlsKey'), file('redisTlsCa')];
  return {
    authInclude: spec.secrets.redisPassword ? file('redisAuthConf') : undefined,
    // (renderRedis refuses a TLS listener without them: a layout with no secret files)
    tls: topology.redisTls && cert && key && ca ? { cert, key, ca } : undefined,
  };
}

export function edgeUnit(spec: CdnSpec, topology: Topology, edge: EdgePlacement, layout: Layout, files?: EdgeSecretFiles): ServiceUnit {
  const name = `edge-${edge.id}`;
  const replica = topology.redisReplicas?.[edge.region];
  return {
    ...ownUnit(name, 'edge', layout, {
      ...nginxUnit(name, layout, renderEdge(spec, topology, edge, layout, files)),
      // the cache outlives the container too
      volumes: ['cache', NGINX_LOGS_DIR],
      // the debug token unlocks the X-Cdn-Debug headers, and nothing at the origin
      secrets: ['debugToken', 'urlSigningKeys', ...redisPassword(spec), ...(replica ? (['redisTlsCa'] as const) : []), ...bucketKeys(spec, 'edge')],
      health: { kind: 'http', url: url(edge.internal.reach, '/healthz') },
      url: url(edge.traffic.reach),
      accepts: [
        { peer: 'balancer', port: edge.traffic.listen.port, purpose: 'traffic from the balancer' },
        { peer: 'balancer', port: edge.internal.listen.port, purpose: 'health checks and write invalidations from the balancer' },
        ...scrapedBy(topology, edge.internal),
      ],
      // (its region's replica of the purge stream, when there is one)
      dependsOn: ['origin', ...(replica ? [replicaName(edge.region)] : [])],
    }),
    region: edge.region,
  };
}

/** The unit of a region's read-only replica of the purge stream's Redis. */
export const replicaName = (region: string) => `redis-${region}`;

function redisReplicaUnit(spec: CdnSpec, topology: Topology, region: string, layout: Layout): ServiceUnit {
  const name = replicaName(region);
  const placement = topology.redisReplicas![region];
  const edges = topology.edges.filter((e) => e.region === region).map((e) => `edge-${e.id}`);
  return {
    ...ownUnit(name, 'redis', layout, {
      dirs: ['data'],
      files: renderRedis(topology, { replicaOf: region, ...redisServerOptions(spec, topology, layout) }),
      command: [layout.redisServer, path.join(layout.unitDir(name), 'redis.conf')],
      env: {},
      secrets: redisServerSecrets(spec, topology),
      volumes: ['data'],
      health: { kind: 'redis', host: placement.reach.host, port: placement.reach.port },
      url: `redis://${placement.reach.host}:${placement.reach.port}`,
      accepts: edges.map((e) => ({ peer: e, port: placement.listen.port, purpose: `purge stream for ${e}` })),
      dependsOn: ['redis'],
    }),
    region,
  };
}

/** Prometheus scrapes this listener, when the stack has one. */
function scrapedBy(topology: Topology, listener: Placement): Connection[] {
  return topology.prometheus ? [{ peer: 'prometheus', port: listener.listen.port, purpose: 'metrics from Prometheus' }] : [];
}

const edgeNames = (topology: Topology) => topology.edges.map((e) => `edge-${e.id}`);

/** The units of the CDN's own services, in dependency order. */
export function cdnUnits(o: CdnUnitOptions): ServiceUnit[] {
  const { spec, topology, layout } = o;
  const units: ServiceUnit[] = [];

  const redisDir = layout.unitDir('redis');
  units.push(
    ownUnit('redis', 'redis', layout, {
      dirs: ['data'],
      files: renderRedis(topology, redisServerOptions(spec, topology, layout)),
      command: [layout.redisServer, path.join(redisDir, 'redis.conf')],
      env: {},
      secrets: redisServerSecrets(spec, topology),
      // the purge stream edges catch up from
      volumes: ['data'],
      health: { kind: 'redis', host: topology.redis.reach.host, port: topology.redis.reach.port },
      url: `redis://${topology.redis.reach.host}:${topology.redis.reach.port}`,
      accepts: [
        // edges read the stream here, or only acknowledge here (over TLS) when their region has a replica
        ...topology.edges.map((e) => ({ peer: `edge-${e.id}`, port: acknowledgedAt(topology, e.region).listen.port, purpose: `purge stream for edge-${e.id}` })),
        ...Object.keys(topology.redisReplicas ?? {}).map((r) => ({ peer: replicaName(r), port: topology.redisTls!.listen.port, purpose: `replication to ${r} (TLS)` })),
        { peer: 'origin', port: topology.redis.listen.port, purpose: 'purges from the origin' },
      ],
      dependsOn: [],
    }),
  );

  for (const region of Object.keys(topology.redisReplicas ?? {})) units.push(redisReplicaUnit(spec, topology, region, layout));

  const originDir = layout.unitDir('origin');
  units.push(
    ownUnit('origin', 'origin', layout, {
      dirs: ['storage'],
      files: [],
      command: [layout.node, layout.originEntry],
      env: renderOriginEnv(spec, topology, path.join(originDir, 'storage'), {
        adminTokenFile: o.adminTokenFile,
        debugTokenFile: o.debugTokenFile,
        urlSigningKeysFile: o.urlSigningKeysFile,
        // Present only where the layout has a secrets directory (docker, aws).
        redisPasswordFile: secretFile(layout, 'redisPassword'),
        s3AccessKeyFile: secretFile(layout, 's3AccessKey'),
        s3SecretKeyFile: secretFile(layout, 's3SecretKey'),
      }),
      secrets: ['adminToken', 'debugToken', 'urlSigningKeys', ...redisPassword(spec), ...bucketKeys(spec, 'origin')],
      // With filesystem storage the assets are in storage/ (unless the spec puts them
      // elsewhere): they outlive the process (a container's volume on docker).
      volumes: spec.storage.kind === 'filesystem' && spec.storage.path === undefined ? ['storage'] : [],
      health: { kind: 'http', url: url(topology.originApi.reach, '/readyz') },
      // what operators use: the API (the delivery listener serves the edges only)
      url: url(topology.originApi.reach),
      published: { port: topology.originApi.listen.port, audience: 'operators' },
      accepts: [
        ...edgeNames(topology).map((e) => ({ peer: e, port: topology.origin.listen.port, purpose: `misses from ${e}` })),
        ...scrapedBy(topology, topology.originApi),
      ],
      dependsOn: ['redis', ...(topology.objectStore ? ['object-store'] : [])],
    }),
  );

  for (const edge of topology.edges) units.push(edgeUnit(spec, topology, edge, layout, { debugTokenFile: o.debugTokenFile, urlSigningKeysFile: o.urlSigningKeysFile }));

  const balancer = topology.balancer;
  units.push(
    ownUnit('balancer', 'balancer', layout, {
      ...nginxUnit('balancer', layout, renderBalancer(spec, topology, layout)),
      secrets: [],
      health: { kind: 'http', url: url(balancer.internal.reach, '/healthz') },
      url: url(balancer.traffic.reach),
      published: { port: balancer.traffic.listen.port, audience: 'shoppers' },
      accepts: [...scrapedBy(topology, balancer.internal), { peer: 'origin', port: balancer.internal.listen.port, purpose: 'cache warming from the origin' }],
      dependsOn: edgeNames(topology),
    }),
  );

  if (o.withPrometheus && topology.prometheus) {
    const dir = layout.unitDir('prometheus');
    const p = topology.prometheus;
    units.push({
      ...ownUnit('prometheus', 'prometheus', layout, {
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
        secrets: [],
        volumes: ['data'],
        health: { kind: 'http', url: url(p.reach, '/-/ready') },
        url: url(p.reach),
        accepts: topology.grafana ? [{ peer: 'grafana', port: p.listen.port, purpose: 'queries from Grafana' }] : [],
        dependsOn: ['origin', 'balancer'],
      }),
      group: topology.grafana ? 'monitoring' : 'prometheus',
    });
  }
  return units;
}
