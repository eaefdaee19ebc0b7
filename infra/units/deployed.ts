/**
 * The units only the deployed stacks (docker, aws) run, from third-party images: the
 * stack's own object store (MinIO), Loki, Grafana, and the log shipper (Grafana
 * Alloy). They are units like any other, so the targets map them the way they map
 * the CDN's own services: the same files, secrets, volumes and connections.
 */
import * as path from 'node:path';
import { alloyRunArgs, ALLOY_STORAGE, dockerLogDir, DOCKER_SOCKET, LOKI_URL_ENV, lokiPushUrl, renderAlloyConfig, renderSystemdAlloyConfig } from '../../observability/alloy';
import { GRAFANA_DASHBOARDS_DIR, GRAFANA_PROVISIONING, renderGrafanaDashboardsProvider, renderGrafanaDatasources } from '../../observability/grafana';
import { secretFile, type Layout } from '../model/layout';
import { url, type Topology } from '../model/topology';
import { NGINX_LOGS_DIR } from '../render/nginx';
import { runsNginx, type Connection, type ServiceUnit } from './units';

/** The ports the third-party images listen on (their own defaults). */
export const IMAGE_PORTS = { objectStore: 9000, grafana: 3000, loki: 3100 } as const;

/** Alloy's configuration inside its container (the image's default path). */
export const ALLOY_IMAGE_CONFIG = '/etc/alloy/config.alloy';

/**
 * How logs reach Loki. `docker`: one Alloy container reads the containers' output
 * through the Docker socket (only containers on `network`) and the nginx logs from
 * their volumes. `journal`: Alloy on every machine reads the journal and the nginx
 * logs of the units beside it (the aws target installs it from Grafana's Debian
 * repository at the image's version).
 */
export type LogShipping = { kind: 'docker'; network: string } | { kind: 'journal' };

export interface DeployedUnitsInput {
  topology: Topology;
  layout: Layout;
  /** The CDN's own units, already built: the log shipper reads their logs. */
  units: ServiceUnit[];
  logShipping?: LogShipping;
  /**
   * The edges read the stack's own object store with their own read-only keys: the
   * object store's unit creates that user (postStart) on this bucket.
   */
  objectStoreEdgeUser?: { bucket: string };
}

/** The MinIO policy of the edges' user: read objects of the stack's bucket, list it (so a missing key is 404, not 403). */
export function edgeReadPolicy(bucket: string): object {
  return {
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${bucket}/*`] },
      { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [`arn:aws:s3:::${bucket}`] },
    ],
  };
}

export const EDGE_POLICY_NAME = 'cdn-edge-read';

/**
 * Inside the MinIO container (its image ships mc and sh, not grep): the edges' user
 * with read-only access to the bucket. Root credentials reach mc through MC_HOST_*
 * (not its command line); every command is idempotent, so a replaced instance with
 * the same data volume runs it again harmlessly (mc before late 2024 refuses to
 * attach a policy twice: that answer counts as done).
 */
function edgeUserScript(layout: Layout, port: number, bucket: string): string {
  const file = (s: Parameters<typeof secretFile>[1]) => secretFile(layout, s)!;
  const policy = JSON.stringify(edgeReadPolicy(bucket));
  return [
    `MC_HOST_cdn="http://$(cat ${file('s3AccessKey')}):$(cat ${file('s3SecretKey')})@127.0.0.1:${port}"`,
    'export MC_HOST_cdn',
    `edge_key="$(cat ${file('s3EdgeAccessKey')})"`,
    `printf '%s' '${policy}' > /tmp/${EDGE_POLICY_NAME}.json`,
    `mc admin policy create cdn ${EDGE_POLICY_NAME} /tmp/${EDGE_POLICY_NAME}.json >/dev/null`,
    `rm -f /tmp/${EDGE_POLICY_NAME}.json`,
    `mc admin user add cdn "$edge_key" "$(cat ${file('s3EdgeSecretKey')})" >/dev/null`,
    `out="$(mc admin policy attach cdn ${EDGE_POLICY_NAME} --user "$edge_key" 2>&1)" || case "$out" in *"already in effect"*) ;; *) echo "$out" >&2; exit 1 ;; esac`,
    '',
  ].join('\n');
}

/** The fields an image-based unit leaves at their defaults. */
function imageUnit(layout: Layout, u: Pick<ServiceUnit, 'name' | 'role' | 'image' | 'user' | 'command'> & Partial<ServiceUnit>): ServiceUnit {
  return {
    packages: [],
    group: u.name,
    dir: layout.unitDir(u.name),
    dirs: [],
    files: [],
    trees: [],
    env: {},
    secrets: [],
    volumes: [],
    reads: [],
    hostPaths: [],
    health: null,
    url: null,
    accepts: [],
    dependsOn: [],
    ...u,
  };
}

export function deployedServiceUnits(input: DeployedUnitsInput): ServiceUnit[] {
  const { topology, layout, units } = input;
  const out: ServiceUnit[] = [];
  const edges = units.filter((u) => u.role === 'edge').map((u) => u.name);

  if (topology.objectStore) {
    const port = topology.objectStore.listen.port;
    out.push(
      imageUnit(layout, {
        name: 'object-store',
        role: 'object-store',
        image: 'minio',
        user: '0',
        command: ['server', '/data', '--address', `:${port}`],
        // MinIO's root user is the origin's key pair
        env: { MINIO_ROOT_USER_FILE: secretFile(layout, 's3AccessKey')!, MINIO_ROOT_PASSWORD_FILE: secretFile(layout, 's3SecretKey')! },
        secrets: ['s3AccessKey', 's3SecretKey', ...(input.objectStoreEdgeUser ? (['s3EdgeAccessKey', 's3EdgeSecretKey'] as const) : [])],
        ...(input.objectStoreEdgeUser
          ? { postStart: { purpose: "The edges' read-only user (s3:GetObject, s3:ListBucket on the stack's bucket)", script: edgeUserScript(layout, port, input.objectStoreEdgeUser.bucket) } }
          : {}),
        volumes: ['/data'],
        health: { kind: 'command', command: ['mc', 'ready', 'local'] },
        accepts: [
          // edges read raw assets on misses (signed; read-only keys when the spec names them)
          ...edges.map((e) => ({ peer: e, port, purpose: `asset reads from ${e}` })),
          { peer: 'origin', port, purpose: 'S3 API for the origin' },
        ],
      }),
    );
  }

  const loki = topology.loki;
  if (loki) {
    const shipping = input.logShipping;
    // Alloy on every machine (journal), or the one Alloy container (docker), pushes to Loki.
    const groups = [...new Map(units.filter((u) => u.group !== 'monitoring').map((u) => [u.group, u.name])).values()];
    const shippers: Connection[] =
      shipping?.kind === 'journal'
        ? [...groups, ...(topology.objectStore ? ['object-store'] : [])].map((peer) => ({ peer, port: loki.listen.port, purpose: `logs from Alloy on ${peer}` }))
        : shipping
          ? [{ peer: 'alloy', port: loki.listen.port, purpose: 'logs from Alloy' }]
          : [];
    out.push(
      imageUnit(layout, {
        name: 'loki',
        role: 'loki',
        image: 'loki',
        group: 'monitoring',
        user: '10001',
        command: ['-config.file=/etc/loki/local-config.yaml'],
        volumes: ['/loki'],
        accepts: shippers,
      }),
    );
    if (shipping) out.push(logShipper(shipping, loki.reach, units, layout));
  }

  if (topology.grafana) {
    if (!topology.prometheus || !units.some((u) => u.role === 'prometheus') || !loki) throw new Error('Grafana needs Prometheus and Loki in the stack');
    out.push(
      imageUnit(layout, {
        name: 'grafana',
        role: 'grafana',
        image: 'grafana',
        group: 'monitoring',
        // Grafana's image runs as uid 472: its secret file and data are handed to it
        user: '472',
        command: [],
        files: [
          { path: GRAFANA_PROVISIONING.datasources, content: renderGrafanaDatasources({ prometheusUrl: url(topology.prometheus.reach), lokiUrl: url(loki.reach) }) },
          { path: GRAFANA_PROVISIONING.dashboards, content: renderGrafanaDashboardsProvider() },
        ],
        // the dashboards as the repository has them (observability/dashboards.test.ts keeps them rendered)
        trees: [{ source: 'observability/dashboards', target: GRAFANA_DASHBOARDS_DIR }],
        env: {
          GF_SECURITY_ADMIN_USER: 'admin',
          GF_SECURITY_ADMIN_PASSWORD__FILE: secretFile(layout, 'grafanaAdminPassword')!,
          GF_AUTH_ANONYMOUS_ENABLED: 'false',
          GF_ANALYTICS_REPORTING_ENABLED: 'false',
        },
        secrets: ['grafanaAdminPassword'],
        volumes: ['/var/lib/grafana'],
        url: url(topology.grafana.reach),
        published: { port: topology.grafana.listen.port, audience: 'operators' },
        dependsOn: ['prometheus', 'loki'],
      }),
    );
  }
  return out;
}

function logShipper(shipping: LogShipping, loki: { host: string; port: number }, units: ServiceUnit[], layout: Layout): ServiceUnit {
  const push = lokiPushUrl(url(loki));
  if (shipping.kind === 'journal') {
    const configFile = path.posix.join(layout.unitDir('alloy'), 'config.alloy');
    return imageUnit(layout, {
      name: 'alloy',
      role: 'log-shipper',
      image: 'alloy',
      user: '0',
      onEveryHost: true,
      files: [{ path: 'config.alloy', content: renderSystemdAlloyConfig() }],
      command: alloyRunArgs(configFile),
      // the one configuration for every machine reads Loki's address from here
      env: { [LOKI_URL_ENV]: push },
      volumes: [ALLOY_STORAGE],
    });
  }
  // Alloy's HTTP server listens on its own loopback only (alloyRunArgs): nothing of it is reachable.
  return imageUnit(layout, {
    name: 'alloy',
    role: 'log-shipper',
    image: 'alloy',
    user: '0',
    files: [{ path: ALLOY_IMAGE_CONFIG, content: renderAlloyConfig({ source: 'docker', lokiPushUrl: push, dockerNetwork: shipping.network }) }],
    command: alloyRunArgs(ALLOY_IMAGE_CONFIG),
    // read positions, so a restart neither loses nor repeats lines
    volumes: [ALLOY_STORAGE],
    // each nginx unit's logs/ volume, which it writes and Alloy reads
    reads: units.filter((u) => runsNginx(u.role)).map((u) => ({ unit: u.name, volume: NGINX_LOGS_DIR, at: dockerLogDir(u.name) })),
    // A read-only mount of the socket still grants the whole Docker API (root on
    // that host): acceptable for a local stack, and why the aws target reads the
    // journal instead.
    hostPaths: [DOCKER_SOCKET],
    dependsOn: ['loki'],
  });
}
