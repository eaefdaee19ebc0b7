/** The origin's environment, rendered from the spec like every other service's files. */
import { cdnError } from '../infra/model/errors';
import type { OriginEnvironment } from './contract/environment';
import { sizeBytes, type CdnSpec } from '../infra/model/spec';
import type { Topology } from '../infra/model/topology';

export interface OriginSecrets {
  /** Path of a file holding the admin token (never the token itself). */
  adminTokenFile: string;
  /** Path of a file holding the debug token (scope `debug`: the edges' X-Cdn-Debug). */
  debugTokenFile: string;
  /** File holding the Redis password; required when the spec names one (`secrets.redisPassword`). */
  redisPasswordFile?: string;
  /** Files holding the S3 access and secret keys; required with `storage.kind: s3`. */
  s3AccessKeyFile?: string;
  s3SecretKeyFile?: string;
  /** File holding the URL signing keys (spec secrets.urlSigningKeys). */
  urlSigningKeysFile?: string;
}

/** The spec's `images` as the origin reads it (CDN_IMAGES; origin/contract/images.ts has the same defaults). */
export function originImages(images: CdnSpec['images']) {
  return {
    enabled: images.enabled,
    widths: images.widths,
    qualities: images.qualities,
    defaultQuality: images.defaultQuality,
    maxInputPixels: images.maxInputPixels,
    maxInputBytes: sizeBytes(images.maxInputSize),
    maxOutputBytes: sizeBytes(images.maxOutputSize),
    timeoutSeconds: images.timeout,
    concurrency: images.concurrency,
    queue: images.queue,
    allowSvg: images.allowSvg,
  };
}

function storageEnv(spec: CdnSpec, storagePath: string, secrets: OriginSecrets): OriginEnvironment {
  const storage = spec.storage;
  if (storage.kind === 'filesystem') {
    return { CDN_STORAGE_KIND: 'filesystem', CDN_STORAGE_PATH: storage.path ?? storagePath };
  }
  if (!secrets.s3AccessKeyFile || !secrets.s3SecretKeyFile) {
    // The target writes the keys named by storage.accessKeySecret/secretKeySecret into files.
    throw cdnError('CDN_ERR_CONFIG_INVALID', `storage kind s3 needs files holding the keys named ${storage.accessKeySecret} and ${storage.secretKeySecret}; this target provides none`);
  }
  return {
    CDN_STORAGE_KIND: 's3',
    CDN_S3_ENDPOINT: storage.endpoint,
    CDN_S3_BUCKET: storage.bucket,
    CDN_S3_REGION: storage.region,
    CDN_S3_ACCESS_KEY_FILE: secrets.s3AccessKeyFile,
    CDN_S3_SECRET_KEY_FILE: secrets.s3SecretKeyFile,
  };
}

/** NODE_ENV, then the origin's own variables (their names: origin/contract/environment.ts). */
export function renderOriginEnv(spec: CdnSpec, topology: Topology, storagePath: string, secrets: OriginSecrets): { NODE_ENV: string } & OriginEnvironment {
  if (spec.secrets.redisPassword && !secrets.redisPasswordFile) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `secrets.redisPassword (${spec.secrets.redisPassword}) needs a file holding the password; this target provides none`);
  }
  return {
    NODE_ENV: 'production',
    CDN_ORIGIN_HOST: topology.origin.listen.host,
    CDN_ORIGIN_PORT: String(topology.origin.listen.port),
    CDN_ORIGIN_API_PORT: String(topology.originApi.listen.port),
    ...storageEnv(spec, storagePath, secrets),
    CDN_REDIS_URL: `redis://${topology.redis.reach.host}:${topology.redis.reach.port}`,
    ...(spec.secrets.redisPassword ? { CDN_REDIS_PASSWORD_FILE: secrets.redisPasswordFile! } : {}),
    CDN_ADMIN_TOKEN_FILE: secrets.adminTokenFile,
    CDN_DEBUG_TOKEN_FILE: secrets.debugTokenFile,
    ...(secrets.urlSigningKeysFile ? { CDN_URL_SIGNING_KEYS_FILE: secrets.urlSigningKeysFile } : {}),
    CDN_IMAGES: JSON.stringify(originImages(spec.images)),
    ...(spec.downloads.prefixes.length > 0 ? { CDN_DOWNLOAD_PREFIXES: spec.downloads.prefixes.join(',') } : {}),
    CDN_DOWNLOAD_MAX_TTL_SECONDS: String(spec.downloads.maxTtl),
    // Cache warming goes through the balancer's internal listener (its /warm/ route).
    CDN_BALANCER_INTERNAL_URL: `http://${topology.balancer.internal.reach.host.includes(':') ? `[${topology.balancer.internal.reach.host}]` : topology.balancer.internal.reach.host}:${topology.balancer.internal.reach.port}`,
    CDN_WARM_CONCURRENCY: String(spec.warming.concurrency),
    CDN_WARM_RATE_PER_SECOND: String(spec.warming.ratePerSecond),
    CDN_PUBLIC_BASE_URL: topology.publicBaseUrl,
    CDN_PURGE_STREAM: spec.purge.stream,
    CDN_PURGE_STREAM_MAXLEN: String(spec.purge.maxLen),
    // Tags only an admin token may purge (the edges need not know: the origin refuses the purge).
    ...(spec.purge.protectedTags.length > 0 ? { CDN_PROTECTED_TAGS: spec.purge.protectedTags.join(',') } : {}),
    // The edges that must apply a purge before the origin reports it complete.
    CDN_EDGE_IDS: topology.edges.map((e) => e.id).join(','),
  };
}
