/**
 * The aws target (`pulumi up -s dev`): one VPC per region (infra/aws/network.ts);
 * the balancer, origin, Redis, object store and monitoring in the primary region
 * (the spec's default region); each region's edges in that region. Every service
 * gets a network interface first, so all private addresses are known (Outputs)
 * before any instance exists; the topology is resolved from them inside one
 * `apply`, the pure renderers run there, and each instance's cloud-init carries
 * exactly the files they produce (infra/aws/cloud-init.ts).
 */
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { lokiPushUrl } from '../../../observability/alloy';
import { GRAFANA_DASHBOARDS_DIR, renderGrafanaDashboardsProvider, renderGrafanaDatasources } from '../../../observability/grafana';
import { CdnService, type ServiceKind } from '../pulumi/component';
import type { AwsSettings, DeployPlan } from '../pulumi/config';
import { alloyPackageVersion, type ImageCatalogue } from '../pulumi/images';
import type { StackOutputs } from '../pulumi/outputs';
import type { StackSecrets } from '../pulumi/secrets';
import { deployedUnits, SECRETS_DIR, unitSecretFiles } from '../pulumi/units';
import { CONTAINER_ROOT } from '../../model/layout';
import { regionOrder } from '../../model/spec';
import { url, type Placement, type Topology } from '../../model/topology';
import type { ServiceUnit } from '../../units/units';
import { renderUserData, type HostContainer, type HostFile, type HostPlan } from './cloud-init';
import { peer, regionNetwork, type RegionNetwork } from './network';

export interface AwsStackInput {
  plan: DeployPlan;
  settings: AwsSettings;
  images: ImageCatalogue;
  secrets: StackSecrets;
}

export const MINIO_PORT = 9000;
export const GRAFANA_PORT = 3000;
export const LOKI_PORT = 3100;

/** Hosts of the stack: one per service unit, plus the object store. Monitoring = Prometheus + Grafana + Loki. */
type HostName = 'redis' | 'origin' | 'object-store' | 'balancer' | 'monitoring' | `edge-${string}`;

interface Host {
  name: HostName;
  kind: ServiceKind;
  component: CdnService;
  network: RegionNetwork;
  sg: aws.ec2.SecurityGroup;
  eni: aws.ec2.NetworkInterface;
  instanceType: string;
}

export function awsStack(input: AwsStackInput): StackOutputs {
  const { plan, settings, images, secrets } = input;
  const spec = plan.spec;
  const prefix = spec.name;
  const order = regionOrder(spec);
  const primaryRegion = order[0];

  const networks = new Map<string, RegionNetwork>();
  spec.regions.forEach((r, i) => networks.set(r.name, regionNetwork(r.name, i, settings.firstCidrOctet, prefix)));
  const primary = networks.get(primaryRegion)!;
  for (const n of networks.values()) if (n !== primary) peer(primary, n);

  const components = new Map<string, CdnService>();
  const component = (kind: ServiceKind, name: string) => {
    if (!components.has(name)) components.set(name, new CdnService(kind, name));
    return components.get(name)!;
  };

  // One security group per kind of host and region; rules are added below, once every address is known.
  const groups = new Map<string, aws.ec2.SecurityGroup>();
  const securityGroup = (role: string, network: RegionNetwork, parent: CdnService) => {
    const key = `${role}-${network.region}`;
    if (!groups.has(key)) {
      const sg = new aws.ec2.SecurityGroup(
        `sg-${key}`,
        { vpcId: network.vpc.id, description: `CDN ${role} (${network.region})`, tags: { Name: `${prefix}-${key}` } },
        { parent, provider: network.provider },
      );
      // Outbound: packages, the repository, external origins.
      new aws.vpc.SecurityGroupEgressRule(`egress-${key}`, { securityGroupId: sg.id, ipProtocol: '-1', cidrIpv4: '0.0.0.0/0', description: 'outbound' }, { parent, provider: network.provider });
      groups.set(key, sg);
    }
    return groups.get(key)!;
  };

  const hosts = new Map<HostName, Host>();
  const addHost = (name: HostName, kind: ServiceKind, componentName: string, network: RegionNetwork, sgRole: string, subnet: 'public' | 'private', instanceType: string) => {
    const parent = component(kind, componentName);
    const sg = securityGroup(sgRole, network, parent);
    const eni = new aws.ec2.NetworkInterface(
      `eni-${name}`,
      { subnetId: (subnet === 'public' ? network.publicSubnet : network.privateSubnet).id, securityGroups: [sg.id], tags: { Name: `${prefix}-${name}` } },
      { parent, provider: network.provider },
    );
    hosts.set(name, { name, kind, component: parent, network, sg, eni, instanceType });
  };
  const t = settings.instanceTypes;
  addHost('redis', 'InvalidationBus', 'bus', primary, 'redis', 'private', t.redis);
  if (plan.objectStore.kind === 'builtin') addHost('object-store', 'ObjectStore', 'object-store', primary, 'object-store', 'private', t.objectStore);
  addHost('origin', 'Origin', 'origin', primary, 'origin', 'private', t.origin);
  for (const r of spec.regions) {
    for (let i = 1; i <= r.edges; i++) addHost(`edge-${r.name}-${i}`, 'EdgeFleet', `edges-${r.name}`, networks.get(r.name)!, 'edge', 'private', t.edge);
  }
  addHost('balancer', 'Balancer', 'balancer', primary, 'balancer', 'public', t.balancer);
  addHost('monitoring', 'Monitoring', 'monitoring', primary, 'monitoring', 'private', t.monitoring);

  // The balancer's public address exists before any instance: the origin's public base URL needs it.
  const balancer = hosts.get('balancer')!;
  const publicIp = new aws.ec2.Eip('balancer-ip', { domain: 'vpc', tags: { Name: `${prefix}-balancer` } }, { parent: balancer.component, provider: primary.provider });
  new aws.ec2.EipAssociation('balancer-ip', { allocationId: publicIp.id, networkInterfaceId: balancer.eni.id }, { parent: balancer.component, provider: primary.provider });
  const trafficPort = spec.balancer.tls ? 443 : 80;
  const publicBaseUrl = publicIp.publicIp.apply((ip) => (spec.balancer.tls ? `https://${ip}` : `http://${ip}`));

  const hostNames = [...hosts.keys()];
  const addresses = pulumi.all(hostNames.map((h) => hosts.get(h)!.eni.privateIp)).apply((ips) => Object.fromEntries(hostNames.map((h, i) => [h, ips[i]])) as Record<HostName, string>);

  const topologyOf = (ip: Record<HostName, string>, base: string): Topology => {
    const at = (host: string, port: number): Placement => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
    return {
      redis: at(ip.redis, spec.ports.redis),
      origin: at(ip.origin, spec.ports.origin),
      balancer: { traffic: at(ip.balancer, trafficPort), internal: at(ip.balancer, spec.ports.edgeInternal) },
      edges: spec.regions.flatMap((r) =>
        Array.from({ length: r.edges }, (_, i) => {
          const id = `${r.name}-${i + 1}`;
          return { id, region: r.name, index: i + 1, traffic: at(ip[`edge-${id}`], spec.ports.edge), internal: at(ip[`edge-${id}`], spec.ports.edgeInternal) };
        }),
      ),
      prometheus: at(ip.monitoring, spec.ports.prometheus),
      publicBaseUrl: base,
    };
  };
  const topology = pulumi.all([addresses, publicBaseUrl]).apply(([ip, base]) => topologyOf(ip, base));
  const objectStoreEndpoint = addresses.apply((ip) => (plan.objectStore.kind === 'builtin' ? url({ host: ip['object-store'], port: MINIO_PORT }) : ''));
  // The renderers run here, once, on resolved addresses.
  const units = pulumi.all([topology, objectStoreEndpoint]).apply(([topo, endpoint]) => deployedUnits(plan, topo, endpoint));

  // Security groups: least privilege, by private address (/32) even across regions,
  // where security-group references do not reach over a peering.
  const ingress = (name: string, host: Host, port: number, cidr: pulumi.Input<string>, description: string) =>
    new aws.vpc.SecurityGroupIngressRule(
      `ingress-${name}`,
      { securityGroupId: host.sg.id, ipProtocol: 'tcp', fromPort: port, toPort: port, cidrIpv4: cidr, description },
      { parent: host.component, provider: host.network.provider },
    );
  const from = (h: HostName) => hosts.get(h)!.eni.privateIp.apply((ip) => `${ip}/32`);
  const edgeNames = hostNames.filter((h) => h.startsWith('edge-'));
  const p = spec.ports;
  ingress('balancer-traffic', balancer, trafficPort, '0.0.0.0/0', 'shoppers');
  ingress('balancer-metrics', balancer, p.edgeInternal, from('monitoring'), 'metrics from Prometheus');
  for (const e of edgeNames) {
    const edge = hosts.get(e)!;
    ingress(`${e}-traffic`, edge, p.edge, from('balancer'), 'traffic from the balancer');
    ingress(`${e}-health`, edge, p.edgeInternal, from('balancer'), 'health checks from the balancer');
    ingress(`${e}-metrics`, edge, p.edgeInternal, from('monitoring'), 'metrics from Prometheus');
    ingress(`origin-from-${e}`, hosts.get('origin')!, p.origin, from(e), `misses from ${e}`);
    ingress(`redis-from-${e}`, hosts.get('redis')!, p.redis, from(e), `purge stream for ${e}`);
    // Edges read raw assets from the bucket on misses (signed, read-only keys when the spec names them).
    if (hosts.has('object-store')) ingress(`object-store-from-${e}`, hosts.get('object-store')!, MINIO_PORT, from(e), `asset reads from ${e}`);
  }
  ingress('origin-api', hosts.get('origin')!, p.origin, primary.cidr, 'asset and purge API from inside the primary VPC');
  ingress('origin-metrics', hosts.get('origin')!, p.origin, from('monitoring'), 'metrics from Prometheus');
  ingress('redis-from-origin', hosts.get('redis')!, p.redis, from('origin'), 'purges from the origin');
  if (hosts.has('object-store')) ingress('object-store-from-origin', hosts.get('object-store')!, MINIO_PORT, from('origin'), 'S3 API for the origin');
  ingress('grafana', hosts.get('monitoring')!, GRAFANA_PORT, primary.cidr, 'Grafana from inside the primary VPC');
  // Alloy on every instance pushes its logs to Loki on the monitoring instance; Alloy
  // itself listens on its loopback only, so it needs no rule of its own.
  for (const h of hostNames.filter((x) => x !== 'monitoring')) ingress(`loki-from-${h}`, hosts.get('monitoring')!, LOKI_PORT, from(h), `logs from Alloy on ${h}`);
  if (settings.sshCidr) {
    for (const h of new Set([...hosts.values()].map((x) => x.sg))) {
      const owner = [...hosts.values()].find((x) => x.sg === h)!;
      ingress(`ssh-${[...groups.entries()].find(([, g]) => g === h)![0]}`, owner, 22, settings.sshCidr, 'SSH from the configured network');
    }
  }

  // The object store's data volume, in the private subnet's zone.
  let dataVolume: aws.ebs.Volume | undefined;
  if (hosts.has('object-store')) {
    const store = hosts.get('object-store')!;
    dataVolume = new aws.ebs.Volume(
      'object-store-data',
      { availabilityZone: primary.privateSubnet.availabilityZone, size: settings.objectStoreVolumeGb, type: 'gp3', encrypted: true, tags: { Name: `${prefix}-object-store-data` } },
      { parent: store.component, provider: primary.provider, protect: false },
    );
  }

  const source = settings.source;
  const secretFile = (path: string, content: pulumi.Output<string>, permissions = '0400') => content.apply((c): HostFile => ({ path, content: c, permissions }));
  const unitHost = (u: ServiceUnit): HostName => (u.role === 'prometheus' ? 'monitoring' : (u.name as HostName));

  const servicePlan = (name: HostName): pulumi.Output<HostPlan> => {
    const mine = units.apply((all) => all.filter((u) => unitHost(u) === name));
    const secretFiles = mine.apply((us) => pulumi.all(us.flatMap((u) => unitSecretFiles(u, secrets)).map((s) => secretFile(s.path, s.content))));
    const base = { source, containers: [] as HostContainer[], prepare: [] as string[], files: [] as HostFile[] };
    if (name === 'object-store') {
      return pulumi.all([secretFile(`${SECRETS_DIR}/s3-access-key`, secrets.s3AccessKey.apply((v) => `${v}\n`)), secretFile(`${SECRETS_DIR}/s3-secret-key`, secrets.s3SecretKey.apply((v) => `${v}\n`)), dataVolume!.id]).apply(
        ([access, secret, volumeId]): HostPlan => ({
          ...base,
          roles: [],
          units: [],
          files: [access, secret],
          dataVolume: { volumeId, mountPoint: '/var/lib/cdn-object-store' },
          containers: [
            {
              name: 'cdn-object-store',
              image: images.minio,
              args: ['server', '/data', '--address', `:${MINIO_PORT}`],
              env: { MINIO_ROOT_USER_FILE: `${SECRETS_DIR}/s3-access-key`, MINIO_ROOT_PASSWORD_FILE: `${SECRETS_DIR}/s3-secret-key` },
              mounts: { '/var/lib/cdn-object-store': '/data', [SECRETS_DIR]: `${SECRETS_DIR}:ro` },
            },
          ],
        }),
      );
    }
    if (name === 'monitoring') {
      return pulumi.all([mine, secretFile(`${SECRETS_DIR}/grafana-admin-password`, secrets.grafanaAdminPassword)]).apply(([us, grafanaPassword]): HostPlan => ({
        ...base,
        roles: ['prometheus'],
        units: us as ServiceUnit[],
        files: [
          grafanaPassword,
          {
            path: '/etc/cdn/grafana/provisioning/datasources/cdn.yaml',
            content: renderGrafanaDatasources({ prometheusUrl: url({ host: '127.0.0.1', port: spec.ports.prometheus }), lokiUrl: url({ host: '127.0.0.1', port: LOKI_PORT }) }),
            permissions: '0644',
          },
          { path: '/etc/cdn/grafana/provisioning/dashboards/cdn.yaml', content: renderGrafanaDashboardsProvider(), permissions: '0644' },
        ],
        // Grafana's and Loki's images run as uids 472 and 10001.
        prepare: [`chown 472:472 ${SECRETS_DIR}/grafana-admin-password`, 'mkdir -p /var/lib/cdn-grafana /var/lib/cdn-loki', 'chown 472:472 /var/lib/cdn-grafana', 'chown 10001:10001 /var/lib/cdn-loki'],
        containers: [
          { name: 'cdn-loki', image: images.loki, args: ['-config.file=/etc/loki/local-config.yaml'], env: {}, mounts: { '/var/lib/cdn-loki': '/loki' } },
          {
            name: 'cdn-grafana',
            image: images.grafana,
            args: [],
            env: { GF_SECURITY_ADMIN_PASSWORD__FILE: '/run/cdn/grafana-admin-password', GF_AUTH_ANONYMOUS_ENABLED: 'false', GF_ANALYTICS_REPORTING_ENABLED: 'false' },
            mounts: {
              '/var/lib/cdn-grafana': '/var/lib/grafana',
              '/etc/cdn/grafana/provisioning/datasources': '/etc/grafana/provisioning/datasources:ro',
              // the dashboards as the instance's checkout of the repository has them (observability/dashboards/)
              '/etc/cdn/grafana/provisioning/dashboards': '/etc/grafana/provisioning/dashboards:ro',
              [`${CONTAINER_ROOT}/observability/dashboards`]: `${GRAFANA_DASHBOARDS_DIR}:ro`,
              [`${SECRETS_DIR}/grafana-admin-password`]: '/run/cdn/grafana-admin-password:ro',
            },
          },
        ],
      }));
    }
    return pulumi.all([mine, secretFiles]).apply(([us, files]): HostPlan => ({
      ...base,
      roles: [...new Set(us.map((u) => u.role))].filter((r) => r !== 'origin'),
      units: us as ServiceUnit[],
      files,
      ...(us.some((u) => u.role === 'origin') ? { node: { version: settings.nodeVersion } } : {}),
    }));
  };

  // Every instance ships its logs with Alloy, to Loki on the monitoring instance.
  const alloyVersion = alloyPackageVersion(images);
  const hostPlan = (name: HostName): pulumi.Output<HostPlan> =>
    pulumi.all([servicePlan(name), addresses]).apply(([plan, ip]) => ({
      ...plan,
      logShipper: { version: alloyVersion, lokiPushUrl: lokiPushUrl(url({ host: name === 'monitoring' ? '127.0.0.1' : ip.monitoring, port: LOKI_PORT })) },
    }));

  // Instances, in the units' dependency order, each waiting for the hosts its units depend on.
  const instances = new Map<HostName, aws.ec2.Instance>();
  const dependsOnHosts: Record<string, HostName[]> = {
    redis: [],
    'object-store': [],
    origin: hosts.has('object-store') ? ['redis', 'object-store'] : ['redis'],
    balancer: edgeNames as HostName[],
    monitoring: ['origin', 'balancer'],
  };
  const creationOrder: HostName[] = ['redis', ...(hosts.has('object-store') ? (['object-store'] as HostName[]) : []), 'origin', ...(edgeNames as HostName[]), 'balancer', 'monitoring'];
  for (const name of creationOrder) {
    const host = hosts.get(name)!;
    const userData = pulumi.secret(hostPlan(name).apply(renderUserData));
    const deps = (dependsOnHosts[name] ?? ['origin', 'redis']).map((d) => instances.get(d)!);
    const instance = new aws.ec2.Instance(
      name,
      {
        ami: host.network.ami,
        instanceType: host.instanceType,
        primaryNetworkInterface: { networkInterfaceId: host.eni.id },
        userData,
        // A changed file means a new instance: cloud-init runs once (immutable hosts).
        userDataReplaceOnChange: true,
        metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1, httpEndpoint: 'enabled' },
        rootBlockDevice: { volumeSize: settings.rootVolumeGb, volumeType: 'gp3', encrypted: true },
        tags: { Name: `${prefix}-${name}`, 'cdn:role': host.kind },
      },
      {
        parent: host.component,
        provider: host.network.provider,
        // The network interface moves to the replacement, so the old instance goes first.
        deleteBeforeReplace: true,
        dependsOn: [...deps, host.network.nat, ...host.network.peeringRoutes, ...(name === 'balancer' || name === 'monitoring' ? primary.peeringRoutes : [])],
      },
    );
    instances.set(name, instance);
    if (name === 'object-store' && dataVolume) {
      new aws.ec2.VolumeAttachment('object-store-data', { deviceName: '/dev/sdf', volumeId: dataVolume.id, instanceId: instance.id }, { parent: host.component, provider: primary.provider });
    }
  }
  for (const c of components.values()) c.done();

  return {
    balancerUrl: publicBaseUrl,
    assetBaseUrl: publicBaseUrl,
    grafanaUrl: addresses.apply((ip) => url({ host: ip.monitoring, port: GRAFANA_PORT })),
    originApiUrl: topology.apply((topo) => url(topo.origin.reach)),
    edges: topology.apply((topo) => {
      const out: Record<string, string[]> = {};
      for (const e of topo.edges) (out[e.region] ??= []).push(url(e.traffic.reach));
      return out;
    }),
    prometheusUrl: topology.apply((topo) => url(topo.prometheus!.reach)),
    adminToken: pulumi.secret(secrets.adminToken),
    grafanaAdminPassword: pulumi.secret(secrets.grafanaAdminPassword),
  };
}
