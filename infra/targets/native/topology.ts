/** The native topology: every service on 127.0.0.1, each on a free port. */
import { edgeIdentities, regionOrder, type CdnSpec } from '../../model/spec';
import { url, type Placement, type Topology } from '../../model/topology';
import { freePort, portOrFree } from './ports';

const HOST = '127.0.0.1';

export interface NativePortRequest {
  /** A balancer port the user asked for (error if busy); default: 8080 if free, else any. */
  balancerPort?: number;
  withPrometheus: boolean;
  /** A read-only Redis replica for every region but the first (how the aws target runs), its edges reading from it. */
  regionalReplicas?: boolean;
}

export async function nativeTopology(spec: CdnSpec, request: NativePortRequest): Promise<Topology> {
  const taken = new Set<number>();
  const at = (port: number): Placement => ({ listen: { host: HOST, port }, reach: { host: HOST, port } });
  const next = async () => at(await freePort(HOST, taken));
  const strict = request.balancerPort !== undefined;
  const balancerTraffic = at(await portOrFree(request.balancerPort ?? spec.ports.balancer, 'balancer', strict, taken, HOST));
  const balancer = { traffic: balancerTraffic, internal: await next() };
  const redis = await next();
  const redisReplicas: Record<string, Placement> = {};
  if (request.regionalReplicas) for (const region of regionOrder(spec).slice(1)) redisReplicas[region] = await next();
  // the primary's TLS listener, which the replicas and their regions' edges dial (as across regions on aws)
  const redisTls = Object.keys(redisReplicas).length > 0 ? await next() : undefined;
  const origin = await next();
  const originApi = await next();
  const edges = [];
  for (const id of edgeIdentities(spec)) {
    edges.push({ ...id, traffic: await next(), internal: await next() });
  }
  const prometheus = request.withPrometheus ? at(await portOrFree(spec.ports.prometheus, 'prometheus', false, taken, HOST)) : null;
  return {
    redis,
    ...(redisTls ? { redisReplicas, redisTls } : {}),
    origin,
    originApi,
    balancer,
    edges,
    prometheus,
    publicBaseUrl: url(balancerTraffic.reach),
  };
}
