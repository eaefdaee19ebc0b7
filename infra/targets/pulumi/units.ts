/**
 * What both Pulumi targets do with the service units: render them for the
 * container/instance layout, add the secret files each unit reads and the
 * environment scripts/run-unit.sh needs. Docker maps the result onto containers,
 * aws onto cloud-init + systemd; neither renders anything itself.
 */
import * as pulumi from '@pulumi/pulumi';
import { CONTAINER_ROOT, containerLayout, secretFile, type Layout, type SecretName } from '../../model/layout';
import { renderRedisAuth } from '../../render/redis';
import type { Topology } from '../../model/topology';
import { buildUnits, type Role, type ServiceUnit } from '../../units/units';
import { specWithObjectStore, type DeployPlan } from './config';
import type { StackSecrets } from './secrets';

export const LAYOUT: Layout = containerLayout();
export const SECRETS_DIR = LAYOUT.secretsDir!;
/** The images' ENTRYPOINT and the systemd units' ExecStart wrapper. */
export const RUN_UNIT = `${CONTAINER_ROOT}/scripts/run-unit.sh`;

/** The user each role's process runs as (created by its Debian package or the origin image). */
export const RUN_AS: Record<Role, string> = { redis: 'redis', origin: 'cdn', edge: 'root', balancer: 'root', prometheus: 'prometheus' };

export interface SecretFile {
  path: string;
  content: pulumi.Output<string>;
}

/** Which secrets each role reads; nothing else lands on its container or instance. */
const ROLE_SECRETS: Record<Role, SecretName[]> = {
  redis: ['redisAuthConf', 'redisPassword'],
  origin: ['adminToken', 'redisPassword', 's3AccessKey', 's3SecretKey'],
  // the admin token unlocks the edge's X-Cdn-Debug headers; the bucket keys sign
  // its reads of raw assets (see roleSecrets)
  edge: ['adminToken', 'redisPassword'],
  balancer: [],
  prometheus: [],
};

/**
 * The edges read raw assets from the bucket with their own keys when the spec names
 * them, else with the origin's (what edgeSettings points at: the same choice).
 */
function roleSecrets(role: Role, secrets: StackSecrets): SecretName[] {
  if (role !== 'edge') return ROLE_SECRETS[role];
  return [...ROLE_SECRETS.edge, ...(secrets.s3EdgeAccessKey ? (['s3EdgeAccessKey', 's3EdgeSecretKey'] as const) : (['s3AccessKey', 's3SecretKey'] as const))];
}

function secretContent(name: SecretName, secrets: StackSecrets): pulumi.Output<string> {
  switch (name) {
    case 'adminToken':
      return secrets.adminToken.apply((v) => `${v}\n`);
    case 'redisPassword':
      return secrets.redisPassword.apply((v) => `${v}\n`);
    case 'redisAuthConf':
      return secrets.redisPassword.apply(renderRedisAuth);
    case 's3AccessKey':
      return secrets.s3AccessKey.apply((v) => `${v}\n`);
    case 's3SecretKey':
      return secrets.s3SecretKey.apply((v) => `${v}\n`);
    case 's3EdgeAccessKey':
      return secrets.s3EdgeAccessKey!.apply((v) => `${v}\n`);
    case 's3EdgeSecretKey':
      return secrets.s3EdgeSecretKey!.apply((v) => `${v}\n`);
  }
}

export function unitSecretFiles(unit: ServiceUnit, secrets: StackSecrets): SecretFile[] {
  return roleSecrets(unit.role, secrets).map((name) => ({ path: secretFile(LAYOUT, name)!, content: pulumi.secret(secretContent(name, secrets)) }));
}

/** The environment of a unit's process: run-unit.sh's settings, then the unit's own. */
export function unitEnvironment(unit: ServiceUnit): Record<string, string> {
  return {
    CDN_UNIT_DIR: unit.dir,
    CDN_UNIT_DIRS: unit.dirs.join(' '),
    CDN_RUN_AS: RUN_AS[unit.role],
    CDN_SECRETS_DIR: SECRETS_DIR,
    ...unit.env,
  };
}

/** The units of a deployed stack, rendered for the container/instance layout. */
export function deployedUnits(plan: DeployPlan, topology: Topology, objectStoreEndpoint: string): ServiceUnit[] {
  return buildUnits({
    spec: specWithObjectStore(plan, objectStoreEndpoint),
    topology,
    layout: LAYOUT,
    adminTokenFile: secretFile(LAYOUT, 'adminToken')!,
    withPrometheus: true,
  });
}

/** A health probe run next to the service (inside its container or on its host). */
export function localHealthCommand(unit: ServiceUnit): string[] {
  if (unit.health.kind === 'redis') {
    const passwordFile = secretFile(LAYOUT, 'redisPassword');
    return ['CMD-SHELL', `REDISCLI_AUTH="$(cat ${passwordFile})" redis-cli -p ${unit.health.port} ping | grep -q PONG`];
  }
  const u = new URL(unit.health.url);
  u.hostname = '127.0.0.1';
  return ['CMD', 'curl', '-fsS', '-o', '/dev/null', u.toString()];
}
