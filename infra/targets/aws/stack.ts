/**
 * The aws target (`pulumi up -s dev`): the service units on EC2 instances, one per
 * unit group (each edge, the balancer, the origin, Redis, the object store, and
 * Prometheus + Grafana + Loki as `monitoring`), each mapped the same way. In named
 * steps:
 *
 *   networks   one VPC per region, its subnets in a zone offering the region's
 *              instance types, the primary region peered with the others (network.ts)
 *   hosts      a security group per kind of host and region, a network interface per
 *              host, so every private address is known (an Output) before any instance
 *   rules      ingress derived from the units: who dials which port (`accepts`), what
 *              is published to shoppers or operators; nothing else is open (no SSH:
 *              Session Manager)
 *   secrets    an SSM SecureString parameter per secret and region (access.ts)
 *   artefact   the packed build (artefact.ts) in the stack's bucket, by its sha256
 *   instances  the topology resolved from the addresses in one `apply`, the renderers
 *              run there once, and each instance's cloud-init carries exactly the
 *              files and containers of its units (cloud-init.ts), no secret value;
 *              its instance profile reads exactly its units' secrets and the artefact
 *   readiness  `pulumi up` waits for the balancer to say every edge serves (readiness.ts)
 *   outputs    what `pulumi stack output` shows
 */
import * as path from 'node:path';
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { READY_PATH } from '../../../balancer/render';
import { CONTAINER_ROOT, secretFile } from '../../model/layout';
import { regionOrder } from '../../model/spec';
import { url, type Placement, type Topology } from '../../model/topology';
import { IMAGE_PORTS } from '../../units/deployed';
import { isOwnRole, replicaName, type OwnRole, type ServiceUnit } from '../../units/units';
import { componentOf, Components } from '../pulumi/component';
import type { AwsSettings, DeployPlan } from '../pulumi/config';
import { alloyPackageVersion, type ImageCatalogue } from '../pulumi/images';
import type { StackOutputs } from '../pulumi/outputs';
import { createRedisTls } from '../pulumi/redis-tls';
import type { StackSecrets } from '../pulumi/secrets';
import { deployedUnits, LAYOUT } from '../pulumi/units';
import { createArtefactBucket, createInstanceProfile, createParameters, parameterName, secretsOf, type ArtefactObject, type Parameters } from './access';
import type { Artefact } from './artefact';
import { packUserData, renderUserData, type HostContainer, type HostFile, type HostPlan } from './cloud-init';
import { peer, regionNetwork, type RegionNetwork } from './network';
import { ReadinessCheck } from './readiness';

export interface AwsStackInput {
  plan: DeployPlan;
  settings: AwsSettings;
  images: ImageCatalogue;
  secrets: StackSecrets;
  /** The packed build the instances run (artefact.ts). */
  artefact: Artefact;
}

/** One instance: the units of one group. */
interface Host {
  group: string;
  units: ServiceUnit[];
  network: RegionNetwork;
  component: pulumi.ComponentResource;
  sg: aws.ec2.SecurityGroup;
  eni: aws.ec2.NetworkInterface;
  instanceType: string;
}

/** Who runs where: the group's private address (a placeholder while only the shape is wanted). */
type AddressOf = (group: string) => string;

/**
 * The topology on the hosts' addresses. Shoppers reach the balancer on 80 (443 with
 * TLS); everything else listens on the spec's ports.
 */
function topologyOn(plan: DeployPlan, ip: AddressOf, publicBaseUrl: string): Topology {
  const spec = plan.spec;
  const at = (group: string, port: number): Placement => ({ listen: { host: '0.0.0.0', port }, reach: { host: ip(group), port } });
  // every region but the primary reads the purge stream from a replica of its own
  const replicas = Object.fromEntries(regionOrder(spec).slice(1).map((r) => [r, at(replicaName(r), spec.ports.redis)]));
  return {
    redis: at('redis', spec.ports.redis),
    // the replicas replicate, and their regions' edges acknowledge, across regions: over TLS
    ...(Object.keys(replicas).length > 0 ? { redisReplicas: replicas, redisTls: at('redis', spec.ports.redisTls) } : {}),
    origin: at('origin', spec.ports.origin),
    originApi: at('origin', spec.ports.originApi),
    balancer: { traffic: at('balancer', spec.balancer.tls ? 443 : 80), internal: at('balancer', spec.ports.edgeInternal) },
    edges: spec.regions.flatMap((r) =>
      Array.from({ length: r.edges }, (_, i) => {
        const id = `${r.name}-${i + 1}`;
        return { id, region: r.name, index: i + 1, traffic: at(`edge-${id}`, spec.ports.edge), internal: at(`edge-${id}`, spec.ports.edgeInternal) };
      }),
    ),
    prometheus: at('monitoring', spec.ports.prometheus),
    ...(plan.objectStore.kind === 'builtin' ? { objectStore: at('object-store', IMAGE_PORTS.objectStore) } : {}),
    loki: at('monitoring', IMAGE_PORTS.loki),
    grafana: at('monitoring', IMAGE_PORTS.grafana),
    publicBaseUrl,
  };
}

/** The settings key of a group's instance type. */
function instanceTypeOf(group: string, settings: AwsSettings): string {
  const t = settings.instanceTypes;
  if (group.startsWith('edge-')) return t.edge;
  if (group.startsWith('redis-')) return t.redis;
  const byGroup: Record<string, string> = { balancer: t.balancer, origin: t.origin, redis: t.redis, 'object-store': t.objectStore, monitoring: t.monitoring };
  return byGroup[group];
}

/** The region a unit's host is in: its own (edges), else the primary region. */
function regionOfUnit(unit: ServiceUnit, primaryRegion: string): string {
  return unit.region ?? primaryRegion;
}

/** Every instance type the hosts of a region use. */
function instanceTypesIn(units: ServiceUnit[], region: string, primaryRegion: string, settings: AwsSettings): string[] {
  const groups = new Set(units.filter((u) => !u.onEveryHost && regionOfUnit(u, primaryRegion) === region).map((u) => u.group));
  return [...new Set([...groups].map((g) => instanceTypeOf(g, settings)))].sort();
}

export function awsStack(input: AwsStackInput): StackOutputs {
  const { plan, settings } = input;
  const spec = plan.spec;
  const primaryRegion = regionOrder(spec)[0];
  // The units' shape (groups, regions, connections, secrets) does not depend on addresses.
  const shape = deployedUnits(plan, topologyOn(plan, (g) => g, ''), { kind: 'journal' });

  // networks
  const networks = new Map(
    spec.regions.map((r, i) => [
      r.name,
      regionNetwork({ region: r.name, index: i, firstOctet: settings.firstCidrOctet, prefix: spec.name, ami: settings.amis[r.name], instanceTypes: instanceTypesIn(shape, r.name, primaryRegion, settings) }),
    ]),
  );
  const primary = networks.get(primaryRegion)!;
  for (const n of networks.values()) if (n !== primary) peer(primary, n);

  // hosts
  const components = new Components();
  const hosts = createHosts(shape, networks, primary, settings, components, spec.name);

  // The balancer's public address exists before any instance: the origin's public base URL needs it.
  const balancer = hosts.get('balancer')!;
  const publicIp = new aws.ec2.Eip('balancer-ip', { domain: 'vpc', tags: { Name: `${spec.name}-balancer` } }, { parent: balancer.component, provider: primary.provider });
  new aws.ec2.EipAssociation('balancer-ip', { allocationId: publicIp.id, networkInterfaceId: balancer.eni.id }, { parent: balancer.component, provider: primary.provider });
  const publicBaseUrl = publicIp.publicIp.apply((ip) => (spec.balancer.tls ? `https://${ip}` : `http://${ip}`));

  const groups = [...hosts.keys()];
  const addresses = pulumi.all(groups.map((g) => hosts.get(g)!.eni.privateIp)).apply((ips) => Object.fromEntries(groups.map((g, i) => [g, ips[i]])));
  const topology = pulumi.all([addresses, publicBaseUrl]).apply(([ip, base]) => topologyOn(plan, (g) => ip[g], base));
  // The renderers run here, once, on resolved addresses.
  const units = topology.apply((topo) => deployedUnits(plan, topo, { kind: 'journal' }));

  // rules
  createRules(shape, hosts, primary);

  // secrets (with the Redis TLS material when links cross regions) and artefact
  const secrets = regionOrder(spec).length > 1 ? { ...input.secrets, redisTls: createRedisTls() } : input.secrets;
  const parameters = createParameters(
    [...hosts.values()].map((h) => ({ region: h.network.region, network: h.network, units: h.units })),
    secrets,
    spec.name,
  );
  const artefact = createArtefactBucket(input.artefact, primary, spec.name);

  // instances
  const instances = createInstances(input, hosts, units, primary, [...networks.values()].flatMap((n) => n.peeringRoutes), parameters, artefact);

  // readiness: pulumi up fails unless the balancer says every edge serves
  new ReadinessCheck(
    'readiness',
    {
      url: pulumi.interpolate`${publicBaseUrl}${READY_PATH}`,
      host: spec.balancer.hosts?.[0],
      timeoutSeconds: settings.readinessTimeoutMinutes * 60,
      intervalSeconds: 10,
      requestTimeoutSeconds: 5,
      instances: pulumi.all([...instances].map(([group, instance]) => instance.id.apply((id) => ({ name: group, id, region: hosts.get(group)!.network.region })))),
      revision: input.artefact.sha256,
    },
    { parent: balancer.component, dependsOn: [...instances.values()] },
  );
  components.doneAll();
  return outputs(input, topology, publicBaseUrl);
}

/** A security group per kind of host and region (every edge of a region shares one), and a network interface per host. */
function createHosts(units: ServiceUnit[], networks: Map<string, RegionNetwork>, primary: RegionNetwork, settings: AwsSettings, components: Components, prefix: string): Map<string, Host> {
  const groups = new Map<string, aws.ec2.SecurityGroup>();
  const securityGroup = (role: string, network: RegionNetwork, parent: pulumi.ComponentResource) => {
    const key = `${role}-${network.region}`;
    if (!groups.has(key)) {
      // Pulumi names the group `<logical name>-<7 random characters>` and AWS refuses a
      // group name that begins with `sg-` (pre-flight rule aws-security-group-name).
      const sg = new aws.ec2.SecurityGroup(
        `${key}-sg`,
        { vpcId: network.vpc.id, description: `CDN ${role} (${network.region})`, tags: { Name: `${prefix}-${key}` } },
        { parent, provider: network.provider },
      );
      // Outbound: packages, the artefact, SSM (parameters, Session Manager), external origins.
      new aws.vpc.SecurityGroupEgressRule(`egress-${key}`, { securityGroupId: sg.id, ipProtocol: '-1', cidrIpv4: '0.0.0.0/0', description: 'outbound' }, { parent, provider: network.provider });
      groups.set(key, sg);
    }
    return groups.get(key)!;
  };

  const hosts = new Map<string, Host>();
  for (const unit of units.filter((u) => !u.onEveryHost)) {
    const existing = hosts.get(unit.group);
    if (existing) {
      existing.units.push(unit);
      continue;
    }
    const network = unit.region ? networks.get(unit.region)! : primary;
    const component = components.of(unit);
    const sg = securityGroup(unit.role === 'edge' ? 'edge' : unit.group, network, component);
    // Only what shoppers reach sits in the public subnet.
    const subnet = unit.published?.audience === 'shoppers' ? network.publicSubnet : network.privateSubnet;
    const eni = new aws.ec2.NetworkInterface(`eni-${unit.group}`, { subnetId: subnet.id, securityGroups: [sg.id], tags: { Name: `${prefix}-${unit.group}` } }, { parent: component, provider: network.provider });
    hosts.set(unit.group, { group: unit.group, units: [unit], network, component, sg, eni, instanceType: instanceTypeOf(unit.group, settings) });
  }
  return hosts;
}

/**
 * Ingress, least privilege, derived from the units: each connection a unit accepts,
 * from its peer's private address (/32, which also works across regions, where
 * security-group references do not reach over a peering); published ports to the
 * internet (shoppers) or the primary VPC (operators). Hosts that share a security
 * group (a region's edges) get each rule once. No SSH: operators use Session Manager,
 * which needs only the instances' outbound HTTPS.
 */
function createRules(units: ServiceUnit[], hosts: Map<string, Host>, primary: RegionNetwork): void {
  const groupOf = new Map(units.map((u) => [u.name, u.group]));
  const made = new Set<string>();
  const ingress = (host: Host, port: number, source: string, cidr: pulumi.Input<string>, description: string) => {
    const name = `ingress-${sgKey(host)}-${port}-from-${source}`;
    if (made.has(name)) return;
    made.add(name);
    new aws.vpc.SecurityGroupIngressRule(name, { securityGroupId: host.sg.id, ipProtocol: 'tcp', fromPort: port, toPort: port, cidrIpv4: cidr, description }, { parent: host.component, provider: host.network.provider });
  };
  const from = (group: string) => hosts.get(group)!.eni.privateIp.apply((ip) => `${ip}/32`);
  for (const unit of units.filter((u) => !u.onEveryHost)) {
    const host = hosts.get(unit.group)!;
    for (const c of unit.accepts) {
      const peerGroup = groupOf.get(c.peer)!;
      // units on one machine reach each other without crossing a security group
      if (peerGroup !== unit.group) ingress(host, c.port, peerGroup, from(peerGroup), c.purpose);
    }
    if (unit.published?.audience === 'shoppers') ingress(host, unit.published.port, 'internet', '0.0.0.0/0', `${unit.name} for shoppers`);
    if (unit.published?.audience === 'operators') ingress(host, unit.published.port, 'vpc', primary.cidr, `${unit.name} from inside the primary VPC`);
  }
}

/** The security group's key (role-region) of a host. */
function sgKey(host: Host): string {
  return `${host.units[0].role === 'edge' ? 'edge' : host.group}-${host.network.region}`;
}

/** Where an image-based unit's volume lives on its instance. */
function hostVolume(unit: ServiceUnit): string {
  if (unit.volumes.length !== 1) throw new Error(`${unit.name}: an image-based unit keeps one volume on an instance, it has ${unit.volumes.length}`);
  return `/var/lib/cdn-${unit.name}`;
}

/** What the bootstrap needs of the artefact, resolved. */
interface ArtefactRef {
  bucket: string;
  key: string;
  region: string;
  sha256: string;
}

/**
 * What an instance runs: its units' files and systemd units (our own services),
 * third-party images as containers on the host's network with their files, secrets
 * and volumes mounted, the log shipper; the secrets its units list, by parameter name
 * (their values never reach the user data), and the artefact.
 */
function hostPlanOf(host: Host, units: ServiceUnit[], input: AwsStackInput, dataVolumeId: string | undefined, artefact: ArtefactRef): HostPlan {
  const { settings, images } = input;
  const prefix = input.plan.spec.name;
  const shipper = units.find((u) => u.onEveryHost);
  const own = units.filter((u) => isOwnRole(u.role));
  // (the log shipper is installed from Grafana's repository, not run from its image)
  const fromImages = units.filter((u) => !isOwnRole(u.role) && u !== shipper);
  const secrets = secretsOf([...own, ...fromImages]).map((s) => ({ parameter: parameterName(prefix, s), path: secretFile(LAYOUT, s)! }));
  const containers: HostContainer[] = [];
  const prepare: string[] = [];
  const imageFiles: HostFile[] = [];
  for (const u of fromImages) {
    const volume = hostVolume(u);
    const mounts: Record<string, string> = { [volume]: u.volumes[0] };
    for (const f of u.files) {
      // kept under the unit's directory on the host, mounted where the image reads it
      const onHost = path.posix.join(u.dir, 'files', f.path);
      imageFiles.push({ path: onHost, content: f.content, permissions: '0644' });
      mounts[onHost] = `${f.path}:ro`;
    }
    for (const t of u.trees) mounts[path.posix.join(CONTAINER_ROOT, t.source)] = `${t.target}:ro`;
    for (const s of u.secrets) mounts[secretFile(LAYOUT, s)!] = `${secretFile(LAYOUT, s)!}:ro`;
    prepare.push(`mkdir -p ${volume}`);
    if (u.user !== '0') prepare.push(`chown ${u.user}:${u.user} ${volume} ${u.secrets.map((s) => secretFile(LAYOUT, s)).join(' ')}`.trim());
    const postStart = u.postStart && u.health?.kind === 'command' ? { ready: u.health.command, ...u.postStart } : undefined;
    if (u.postStart && !postStart) throw new Error(`${u.name}: a postStart script needs a command health check to wait for`);
    containers.push({ name: `cdn-${u.name}`, image: images[u.image!], args: u.command, env: u.env, mounts, ...(postStart ? { postStart } : {}) });
  }
  const dataVolume = dataVolumeId ? { volumeId: dataVolumeId, mountPoint: hostVolume(fromImages.find((u) => u.role === 'object-store')!) } : undefined;
  return {
    region: host.network.region,
    roles: [...new Set(own.map((u) => u.role))].filter((r): r is OwnRole => r !== 'origin'),
    units: own,
    files: imageFiles,
    secrets,
    artefact,
    ...(own.some((u) => u.role === 'origin') ? { node: { version: settings.nodeVersion } } : {}),
    containers,
    ...(dataVolume ? { dataVolume } : {}),
    prepare,
    ...(shipper ? { logShipper: { version: alloyPackageVersion(images), unit: shipper } } : {}),
  };
}

/** Instances, in the units' dependency order, each waiting for the hosts its units depend on. */
function createInstances(
  input: AwsStackInput,
  hosts: Map<string, Host>,
  units: pulumi.Output<ServiceUnit[]>,
  primary: RegionNetwork,
  peeringRoutes: aws.ec2.Route[],
  parameters: Parameters,
  artefact: ArtefactObject,
): Map<string, aws.ec2.Instance> {
  const { settings } = input;
  const prefix = input.plan.spec.name;
  const instances = new Map<string, aws.ec2.Instance>();
  const artefactRef = artefact.bucket.bucket.apply((bucket): ArtefactRef => ({ bucket, key: artefact.key, region: artefact.region, sha256: artefact.sha256 }));
  for (const host of hosts.values()) {
    // The object store's data: an EBS volume in the private subnet's zone.
    const dataVolume = host.units.some((u) => u.role === 'object-store')
      ? new aws.ebs.Volume(
          `${host.group}-data`,
          { availabilityZone: primary.zone, size: settings.objectStoreVolumeGb, type: 'gp3', encrypted: true, tags: { Name: `${prefix}-${host.group}-data` } },
          { parent: host.component, provider: primary.provider, protect: false },
        )
      : undefined;
    const regionParameters = parameters.get(host.network.region)!;
    const access = createInstanceProfile(
      host.group,
      secretsOf(host.units).map((s) => regionParameters.get(s)!),
      artefact,
      host.network,
      host.component,
      prefix,
    );
    const mine = units.apply((all) => all.filter((u) => u.group === host.group || u.onEveryHost));
    // No secret value is in here (the parameters' names only): the user data is readable with ec2:DescribeInstanceAttribute.
    const userDataBase64 = pulumi.all([mine, dataVolume?.id, artefactRef]).apply(([us, volumeId, ref]) => packUserData(renderUserData(hostPlanOf(host, us, input, volumeId, ref))));
    const deps = [...new Set(host.units.flatMap((u) => u.dependsOn).map((d) => groupOf(hosts, d)))]
      .filter((g) => g !== host.group)
      .map((g) => instances.get(g) ?? fail(`${host.group} depends on ${g}, whose instance comes later`));
    const instance = new aws.ec2.Instance(
      host.group,
      {
        ami: host.network.ami,
        instanceType: host.instanceType,
        primaryNetworkInterface: { networkInterfaceId: host.eni.id },
        iamInstanceProfile: access.profile.name,
        // gzipped cloud-config (packUserData): binary, so base64 rather than userData
        userDataBase64,
        // A changed file means a new instance: cloud-init runs once (immutable hosts).
        userDataReplaceOnChange: true,
        metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1, httpEndpoint: 'enabled' },
        rootBlockDevice: { volumeSize: settings.rootVolumeGb, volumeType: 'gp3', encrypted: true },
        tags: { Name: `${prefix}-${host.group}`, 'cdn:role': componentOf(host.units[0]).kind },
      },
      {
        parent: host.component,
        provider: host.network.provider,
        // The network interface moves to the replacement, so the old instance goes first.
        deleteBeforeReplace: true,
        // A host that dials another region's units boots once the routes over the
        // peering exist, both ways; every host reads its secrets and the artefact at boot.
        dependsOn: [
          ...deps,
          host.network.nat,
          ...(dialsAcrossRegions(hosts, host) ? peeringRoutes : []),
          ...secretsOf(host.units).map((s) => regionParameters.get(s)!),
          artefact.object,
          // the role's grants exist before the instance reads with them
          ...access.grants,
        ],
      },
    );
    instances.set(host.group, instance);
    if (dataVolume) {
      new aws.ec2.VolumeAttachment(`${host.group}-data`, { deviceName: '/dev/sdf', volumeId: dataVolume.id, instanceId: instance.id }, { parent: host.component, provider: primary.provider });
    }
  }
  return instances;
}

function fail(message: string): never {
  throw new Error(message);
}

/** Whether a host dials units in another region (edges dial the origin; the balancer and Prometheus dial edges). */
function dialsAcrossRegions(hosts: Map<string, Host>, host: Host): boolean {
  const mine = new Set(host.units.map((u) => u.name));
  return [...hosts.values()].some((h) => h.network !== host.network && h.units.some((u) => u.accepts.some((c) => mine.has(c.peer))));
}

function groupOf(hosts: Map<string, Host>, unitName: string): string {
  for (const h of hosts.values()) if (h.units.some((u) => u.name === unitName)) return h.group;
  throw new Error(`no host runs ${unitName}`);
}

function outputs(input: AwsStackInput, topology: pulumi.Output<Topology>, publicBaseUrl: pulumi.Output<string>): StackOutputs {
  const { secrets } = input;
  return {
    balancerUrl: publicBaseUrl,
    assetBaseUrl: publicBaseUrl,
    grafanaUrl: topology.apply((topo) => url(topo.grafana!.reach)),
    originApiUrl: topology.apply((topo) => url(topo.originApi.reach)),
    edges: topology.apply((topo) => {
      const out: Record<string, string[]> = {};
      for (const e of topo.edges) (out[e.region] ??= []).push(url(e.traffic.reach));
      return out;
    }),
    prometheusUrl: topology.apply((topo) => url(topo.prometheus!.reach)),
    adminToken: pulumi.secret(secrets.adminToken),
    debugToken: pulumi.secret(secrets.debugToken),
    urlSigningKeys: pulumi.secret(secrets.urlSigningKeys),
    grafanaAdminPassword: pulumi.secret(secrets.grafanaAdminPassword),
    artefactSha256: pulumi.output(input.artefact.sha256),
  };
}
