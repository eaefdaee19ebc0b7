/**
 * The docker topology: every service on one bridge network at a fixed address, so
 * peers reach it by IP. Names would need DNS inside nginx: `balancer_by_lua`'s
 * set_current_peer takes IP addresses only, and Lua cosockets resolve names only
 * with a `resolver` (docs/adr/0003). Services listen on 0.0.0.0 at the spec's ports.
 */
import { cdnError } from '../../model/errors';
import { edgeIdentities, type CdnSpec } from '../../model/spec';
import type { Placement, Topology } from '../../model/topology';
import { IMAGE_PORTS } from '../../units/deployed';

/** Host numbers inside the subnet, by unit name; edges count up from EDGE_BASE. */
export const HOST: Record<string, number> = { redis: 10, origin: 11, 'object-store': 12, balancer: 20, prometheus: 30, grafana: 31, loki: 32, alloy: 33 };
const EDGE_BASE = 100;

function toInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function toIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

/** Each unit's address on the stack's network, by unit name. */
export type DockerAddresses = Record<string, string>;

export function dockerAddresses(spec: CdnSpec, subnet: string): DockerAddresses {
  const [base, bitsText] = subnet.split('/');
  const bits = Number(bitsText);
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(base) || bits > 24) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:docker.subnet: expected an IPv4 network of /24 or larger, got ${subnet}`);
  }
  const network = toInt(base) & (bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0);
  const edges = edgeIdentities(spec);
  const last = EDGE_BASE + edges.length;
  if (last >= 2 ** (32 - bits) - 1) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:docker.subnet: ${subnet} has no room for ${edges.length} edges; use a larger network`);
  }
  const at = (host: number) => toIp((network + host) >>> 0);
  return {
    ...Object.fromEntries(Object.entries(HOST).map(([name, host]) => [name, at(host)])),
    ...Object.fromEntries(edges.map((e, i) => [`edge-${e.id}`, at(EDGE_BASE + i)])),
  };
}

/** `objectStore`: whether the stack runs its own (no S3 endpoint in the spec). */
export function dockerTopology(spec: CdnSpec, a: DockerAddresses, publicBaseUrl: string, options: { objectStore: boolean }): Topology {
  const at = (host: string, port: number): Placement => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
  return {
    redis: at(a.redis, spec.ports.redis),
    origin: at(a.origin, spec.ports.origin),
    originApi: at(a.origin, spec.ports.originApi),
    balancer: { traffic: at(a.balancer, spec.ports.balancer), internal: at(a.balancer, spec.ports.edgeInternal) },
    edges: edgeIdentities(spec).map((e) => ({ ...e, traffic: at(a[`edge-${e.id}`], spec.ports.edge), internal: at(a[`edge-${e.id}`], spec.ports.edgeInternal) })),
    prometheus: at(a.prometheus, spec.ports.prometheus),
    ...(options.objectStore ? { objectStore: at(a['object-store'], IMAGE_PORTS.objectStore) } : {}),
    loki: at(a.loki, IMAGE_PORTS.loki),
    grafana: at(a.grafana, IMAGE_PORTS.grafana),
    publicBaseUrl,
  };
}
