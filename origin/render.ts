/** The origin's environment, rendered from the spec like every other service's files. */
import type { CdnSpec } from '../infra/spec';
import { url, type Topology } from '../infra/topology';

export interface OriginSecrets {
  /** Path of a file holding the admin token (never the token itself). */
  adminTokenFile: string;
}

export function renderOriginEnv(spec: CdnSpec, topology: Topology, storagePath: string, secrets: OriginSecrets): Record<string, string> {
  if (spec.storage.kind !== 'filesystem') {
    throw new Error(`storage kind ${spec.storage.kind} is not supported by the origin yet`);
  }
  return {
    NODE_ENV: 'production',
    CDN_ORIGIN_HOST: topology.origin.listen.host,
    CDN_ORIGIN_PORT: String(topology.origin.listen.port),
    CDN_STORAGE_KIND: 'filesystem',
    CDN_STORAGE_PATH: spec.storage.path ?? storagePath,
    CDN_REDIS_URL: `redis://${topology.redis.reach.host}:${topology.redis.reach.port}`,
    CDN_ADMIN_TOKEN_FILE: secrets.adminTokenFile,
    CDN_PUBLIC_BASE_URL: topology.publicBaseUrl,
    CDN_PURGE_STREAM: spec.purge.stream,
    CDN_PURGE_STREAM_MAXLEN: String(spec.purge.maxLen),
    // The edges that must apply a purge before the origin reports it complete.
    CDN_EDGE_IDS: topology.edges.map((e) => e.id).join(','),
  };
}

export function originUrl(topology: Topology): string {
  return url(topology.origin.reach);
}
