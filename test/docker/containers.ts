/**
 * The docker target's resources, as the program declares them (graph.ts), mapped onto
 * the Docker Engine API the way @pulumi/docker's provider maps them: a container's
 * inputs become one create call, its uploads one archive put before start, its
 * `wait`/`waitTimeout` a wait for its health check. An input this file does not know
 * stops the run, so nothing the target declares is silently dropped.
 */
import type Docker from 'dockerode';
import type { GraphResource } from './graph';
import { tarOf, type TarEntry } from './tar';

/** What the runner adds to everything it creates, to find it again (cleanup). */
export const RUN_LABELS = { 'cdn.test': 'docker-run' };

/** Container inputs and what becomes of each. */
const CONTAINER_INPUTS = new Set([
  'name', 'hostname', 'image', 'command', 'envs', 'workingDir', 'labels', 'logDriver', 'logOpts', 'ulimits', 'restart',
  'healthcheck', 'ports', 'networksAdvanced', 'volumes', 'uploads',
  // after create: the wait for health, and the grace a destroy gives the process
  'wait', 'waitTimeout', 'destroyGraceSeconds',
]);

/** A Docker duration (`5s`, `500ms`, `1m`) in nanoseconds, as the Engine API takes it. */
export function nanoseconds(d: string | undefined): number | undefined {
  if (d === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$/.exec(d);
  if (!m) throw new Error(`unknown duration ${d}`);
  const unit = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }[m[2] as 'ns']!;
  return Math.round(Number(m[1]) * unit);
}

function numericId(owner: string | undefined, what: string): number | undefined {
  if (owner === undefined) return undefined;
  if (!/^\d+$/.test(owner)) throw new Error(`upload ${what}: only numeric owners are supported, got ${owner}`);
  return Number(owner);
}

/** The Engine API's create body for a Container resource of the graph. */
export function createOptions(c: GraphResource): Docker.ContainerCreateOptions {
  const i = c.inputs;
  const unknown = Object.keys(i).filter((k) => !CONTAINER_INPUTS.has(k));
  if (unknown.length > 0) throw new Error(`container ${c.name}: inputs this runner does not map: ${unknown.join(', ')}`);

  const ports = (i.ports ?? []) as { internal: number; external?: number; ip?: string; protocol?: string }[];
  const networks = (i.networksAdvanced ?? []) as { name: string; ipv4Address?: string; aliases?: string[] }[];
  if (networks.length > 1) throw new Error(`container ${c.name}: more than one network; this runner connects one at create`);
  const volumes = (i.volumes ?? []) as { volumeName?: string; hostPath?: string; containerPath: string; readOnly?: boolean }[];
  const hc = i.healthcheck as { tests: string[]; interval?: string; timeout?: string; retries?: number; startPeriod?: string } | undefined;
  const labels: Record<string, string> = { ...Object.fromEntries(((i.labels ?? []) as { label: string; value: string }[]).map((l) => [l.label, l.value])), ...RUN_LABELS };

  return {
    name: i.name,
    Hostname: i.hostname,
    Image: i.image,
    Cmd: i.command,
    Env: i.envs ?? [],
    WorkingDir: i.workingDir,
    Labels: labels,
    ExposedPorts: Object.fromEntries(ports.map((p) => [`${p.internal}/${p.protocol ?? 'tcp'}`, {}])),
    Healthcheck: hc
      ? { Test: hc.tests, Interval: nanoseconds(hc.interval), Timeout: nanoseconds(hc.timeout), Retries: hc.retries, StartPeriod: nanoseconds(hc.startPeriod) }
      : undefined,
    HostConfig: {
      // the provider's `volumes`: binds of named volumes and host paths
      Binds: volumes.map((v) => {
        const source = v.volumeName ?? v.hostPath;
        if (!source) throw new Error(`container ${c.name}: a volume with neither volumeName nor hostPath`);
        return `${source}:${v.containerPath}${v.readOnly ? ':ro' : ''}`;
      }),
      PortBindings: Object.fromEntries(ports.map((p) => [`${p.internal}/${p.protocol ?? 'tcp'}`, [{ HostIp: p.ip ?? '', HostPort: String(p.external ?? '') }]])),
      NetworkMode: networks[0]?.name,
      RestartPolicy: i.restart ? { Name: i.restart } : undefined,
      LogConfig: i.logDriver ? { Type: i.logDriver, Config: i.logOpts ?? {} } : undefined,
      Ulimits: ((i.ulimits ?? []) as { name: string; soft: number; hard: number }[]).map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
    },
    NetworkingConfig: networks[0]
      ? { EndpointsConfig: { [networks[0].name]: { IPAMConfig: networks[0].ipv4Address ? { IPv4Address: networks[0].ipv4Address } : undefined, Aliases: networks[0].aliases } } }
      : undefined,
  };
}

/** The container's uploads as one archive (put at `/` before start), with their modes and owners. */
export function uploadArchive(c: GraphResource): { tar: Buffer; files: number } | null {
  const uploads = (c.inputs.uploads ?? []) as { file: string; content?: string; contentBase64?: string; source?: string; permissions?: string; executable?: boolean; owner?: string; group?: string }[];
  if (uploads.length === 0) return null;
  const entries: TarEntry[] = uploads.map((u) => {
    if (u.source !== undefined) throw new Error(`container ${c.name}: upload ${u.file} from a source file is not supported here`);
    const content = u.contentBase64 !== undefined ? Buffer.from(u.contentBase64, 'base64') : Buffer.from(u.content ?? '', 'utf8');
    // the provider's default: 0644, 0744 when executable; `permissions` wins
    const mode = u.permissions ? parseInt(u.permissions, 8) : u.executable ? 0o744 : 0o644;
    return { path: u.file, content, mode, uid: numericId(u.owner, u.file), gid: numericId(u.group, u.file) };
  });
  return { tar: tarOf(entries), files: entries.length };
}

/** The Engine API's body for a Network resource (the docker target's one bridge). */
export function networkOptions(n: GraphResource): Docker.NetworkCreateOptions {
  const known = new Set(['name', 'driver', 'ipamConfigs']);
  const unknown = Object.keys(n.inputs).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new Error(`network ${n.name}: inputs this runner does not map: ${unknown.join(', ')}`);
  const ipam = (n.inputs.ipamConfigs ?? []) as { subnet?: string; gateway?: string; ipRange?: string }[];
  return {
    Name: n.inputs.name,
    Driver: n.inputs.driver ?? 'bridge',
    CheckDuplicate: true,
    IPAM: { Driver: 'default', Config: ipam.map((c) => ({ Subnet: c.subnet, Gateway: c.gateway, IPRange: c.ipRange })) },
    Labels: { ...RUN_LABELS },
  };
}

export function volumeOptions(v: GraphResource): Docker.VolumeCreateOptions {
  const unknown = Object.keys(v.inputs).filter((k) => k !== 'name');
  if (unknown.length > 0) throw new Error(`volume ${v.name}: inputs this runner does not map: ${unknown.join(', ')}`);
  return { Name: v.inputs.name, Labels: { ...RUN_LABELS } };
}

/** The build inputs of an Image resource: Dockerfile relative to the context, args, platform. */
export function buildInputs(img: GraphResource): { imageName: string; context: string; dockerfile: string; args: Record<string, string>; platform?: string } {
  const known = new Set(['imageName', 'build', 'skipPush', 'buildOnPreview']);
  const unknown = Object.keys(img.inputs).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new Error(`image ${img.name}: inputs this runner does not map: ${unknown.join(', ')}`);
  const b = img.inputs.build as { context: string; dockerfile: string; args?: Record<string, string>; platform?: string };
  const knownBuild = new Set(['context', 'dockerfile', 'args', 'platform']);
  const unknownBuild = Object.keys(b).filter((k) => !knownBuild.has(k));
  if (unknownBuild.length > 0) throw new Error(`image ${img.name}: build inputs this runner does not map: ${unknownBuild.join(', ')}`);
  return { imageName: img.inputs.imageName, context: b.context, dockerfile: b.dockerfile, args: b.args ?? {}, platform: b.platform };
}
