/**
 * The docker target (`pulumi up -s local`): every service unit as a container on one
 * bridge network, each mapped the same way: the image (built from this repository's
 * Dockerfiles, or a pinned third-party one), exactly the files the renderers produce
 * and the secret files the unit lists (uploaded at create time), its volumes, its
 * health check. Only the balancer and Grafana are published, on the host's loopback
 * address by default.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as docker from '@pulumi/docker';
import * as pulumi from '@pulumi/pulumi';
import { url } from '../../model/topology';
import { isOwnRole, type OwnRole, type ServiceUnit, type ThirdPartyImage } from '../../units/units';
import { CdnService, Components } from '../pulumi/component';
import type { DeployPlan, DockerSettings } from '../pulumi/config';
import type { ImageCatalogue } from '../pulumi/images';
import type { StackOutputs } from '../pulumi/outputs';
import type { StackSecrets } from '../pulumi/secrets';
import { deployedUnits, localHealthCommand, unitEnvironment, unitSecretFiles } from '../pulumi/units';
import { dockerAddresses, dockerTopology, type DockerAddresses } from './topology';

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

/** Dockerfile (relative to the repository root) and build args per own role's image. */
export function imageBuilds(images: ImageCatalogue): Record<OwnRole, { dockerfile: string; args: Record<string, string> }> {
  const debian = { BASE_IMAGE: images.debian };
  return {
    edge: { dockerfile: 'edge/Dockerfile', args: debian },
    balancer: { dockerfile: 'balancer/Dockerfile', args: debian },
    origin: { dockerfile: 'origin/Dockerfile', args: { NODE_IMAGE: images.node } },
    redis: { dockerfile: 'infra/targets/docker/Dockerfile', args: { ...debian, ROLE: 'redis' } },
    prometheus: { dockerfile: 'infra/targets/docker/Dockerfile', args: { ...debian, ROLE: 'prometheus' } },
  };
}

/** Every file of a directory of the repository (a unit's `trees`), sorted. */
export function treeFiles(repoRoot: string, source: string): { file: string; content: string }[] {
  const dir = path.join(repoRoot, source);
  return fs
    .readdirSync(dir)
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .sort()
    .map((file) => ({ file, content: fs.readFileSync(path.join(dir, file), 'utf8') }));
}

function envList(env: Record<string, string>): string[] {
  return Object.entries(env).map(([k, v]) => `${k}=${v}`);
}

/** A volume's short name: own units' subdirectories by name; an image's one data directory as `data`. */
function volumeKey(volume: string): string {
  return path.posix.isAbsolute(volume) ? 'data' : volume;
}

export function dockerStack(input: DockerStackInput): StackOutputs {
  const { plan, settings } = input;
  const balancerUrl = url({ host: settings.bindAddress, port: settings.balancerPort });
  const addresses = dockerAddresses(plan.spec, settings.subnet);
  const topology = dockerTopology(plan.spec, addresses, balancerUrl, { objectStore: plan.objectStore.kind === 'builtin' });
  const networkName = `${plan.spec.name}-net`;
  const units = deployedUnits(plan, topology, { kind: 'docker', network: networkName });

  const network = createNetwork(networkName, settings.subnet);
  const images = createImages(input, units);
  const containers = createContainers(input, units, { network, addresses, images });
  return outputs(input, topology, balancerUrl, containers.get('grafana'));
}

interface ContainerContext {
  network: docker.Network;
  addresses: DockerAddresses;
  images: (unit: ServiceUnit) => pulumi.Input<string>;
}

/** One container per unit, each after the units it depends on, with its volumes; under its service's component. */
function createContainers(input: DockerStackInput, units: ServiceUnit[], ctx: ContainerContext): Map<string, docker.Container> {
  const { settings, secrets } = input;
  const prefix = input.plan.spec.name;
  // Published on this machine: the balancer for shoppers, Grafana for operators; the
  // origin's API stays on the stack's network (reachable from this machine by address).
  const hostPorts: Record<string, number> = { balancer: settings.balancerPort, grafana: settings.grafanaPort };
  const components = new Components();
  const containers = new Map<string, docker.Container>();
  const volumes = new Map<string, docker.Volume>();
  for (const unit of units) {
    const parent = components.of(unit);
    for (const v of unit.volumes) {
      const key = `${unit.name}-${volumeKey(v)}`;
      volumes.set(key, new docker.Volume(key, { name: `${prefix}-${key}` }, { parent }));
    }
    const container = new docker.Container(
      unit.name,
      {
        name: `${prefix}-${unit.name}`,
        ...CAPPED_OUTPUT,
        hostname: unit.name,
        image: ctx.images(unit),
        // (an image's own command when the unit names none)
        command: unit.command.length > 0 ? unit.command : undefined,
        envs: envList(unitEnvironment(unit)),
        ...(isOwnRole(unit.role) ? { workingDir: unit.dir } : {}),
        uploads: uploadsOf(unit, secrets, input.repoRoot),
        volumes: [
          ...unit.volumes.map((v) => ({ volumeName: volumes.get(`${unit.name}-${volumeKey(v)}`)!.name, containerPath: path.posix.resolve(unit.dir, v) })),
          ...unit.reads.map((r) => ({ volumeName: volumes.get(`${r.unit}-${volumeKey(r.volume)}`)!.name, containerPath: r.at, readOnly: true })),
          ...unit.hostPaths.map((p) => ({ hostPath: p, containerPath: p, readOnly: true })),
        ],
        ports: unit.published && hostPorts[unit.name] ? [{ internal: unit.published.port, external: hostPorts[unit.name], ip: settings.bindAddress }] : [],
        networksAdvanced: [{ name: ctx.network.name, ipv4Address: ctx.addresses[unit.name], aliases: [unit.name] }],
        // What the log shipper (observability/alloy.ts) turns into the Loki labels role and unit.
        labels: [
          { label: 'cdn.role', value: unit.role },
          { label: 'cdn.unit', value: unit.name },
        ],
        // nginx raises its soft descriptor limit itself, up to this hard limit.
        ulimits: unit.openFiles ? [{ name: 'nofile', soft: unit.openFiles, hard: unit.openFiles }] : undefined,
        ...healthCheck(unit),
        restart: 'unless-stopped',
        // nginx and the origin drain in-flight requests on SIGTERM / SIGQUIT.
        destroyGraceSeconds: 20,
      },
      { parent, dependsOn: unit.dependsOn.map((d) => containers.get(d)!) },
    );
    containers.set(unit.name, container);
  }
  components.doneAll();
  return containers;
}

/** The stack's bridge network, where every unit has its fixed address. */
function createNetwork(name: string, subnet: string): docker.Network {
  const component = new CdnService('Network', 'network');
  const network = new docker.Network('network', { name, driver: 'bridge', ipamConfigs: [{ subnet }] }, { parent: component });
  component.done({ name: network.name });
  return network;
}

/** The images: each own role's built from its Dockerfile once, each third-party one pulled once. Returns a unit's image. */
function createImages(input: DockerStackInput, units: ServiceUnit[]): (unit: ServiceUnit) => pulumi.Input<string> {
  const component = new CdnService('Images', 'images');
  const builds = imageBuilds(input.images);
  const built = new Map<OwnRole, docker.Image>();
  const pulled = new Map<ThirdPartyImage, docker.RemoteImage>();
  for (const unit of units) {
    if (unit.image && !pulled.has(unit.image)) {
      pulled.set(unit.image, new docker.RemoteImage(`image-${unit.image}`, { name: input.images[unit.image], keepLocally: true }, { parent: component }));
    } else if (!unit.image && isOwnRole(unit.role) && !built.has(unit.role)) {
      const b = builds[unit.role];
      built.set(
        unit.role,
        new docker.Image(
          `image-${unit.role}`,
          {
            imageName: `${input.plan.spec.name}/${unit.role}:local`,
            build: { context: input.repoRoot, dockerfile: path.join(input.repoRoot, b.dockerfile), args: b.args, platform: 'linux/amd64' },
            skipPush: true,
          },
          { parent: component },
        ),
      );
    }
  }
  component.done();
  return (unit) => (unit.image ? pulled.get(unit.image)!.imageId : built.get(unit.role as OwnRole)!.imageName);
}

/**
 * What is uploaded into a unit's container when it is created: its rendered files,
 * the directories of the repository it reads, and its secret files (0400; handed to
 * the user an image runs as, while run-unit.sh hands them over in our own images).
 */
function uploadsOf(unit: ServiceUnit, secrets: StackSecrets, repoRoot: string): docker.types.input.ContainerUpload[] {
  const owner = !isOwnRole(unit.role) && unit.user !== '0' ? { owner: unit.user } : {};
  return [
    ...unit.files.map((f) => ({ file: path.posix.resolve(unit.dir, f.path), content: f.content, permissions: f.mode ? f.mode.toString(8).padStart(4, '0') : '0644' })),
    ...unit.trees.flatMap((t) => treeFiles(repoRoot, t.source).map((f) => ({ file: path.posix.join(t.target, f.file), content: f.content, permissions: '0644' }))),
    ...unitSecretFiles(unit, secrets).map((s) => ({ file: s.path, content: s.content, permissions: '0400', ...owner })),
  ];
}

/** Docker's health check, and `pulumi up` waiting for it, for units that have one. */
function healthCheck(unit: ServiceUnit): Pick<docker.ContainerArgs, 'healthcheck' | 'wait' | 'waitTimeout'> {
  const tests = localHealthCommand(unit);
  if (!tests) return {};
  return {
    healthcheck: { tests, interval: '5s', timeout: '3s', retries: 12, startPeriod: '5s' },
    // `pulumi up` returns once every service answers its health check.
    wait: true,
    waitTimeout: 180,
  };
}

function outputs(input: DockerStackInput, topology: ReturnType<typeof dockerTopology>, balancerUrl: string, grafana: docker.Container | undefined): StackOutputs {
  const { settings, secrets } = input;
  const grafanaUrl = url({ host: settings.bindAddress, port: settings.grafanaPort });
  const edges: Record<string, string[]> = {};
  for (const e of topology.edges) (edges[e.region] ??= []).push(url(e.traffic.reach));
  return {
    balancerUrl: pulumi.output(balancerUrl),
    assetBaseUrl: pulumi.output(topology.publicBaseUrl),
    grafanaUrl: grafana ? grafana.id.apply(() => grafanaUrl) : pulumi.output(grafanaUrl),
    originApiUrl: pulumi.output(url(topology.originApi.reach)),
    edges: pulumi.output(edges),
    prometheusUrl: pulumi.output(url(topology.prometheus!.reach)),
    adminToken: pulumi.secret(secrets.adminToken),
    debugToken: pulumi.secret(secrets.debugToken),
    urlSigningKeys: pulumi.secret(secrets.urlSigningKeys),
    grafanaAdminPassword: pulumi.secret(secrets.grafanaAdminPassword),
  };
}
