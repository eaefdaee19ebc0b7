/**
 * What both Pulumi targets do with the service units: build them for the
 * container/instance layout, give each the secret files it lists, and the
 * environment scripts/run-unit.sh needs. Docker maps the result onto containers,
 * aws onto cloud-init + systemd; neither renders anything itself.
 */
import * as pulumi from '@pulumi/pulumi';
import { CONTAINER_ROOT, containerLayout, secretFile, type Layout, type SecretName } from '../../model/layout';
import { url, type Topology } from '../../model/topology';
import { renderRedisAuth } from '../../render/redis';
import type { LogShipping } from '../../units/deployed';
import { buildUnits } from '../../units/stack';
import { isOwnRole, type ServiceUnit } from '../../units/units';
import { specWithObjectStore, type DeployPlan } from './config';
import type { StackSecrets } from './secrets';

export const LAYOUT: Layout = containerLayout();
export const SECRETS_DIR = LAYOUT.secretsDir!;
/** The images' ENTRYPOINT and the systemd units' ExecStart wrapper. */
export const RUN_UNIT = `${CONTAINER_ROOT}/scripts/run-unit.sh`;

export interface SecretFile {
  path: string;
  content: pulumi.Output<string>;
}

/** A secret's file content: the value on one line, the redis.conf include holding it, or a PEM as it is. */
function secretContent(name: SecretName, secrets: StackSecrets): pulumi.Output<string> {
  if (name === 'redisAuthConf') return secrets.redisPassword.apply(renderRedisAuth);
  const pems: Partial<Record<SecretName, pulumi.Output<string>>> = { redisTlsCert: secrets.redisTls?.cert, redisTlsKey: secrets.redisTls?.key, redisTlsCa: secrets.redisTls?.ca };
  const values: Partial<Record<SecretName, pulumi.Output<string>>> = { adminToken: secrets.adminToken, debugToken: secrets.debugToken, urlSigningKeys: secrets.urlSigningKeys, redisPassword: secrets.redisPassword, s3AccessKey: secrets.s3AccessKey, s3SecretKey: secrets.s3SecretKey, s3EdgeAccessKey: secrets.s3EdgeAccessKey, s3EdgeSecretKey: secrets.s3EdgeSecretKey, grafanaAdminPassword: secrets.grafanaAdminPassword };
  const value = pems[name] ?? values[name]?.apply((v) => `${v}\n`);
  if (!value) throw new Error(`the stack has no value for the secret ${name}`);
  return value;
}

/** The files of the secrets a unit lists; nothing else of the secrets lands on its container or instance. */
export function unitSecretFiles(unit: ServiceUnit, secrets: StackSecrets): SecretFile[] {
  return unit.secrets.map((name) => ({ path: secretFile(LAYOUT, name)!, content: pulumi.secret(secretContent(name, secrets)) }));
}

/** The environment of a unit's process: run-unit.sh's settings for the CDN's own units, then the unit's own. */
export function unitEnvironment(unit: ServiceUnit): Record<string, string> {
  if (!isOwnRole(unit.role)) return unit.env;
  return {
    CDN_UNIT_DIR: unit.dir,
    CDN_UNIT_DIRS: unit.dirs.join(' '),
    CDN_RUN_AS: unit.user,
    CDN_SECRETS_DIR: SECRETS_DIR,
    ...unit.env,
  };
}

/** The units of a deployed stack, for the container/instance layout, with the stack's own object store when it has one. */
export function deployedUnits(plan: DeployPlan, topology: Topology, logShipping: LogShipping): ServiceUnit[] {
  return buildUnits({
    spec: specWithObjectStore(plan, topology.objectStore ? url(topology.objectStore.reach) : ''),
    topology,
    layout: LAYOUT,
    adminTokenFile: secretFile(LAYOUT, 'adminToken')!,
    debugTokenFile: secretFile(LAYOUT, 'debugToken')!,
    urlSigningKeysFile: secretFile(LAYOUT, 'urlSigningKeys')!,
    withPrometheus: true,
    logShipping,
  });
}

/** A health probe run next to the service (inside its container or on its host), or null for none. */
export function localHealthCommand(unit: ServiceUnit): string[] | null {
  const health = unit.health;
  if (!health) return null;
  if (health.kind === 'command') return ['CMD', ...health.command];
  if (health.kind === 'redis') {
    const passwordFile = secretFile(LAYOUT, 'redisPassword');
    return ['CMD-SHELL', `REDISCLI_AUTH="$(cat ${passwordFile})" redis-cli -p ${health.port} ping | grep -q PONG`];
  }
  const u = new URL(health.url);
  u.hostname = '127.0.0.1';
  return ['CMD', 'curl', '-fsS', '-o', '/dev/null', u.toString()];
}
