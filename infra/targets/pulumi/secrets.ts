/**
 * The stack's secrets as Pulumi secret Outputs. A spec names each secret (e.g.
 * `secrets.redisPassword: redisPassword`); the value comes from the stack config key
 * of that name (`pulumi config set --secret cdn:redisPassword ...`) or, where the
 * stack may choose it, from @pulumi/random. A value stored as plain text is refused.
 */
import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { cdnError } from '../../model/errors';
import type { DeployPlan } from './config';
import type { RedisTlsMaterial } from './redis-tls';

export interface StackSecrets {
  adminToken: pulumi.Output<string>;
  /** The edges' X-Cdn-Debug token (scope debug only). */
  debugToken: pulumi.Output<string>;
  /** `<id>:<secret>,...`: the keys URLs are signed with (the first) and verified against (all). */
  urlSigningKeys: pulumi.Output<string>;
  redisPassword: pulumi.Output<string>;
  /** The bucket's keys: none when the origin keeps assets on its own volume (docker, filesystem storage). */
  s3AccessKey?: pulumi.Output<string>;
  s3SecretKey?: pulumi.Output<string>;
  /** The edges' own bucket keys, when the spec names them (else the edges use the origin's). */
  s3EdgeAccessKey?: pulumi.Output<string>;
  s3EdgeSecretKey?: pulumi.Output<string>;
  grafanaAdminPassword: pulumi.Output<string>;
  /** With regional Redis replicas (aws): the TLS material of the links that cross regions (redis-tls.ts). */
  redisTls?: RedisTlsMaterial;
}

// Not in the typings, but what Pulumi's own Config uses to tell `--secret` values apart.
const isConfigSecret = (pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;

function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/_/g, '-').toLowerCase();
}

export function resolveSecret(config: pulumi.Config, name: string, generate: boolean, parent?: pulumi.Resource, length = 32): pulumi.Output<string> {
  const key = `${config.name}:${name}`;
  const plain = config.get(name);
  if (plain !== undefined) {
    if (isConfigSecret && !isConfigSecret(key)) {
      throw cdnError('CDN_ERR_CONFIG_INVALID', `${key} is stored as plain text; set it with: pulumi config set --secret ${key} <value>`);
    }
    return config.requireSecret(name);
  }
  if (!generate) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `${key} is not set; set it with: pulumi config set --secret ${key} <value>`);
  }
  // Alphanumeric: safe in redis.conf, env files and one-line secret files alike.
  return new random.RandomPassword(`secret-${kebab(name)}`, { length, special: false }, { parent }).result;
}

/** The stack's URL signing keys: as configured (`<id>:<secret>,...`), else one generated key with id k1. */
function urlSigningKeys(config: pulumi.Config, name: string, parent?: pulumi.Resource): pulumi.Output<string> {
  if (config.get(name) !== undefined) return resolveSecret(config, name, false, parent);
  return pulumi.secret(pulumi.interpolate`k1:${resolveSecret(config, name, true, parent)}`);
}

export function resolveSecrets(config: pulumi.Config, plan: DeployPlan, parent?: pulumi.Resource): StackSecrets {
  const spec = plan.spec;
  const storage = spec.storage;
  // Keys of an external S3 endpoint belong to its owner; the stack's own MinIO gets generated ones.
  const s3Refs = storage.kind === 's3' ? storage : plan.objectStore.kind === 'builtin' ? plan.objectStore : undefined;
  const generateS3 = plan.objectStore.kind === 'builtin';
  const edgeKeys = storage.kind === 's3' && storage.edgeAccessKeySecret && storage.edgeSecretKeySecret ? storage : undefined;
  const os = plan.objectStore;
  const ownEdgeKeys = os.kind === 'builtin' && os.edgeAccessKeySecret && os.edgeSecretKeySecret ? os : undefined;
  return {
    ...(edgeKeys
      ? {
          // Keys of an external endpoint's read-only user: never generated.
          s3EdgeAccessKey: resolveSecret(config, edgeKeys.edgeAccessKeySecret!, false, parent),
          s3EdgeSecretKey: resolveSecret(config, edgeKeys.edgeSecretKeySecret!, false, parent),
        }
      : {}),
    ...(ownEdgeKeys
      ? {
          // The stack's own MinIO: the edges' read-only user, generated like its root keys
          // (an access key of 20 and a secret of 40 characters, the lengths MinIO's tools accept everywhere).
          s3EdgeAccessKey: resolveSecret(config, ownEdgeKeys.edgeAccessKeySecret!, true, parent, 20),
          s3EdgeSecretKey: resolveSecret(config, ownEdgeKeys.edgeSecretKeySecret!, true, parent, 40),
        }
      : {}),
    adminToken: resolveSecret(config, spec.secrets.adminToken, true, parent),
    debugToken: resolveSecret(config, spec.secrets.debugToken, true, parent),
    urlSigningKeys: urlSigningKeys(config, spec.secrets.urlSigningKeys, parent),
    redisPassword: resolveSecret(config, spec.secrets.redisPassword ?? 'redisPassword', true, parent),
    ...(s3Refs
      ? {
          s3AccessKey: resolveSecret(config, s3Refs.accessKeySecret, generateS3, parent),
          s3SecretKey: resolveSecret(config, s3Refs.secretKeySecret, generateS3, parent),
        }
      : {}),
    grafanaAdminPassword: resolveSecret(config, 'grafanaAdminPassword', true, parent),
  };
}
