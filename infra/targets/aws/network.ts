/**
 * One VPC per region: a public subnet (the balancer, the NAT gateway) and a private
 * one (everything else; it reaches the internet for packages, the artefact, SSM and
 * its parameters through NAT only), both in one availability zone that offers every
 * instance type the region's hosts use (chosen from EC2's instance-type offerings:
 * some zones refuse some types, e.g. the t3 family in us-east-1e).
 * The primary region (the balancer's) is peered with every other region, so edges
 * reach the origin and Redis, and the balancer and Prometheus reach every edge, over
 * private addresses.
 */
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { cdnError } from '../../model/errors';
import { CdnService } from '../pulumi/component';

export interface RegionNetwork {
  region: string;
  provider: aws.Provider;
  cidr: string;
  vpc: aws.ec2.Vpc;
  publicSubnet: aws.ec2.Subnet;
  privateSubnet: aws.ec2.Subnet;
  publicRoutes: aws.ec2.RouteTable;
  privateRoutes: aws.ec2.RouteTable;
  /** Instances wait for it: their bootstrap downloads packages. */
  nat: aws.ec2.NatGateway;
  /** The region's Debian 12 AMI, pinned in config (cdn:aws.amis). */
  ami: string;
  /** The availability zone of both subnets (and of the object store's volume). */
  zone: pulumi.Output<string>;
  component: CdnService;
  /** Routes to the other side of the peering; instances that cross regions wait for them. */
  peeringRoutes: aws.ec2.Route[];
}

/** Debian's own AMIs (the Debian cloud team's AWS account): where cdn:aws.amis should come from. */
export const DEBIAN_AMI_OWNER = '136693071363';

/** What EC2 answered for the region's instance types: parallel lists, one offering per index. */
export interface Offerings {
  instanceTypes: string[];
  locations: string[];
}

/**
 * The zone for a region's subnets: the first, in sorted order, that offers every
 * instance type the region's hosts use (so the choice is the same on every run).
 */
export function chooseZone(region: string, types: string[], offerings: Offerings): string {
  const offered = new Map<string, Set<string>>();
  offerings.locations.forEach((zone, i) => {
    if (!offered.has(zone)) offered.set(zone, new Set());
    offered.get(zone)!.add(offerings.instanceTypes[i]);
  });
  const zones = [...offered.keys()].sort();
  const zone = zones.find((z) => types.every((t) => offered.get(z)!.has(t)));
  if (zone) return zone;
  const seen = zones.map((z) => `${z}: ${[...offered.get(z)!].sort().join(', ')}`).join('; ');
  throw cdnError(
    'CDN_ERR_CONFIG_INVALID',
    `cdn:aws.instanceTypes: no availability zone of ${region} offers all of ${types.join(', ')} (${seen || 'none of them is offered'}); choose types every host of the region can share one zone with`,
  );
}

export interface RegionNetworkArgs {
  region: string;
  index: number;
  firstOctet: number;
  prefix: string;
  ami: string;
  /** Every instance type the region's hosts use. */
  instanceTypes: string[];
}

export function regionNetwork(args: RegionNetworkArgs): RegionNetwork {
  const { region, index, firstOctet, prefix, ami } = args;
  const component = new CdnService('Network', `network-${region}`);
  const provider = new aws.Provider(`aws-${region}`, { region: region as aws.Region }, { parent: component });
  const o = { parent: component, provider };
  const types = [...new Set(args.instanceTypes)].sort();
  const zone = aws.ec2
    .getInstanceTypeOfferingsOutput({ locationType: 'availability-zone', filters: [{ name: 'instance-type', values: types }] }, { provider, parent: component })
    .apply((offerings) => chooseZone(region, types, offerings));
  const net = `10.${firstOctet + index}`;
  const cidr = `${net}.0.0/16`;
  const tags = (name: string) => ({ Name: `${prefix}-${name}-${region}`, 'cdn:stack': prefix });
  const vpc = new aws.ec2.Vpc(`vpc-${region}`, { cidrBlock: cidr, enableDnsHostnames: true, enableDnsSupport: true, tags: tags('vpc') }, o);
  const igw = new aws.ec2.InternetGateway(`igw-${region}`, { vpcId: vpc.id, tags: tags('igw') }, o);
  const publicSubnet = new aws.ec2.Subnet(`public-${region}`, { vpcId: vpc.id, cidrBlock: `${net}.0.0/24`, availabilityZone: zone, mapPublicIpOnLaunch: false, tags: tags('public') }, o);
  const privateSubnet = new aws.ec2.Subnet(
    `private-${region}`,
    // Same zone as the public subnet: the NAT gateway and the data volume stay zonal.
    { vpcId: vpc.id, cidrBlock: `${net}.1.0/24`, availabilityZone: zone, mapPublicIpOnLaunch: false, tags: tags('private') },
    o,
  );
  const publicRoutes = new aws.ec2.RouteTable(`public-routes-${region}`, { vpcId: vpc.id, tags: tags('public') }, o);
  new aws.ec2.Route(`public-default-${region}`, { routeTableId: publicRoutes.id, destinationCidrBlock: '0.0.0.0/0', gatewayId: igw.id }, o);
  new aws.ec2.RouteTableAssociation(`public-assoc-${region}`, { routeTableId: publicRoutes.id, subnetId: publicSubnet.id }, o);
  const natIp = new aws.ec2.Eip(`nat-ip-${region}`, { domain: 'vpc', tags: tags('nat') }, o);
  const nat = new aws.ec2.NatGateway(`nat-${region}`, { allocationId: natIp.id, subnetId: publicSubnet.id, tags: tags('nat') }, { ...o, dependsOn: [igw] });
  const privateRoutes = new aws.ec2.RouteTable(`private-routes-${region}`, { vpcId: vpc.id, tags: tags('private') }, o);
  new aws.ec2.Route(`private-default-${region}`, { routeTableId: privateRoutes.id, destinationCidrBlock: '0.0.0.0/0', natGatewayId: nat.id }, o);
  new aws.ec2.RouteTableAssociation(`private-assoc-${region}`, { routeTableId: privateRoutes.id, subnetId: privateSubnet.id }, o);
  return { region, provider, cidr, vpc, publicSubnet, privateSubnet, publicRoutes, privateRoutes, nat, ami, zone, component, peeringRoutes: [] };
}

/** Peers the primary region's VPC with another region's, with routes both ways. */
export function peer(primary: RegionNetwork, other: RegionNetwork): void {
  const opts = { parent: other.component };
  const connection = new aws.ec2.VpcPeeringConnection(
    `peering-${primary.region}-${other.region}`,
    { vpcId: primary.vpc.id, peerVpcId: other.vpc.id, peerRegion: other.region, tags: { Name: `cdn-${primary.region}-${other.region}` } },
    { ...opts, provider: primary.provider },
  );
  const accepter = new aws.ec2.VpcPeeringConnectionAccepter(
    `peering-accept-${primary.region}-${other.region}`,
    { vpcPeeringConnectionId: connection.id, autoAccept: true },
    { ...opts, provider: other.provider },
  );
  const route = (name: string, table: aws.ec2.RouteTable, cidr: string, provider: aws.Provider) =>
    new aws.ec2.Route(name, { routeTableId: table.id, destinationCidrBlock: cidr, vpcPeeringConnectionId: connection.id }, { ...opts, provider, dependsOn: [accepter] });
  const toOther = [
    route(`peer-route-public-${primary.region}-${other.region}`, primary.publicRoutes, other.cidr, primary.provider),
    route(`peer-route-private-${primary.region}-${other.region}`, primary.privateRoutes, other.cidr, primary.provider),
  ];
  const back = route(`peer-route-private-${other.region}-${primary.region}`, other.privateRoutes, primary.cidr, other.provider);
  primary.peeringRoutes.push(...toOther);
  other.peeringRoutes.push(back);
}
