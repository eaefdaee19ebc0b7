/**
 * The docker target (`pulumi up -s local`): the CDN's service units as containers on
 * one bridge network, built from the repository's Dockerfiles and given exactly the
 * files the renderers produce (uploaded at create time), plus MinIO, Grafana, Loki
 * and Alloy (shipping the logs to Loki) from pinned images. Only the balancer and
 * Grafana are published, on the host's loopback address by default.
 */
import * as path from 'node:path';
import * as docker from '@pulumi/docker';
import * as pulumi from '@pulumi/pulumi';
import * as fs from 'node:fs';
import { ALLOY_STORAGE, alloyRunArgs, DOCKER_SOCKET, dockerLogDir, lokiPushUrl, renderAlloyConfig } from '../../../observability/alloy';
import { GRAFANA_DASHBOARDS_DIR, GRAFANA_PROVISIONING, renderGrafanaDashboardsProvider, renderGrafanaDatasources } from '../../../observability/grafana';
import { CdnService } from '../pulumi/component';
import type { DeployPlan, DockerSettings } from '../pulumi/config';
import type { ImageCatalogue } from '../pulumi/images';
import type { StackOutputs } from '../pulumi/outputs';
import type { StackSecrets } from '../pulumi/secrets';
import { deployedUnits, localHealthCommand, unitEnvironment, unitSecretFiles, SECRETS_DIR } from '../pulumi/units';
import { NGINX_LOGS_DIR, NGINX_OPEN_FILES } from '../../render/nginx';
import { url } from '../../model/topology';
import { runsNginx, type Role, type ServiceUnit } from '../../units/units';
import { dockerAddresses, dockerTopology, GRAFANA_PORT, LOKI_PORT, MINIO_PORT, objectStoreEndpoint } from './topology';

/** Alloy's configuration inside its container (the image's default path). */
export const ALLOY_CONFIG_FILE = '/etc/alloy/config.alloy';

export interface DockerStackInput {
  plan: DeployPlan;
  settings: DockerSettings;
  images: ImageCatalogue;
  secrets: StackSecrets;
  /** The repository root: the build context of every image. */
  repoRoot: string;
}

/**
 * What containers print (the origin's logs, the services' own) is kept in at most
 * three 50 MB files each: Docker's json-file driver keeps everything by default.
 */
const CAPPED_OUTPUT = { logDriver: 'json-file', logOpts: { 'max-size': '50m', 'max-file': '3' } };

/** Dockerfile (relative to the repository root) and build args per role's image. */
export function imageBuilds(images: ImageCatalogue): Record<Role, { dockerfile: string; args: Record<string, string> }> {
  const debian = { BASE_IMAGE: images.debian };
  return {
    edge: { dockerfile: 'edge/Dockerfile', args: debian },
    balancer: { dockerfile: 'balancer/Dockerfile', args: debian },
    origin: { dockerfile: 'origin/Dockerfile', args: { NODE_IMAGE: images.node } },
    redis: { dockerfile: 'infra/targets/docker/Dockerfile', args: { ...debian, ROLE: 'redis' } },
    prometheus: { dockerfile: 'infra/targets/docker/Dockerfile', args: { ...debian, ROLE: 'prometheus' } },
  };
}

/** Which unit lives in which service component. */
function componentOf(unit: ServiceUnit): string {
  switch (unit.role) {
    case 'redis':
      return 'bus';
    case 'origin':
      return 'origin';
    case 'edge':
      return `edges-${unit.region}`;
    case 'balancer':
      return 'balancer';
    case 'prometheus':
      return 'monitoring';
  }
}

/** The dashboard JSON files of the repository (observability/dashboards/). */
export function dashboardFiles(repoRoot: string): { file: string; content: string }[] {
  const dir = path.join(repoRoot, 'observability', 'dashboards');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, content: fs.readFileSync(path.join(dir, file), 'utf8') }));
}

function envList(env: Record<string, string>): string[] {
  return Object.entries(env).map(([k, v]) => `${k}=${v}`);
}

export function dockerStack(input: DockerStackInput): StackOutputs {
  const { plan, settings, images, secrets } = input;
  const spec = plan.spec;
  const prefix = spec.name;
  const addresses = dockerAddresses(spec, settings.subnet);
  const balancerUrl = url({ host: settings.bindAddress, port: settings.balancerPort });
  const topology = dockerTopology(spec, addresses, balancerUrl);
  const units = deployedUnits(plan, topology, objectStoreEndpoint(addresses));

  const networkComponent = new CdnService('Network', 'network');
  const network = new docker.Network(
    'network',
    { name: `${prefix}-net`, driver: 'bridge', ipamConfigs: [{ subnet: settings.subnet }] },
    { parent: networkComponent },
  );
  networkComponent.done({ name: network.name });
  const attach = (ip: string, alias: string) => [{ name: network.name, ipv4Address: ip, aliases: [alias] }];

  const imagesComponent = new CdnService('Images', 'images');
  const builds = imageBuilds(images);
  const built = Object.fromEntries(
    (Object.keys(builds) as Role[]).map((role) => [
      role,
      new docker.Image(
        `image-${role}`,
        {
          imageName: `${prefix}/${role}:local`,
          build: { context: input.repoRoot, dockerfile: path.join(input.repoRoot, builds[role].dockerfile), args: builds[role].args, platform: 'linux/amd64' },
          skipPush: true,
        },
        { parent: imagesComponent },
      ),
    ]),
  ) as Record<Role, docker.Image>;
  const pulled = (name: 'minio' | 'grafana' | 'loki' | 'alloy') =>
    new docker.RemoteImage(`image-${name}`, { name: images[name], keepLocally: true }, { parent: imagesComponent });
  imagesComponent.done();

  const components = new Map<string, CdnService>();
  const component = (name: string, kind: ConstructorParameters<typeof CdnService>[0]) => {
    if (!components.has(name)) components.set(name, new CdnService(kind, name));
    return components.get(name)!;
  };
  const containers = new Map<string, docker.Container>();
  // nginx units' log volumes, which Alloy reads
  const logVolumes: { unit: string; volume: docker.Volume }[] = [];

  // Object store: the stack's own MinIO, unless the spec names an S3 endpoint.
  const dependsOnObjectStore: pulumi.Resource[] = [];
  if (plan.objectStore.kind === 'builtin') {
    const store = component('object-store', 'ObjectStore');
    const data = new docker.Volume('object-store-data', { name: `${prefix}-object-store` }, { parent: store });
    const minio = new docker.Container(
      'object-store',
      {
        name: `${prefix}-object-store`,
        ...CAPPED_OUTPUT,
        image: pulled('minio').imageId,
        command: ['server', '/data', '--address', `:${MINIO_PORT}`],
        envs: [`MINIO_ROOT_USER_FILE=${SECRETS_DIR}/s3-access-key`, `MINIO_ROOT_PASSWORD_FILE=${SECRETS_DIR}/s3-secret-key`],
        uploads: [
          { file: `${SECRETS_DIR}/s3-access-key`, content: pulumi.secret(secrets.s3AccessKey.apply((v) => `${v}\n`)), permissions: '0400' },
          { file: `${SECRETS_DIR}/s3-secret-key`, content: pulumi.secret(secrets.s3SecretKey.apply((v) => `${v}\n`)), permissions: '0400' },
        ],
        volumes: [{ volumeName: data.name, containerPath: '/data' }],
        networksAdvanced: attach(addresses.objectStore, 'object-store'),
        healthcheck: { tests: ['CMD', 'mc', 'ready', 'local'], interval: '5s', timeout: '3s', retries: 12 },
        restart: 'unless-stopped',
        wait: true,
        waitTimeout: 120,
      },
      { parent: store },
    );
    store.done({ endpoint: objectStoreEndpoint(addresses) });
    dependsOnObjectStore.push(minio);
  }

  for (const unit of units) {
    const parent =
      unit.role === 'redis'
        ? component('bus', 'InvalidationBus')
        : unit.role === 'origin'
          ? component('origin', 'Origin')
          : unit.role === 'edge'
            ? component(componentOf(unit), 'EdgeFleet')
            : unit.role === 'balancer'
              ? component('balancer', 'Balancer')
              : component('monitoring', 'Monitoring');
    const ip = unit.role === 'edge' ? addresses.edges[unit.name.replace(/^edge-/, '')] : addresses[unit.role];
    const uploads: docker.types.input.ContainerUpload[] = [
      ...unit.files.map((f) => ({ file: path.posix.join(unit.dir, f.path), content: f.content, permissions: f.mode ? f.mode.toString(8).padStart(4, '0') : '0644' })),
      ...unitSecretFiles(unit, secrets).map((s) => ({ file: s.path, content: s.content, permissions: '0400' })),
    ];
    // Volumes for what must outlive a container (the cache, Redis's stream, metrics)
    // or be read by another: nginx writes its access log to a file, which Alloy reads.
    const persistent: Partial<Record<Role, string[]>> = { edge: ['cache', NGINX_LOGS_DIR], balancer: [NGINX_LOGS_DIR], redis: ['data'], prometheus: ['data'] };
    const volumes: docker.types.input.ContainerVolume[] = [];
    for (const sub of persistent[unit.role] ?? []) {
      const volume = new docker.Volume(`${unit.name}-${sub}`, { name: `${prefix}-${unit.name}-${sub}` }, { parent });
      volumes.push({ volumeName: volume.name, containerPath: path.posix.join(unit.dir, sub) });
      if (sub === NGINX_LOGS_DIR) logVolumes.push({ unit: unit.name, volume });
    }
    const deps = [...unit.dependsOn.map((d) => containers.get(d)!).filter(Boolean), ...(unit.role === 'origin' ? dependsOnObjectStore : [])];
    const published = unit.role === 'balancer' ? [{ internal: spec.ports.balancer, external: settings.balancerPort, ip: settings.bindAddress }] : [];
    const container = new docker.Container(
      unit.name,
      {
        name: `${prefix}-${unit.name}`,
        ...CAPPED_OUTPUT,
        hostname: unit.name,
        image: built[unit.role].imageName,
        command: unit.command,
        envs: envList(unitEnvironment(unit)),
        workingDir: unit.dir,
        uploads,
        volumes,
        ports: published,
        networksAdvanced: attach(ip, unit.name),
        // What the log shipper (observability/alloy.ts) turns into the Loki labels role and unit.
        labels: [
          { label: 'cdn.role', value: unit.role },
          { label: 'cdn.unit', value: unit.name },
        ],
        // nginx raises its soft descriptor limit itself, up to this hard limit.
        ulimits: runsNginx(unit.role) ? [{ name: 'nofile', soft: NGINX_OPEN_FILES, hard: NGINX_OPEN_FILES }] : undefined,
        healthcheck: { tests: localHealthCommand(unit), interval: '5s', timeout: '3s', retries: 12, startPeriod: '5s' },
        restart: 'unless-stopped',
        // `pulumi up` returns once every service answers its health check.
        wait: true,
        waitTimeout: 180,
        // nginx and the origin drain in-flight requests on SIGTERM / SIGQUIT.
        destroyGraceSeconds: 20,
      },
      { parent, dependsOn: deps },
    );
    containers.set(unit.name, container);
  }

  const monitoring = component('monitoring', 'Monitoring');
  const loki = new docker.Container(
    'loki',
    {
      name: `${prefix}-loki`,
      ...CAPPED_OUTPUT,
      image: pulled('loki').imageId,
      command: ['-config.file=/etc/loki/local-config.yaml'],
      volumes: [{ volumeName: new docker.Volume('loki-data', { name: `${prefix}-loki` }, { parent: monitoring }).name, containerPath: '/loki' }],
      networksAdvanced: attach(addresses.loki, 'loki'),
      restart: 'unless-stopped',
    },
    { parent: monitoring },
  );
  // One Alloy for the stack: the containers' output through the Docker socket (the
  // origin logs JSON to stdout) and the nginx access logs from their volumes,
  // read-only. A read-only mount of the socket still lets Alloy use the whole Docker
  // API (root-equivalent on this host): acceptable for a local stack, and why the
  // aws target reads the journal instead. Nothing of Alloy is published; its HTTP
  // server listens on its own loopback (alloyRunArgs).
  new docker.Container(
    'alloy',
    {
      name: `${prefix}-alloy`,
      ...CAPPED_OUTPUT,
      image: pulled('alloy').imageId,
      command: alloyRunArgs(ALLOY_CONFIG_FILE),
      uploads: [{ file: ALLOY_CONFIG_FILE, content: renderAlloyConfig({ source: 'docker', lokiPushUrl: lokiPushUrl(url({ host: addresses.loki, port: LOKI_PORT })), dockerNetwork: `${prefix}-net` }), permissions: '0644' }],
      volumes: [
        ...logVolumes.map(({ unit, volume }) => ({ volumeName: volume.name, containerPath: dockerLogDir(unit), readOnly: true })),
        { hostPath: DOCKER_SOCKET, containerPath: DOCKER_SOCKET, readOnly: true },
        // read positions, so a restart neither loses nor repeats lines
        { volumeName: new docker.Volume('alloy-data', { name: `${prefix}-alloy` }, { parent: monitoring }).name, containerPath: ALLOY_STORAGE },
      ],
      networksAdvanced: attach(addresses.alloy, 'alloy'),
      restart: 'unless-stopped',
    },
    { parent: monitoring, dependsOn: [loki] },
  );
  const grafanaUrl = url({ host: settings.bindAddress, port: settings.grafanaPort });
  const grafana = new docker.Container(
    'grafana',
    {
      name: `${prefix}-grafana`,
      ...CAPPED_OUTPUT,
      image: pulled('grafana').imageId,
      envs: ['GF_SECURITY_ADMIN_USER=admin', `GF_SECURITY_ADMIN_PASSWORD__FILE=${SECRETS_DIR}/grafana-admin-password`, 'GF_AUTH_ANONYMOUS_ENABLED=false', 'GF_ANALYTICS_REPORTING_ENABLED=false'],
      uploads: [
        {
          file: GRAFANA_PROVISIONING.datasources,
          content: renderGrafanaDatasources({ prometheusUrl: url(topology.prometheus!.reach), lokiUrl: url({ host: addresses.loki, port: LOKI_PORT }) }),
          permissions: '0644',
        },
        // The dashboards provider and the dashboards (observability/dashboards/*.json) as the repository has them.
        { file: GRAFANA_PROVISIONING.dashboards, content: renderGrafanaDashboardsProvider(), permissions: '0644' },
        ...dashboardFiles(input.repoRoot).map((d) => ({ file: path.posix.join(GRAFANA_DASHBOARDS_DIR, d.file), content: d.content, permissions: '0644' })),
        // Grafana's image runs as uid 472.
        { file: `${SECRETS_DIR}/grafana-admin-password`, content: pulumi.secret(secrets.grafanaAdminPassword), owner: '472', permissions: '0400' },
      ],
      volumes: [{ volumeName: new docker.Volume('grafana-data', { name: `${prefix}-grafana` }, { parent: monitoring }).name, containerPath: '/var/lib/grafana' }],
      ports: [{ internal: GRAFANA_PORT, external: settings.grafanaPort, ip: settings.bindAddress }],
      networksAdvanced: attach(addresses.grafana, 'grafana'),
      restart: 'unless-stopped',
    },
    { parent: monitoring, dependsOn: [containers.get('prometheus')!, loki] },
  );
  for (const c of components.values()) c.done();

  const edges: Record<string, string[]> = {};
  for (const e of topology.edges) (edges[e.region] ??= []).push(url(e.traffic.reach));
  return {
    balancerUrl: pulumi.output(balancerUrl),
    assetBaseUrl: pulumi.output(topology.publicBaseUrl),
    grafanaUrl: grafana.id.apply(() => grafanaUrl),
    originApiUrl: pulumi.output(url(topology.origin.reach)),
    edges: pulumi.output(edges),
    prometheusUrl: pulumi.output(url(topology.prometheus!.reach)),
    adminToken: pulumi.secret(secrets.adminToken),
    grafanaAdminPassword: pulumi.secret(secrets.grafanaAdminPassword),
  };
}
