/**
 * The native target: the whole CDN as child processes on 127.0.0.1, with its
 * rendered files under a state directory. What `cdn local up|status|down`, the
 * end-to-end tests and the benchmarks use.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cdnError } from '../../model/errors';
import { debianLayout, SECRET_FILES, type Layout, type SecretName } from '../../model/layout';
import { renderRedisAuth } from '../../render/redis';
import type { CdnSpec } from '../../model/spec';
import { buildUnits } from '../../units/stack';
import type { ServiceUnit } from '../../units/units';
import { url, type Topology } from '../../model/topology';
import { isAlive, startAll, stopAll, type RunningService } from './supervisor';
import { writeNativeRedisTls } from './redis-tls';
import { nativeTopology } from './topology';

export const STATE_FILE = 'state.json';

export interface StackState {
  balancer: string;
  /** The balancer's traffic status page, on its internal listener (also /status.json, /metrics). */
  balancerStatus?: string;
  origin: string;
  /** The origin's delivery listener: what the edges fetch misses from (GET and HEAD of assets only). */
  originDelivery: string;
  edges: { id: string; region: string; url: string; pid: number }[];
  redis: string;
  prometheus: string | null;
  adminTokenFile: string;
  /** The token edges accept in X-Cdn-Debug (it grants nothing at the origin's API). */
  debugTokenFile: string;
  stateDir: string;
  detached: boolean;
  supervisorPid: number;
  startedAt: string;
  services: { name: string; role: string; pid: number; url: string | null; log: string; running?: boolean }[];
}

export interface UpOptions {
  spec: CdnSpec;
  stateDir: string;
  repoRoot: string;
  balancerPort?: number;
  /** Run Prometheus when it is installed (default), or never. */
  prometheus?: boolean;
  /** A Redis replica for every region but the first, its edges following the purge stream there (as on aws). */
  regionalReplicas?: boolean;
  detached: boolean;
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** Files whose absence means the setup script has not run. */
const REQUIRED_FILES: { file: string; pkg: string }[] = [
  { file: '/usr/sbin/nginx', pkg: 'nginx' },
  { file: '/usr/lib/nginx/modules/ngx_http_lua_module.so', pkg: 'libnginx-mod-http-lua' },
  { file: '/usr/lib/nginx/modules/ndk_http_module.so', pkg: 'libnginx-mod-http-ndk' },
  { file: '/usr/share/lua/5.1/resty/core.lua', pkg: 'lua-resty-core' },
  { file: '/usr/share/lua/5.1/nginx/redis.lua', pkg: 'lua-nginx-redis' },
  { file: 'lib/*/lua/5.1/cjson.so', pkg: 'lua-cjson' },
  { file: '/usr/bin/redis-server', pkg: 'redis-server' },
  // the Redis TLS material of --regional-replicas (redis-tls.ts)
  { file: '/usr/bin/openssl', pkg: 'openssl' },
];

// Also finds architecture-specific files: "lib/<any>/lua/..." means /usr/lib/<triplet>/lua/...
function installed(file: string): boolean {
  if (!file.startsWith('lib/*/')) return fs.existsSync(file);
  const rest = file.slice('lib/*/'.length);
  return fs.readdirSync('/usr/lib').some((d) => fs.existsSync(path.join('/usr/lib', d, rest)));
}

export function missingPackages(exists: (f: string) => boolean = installed): string[] {
  return [...new Set(REQUIRED_FILES.filter((r) => !exists(r.file)).map((r) => r.pkg))];
}

export function assertPackages(layout: Layout): void {
  const missing = missingPackages();
  if (missing.length > 0) {
    throw cdnError('CDN_ERR_MISSING_PACKAGES', `${missing.join(', ')} not installed. Run ./scripts/setup.sh (it installs them with apt-get)`);
  }
  if (!fs.existsSync(layout.originEntry)) {
    throw cdnError('CDN_ERR_MISSING_PACKAGES', `the origin is not built (${layout.originEntry} is missing). Run npm run build`);
  }
}

/**
 * A token's file: the value of the environment variable `variable` if set, else a
 * token generated once into the state directory (`<state-dir>/<name>`, mode 0600).
 */
function tokenFile(stateDir: string, name: string, variable: string, env: NodeJS.ProcessEnv, generate = () => randomBytes(32).toString('base64url')): string {
  const file = path.join(stateDir, name);
  const fromEnv = env[variable]?.trim();
  if (fromEnv) {
    fs.writeFileSync(file, fromEnv + '\n', { mode: 0o600 });
  } else if (!fs.existsSync(file)) {
    fs.writeFileSync(file, generate() + '\n', { mode: 0o600 });
  }
  fs.chmodSync(file, 0o600);
  return file;
}

/** The admin token: CDN_ADMIN_TOKEN if set, else one generated once into the state directory. */
export function adminTokenFile(stateDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return tokenFile(stateDir, SECRET_FILES.adminToken, 'CDN_ADMIN_TOKEN', env);
}

/**
 * The URL signing keys (`<id>:<secret>,...`): the variable the spec names
 * (secrets.urlSigningKeys, CDN_URL_SIGNING_KEYS by default) if set, else one key
 * `k1` generated once.
 */
export function urlSigningKeysFile(stateDir: string, spec: CdnSpec, env: NodeJS.ProcessEnv = process.env): string {
  return tokenFile(stateDir, SECRET_FILES.urlSigningKeys, spec.secrets.urlSigningKeys, env, () => `k1:${randomBytes(32).toString('base64url')}`);
}

/** The debug token (X-Cdn-Debug on the edges): CDN_DEBUG_TOKEN if set, else generated once. */
export function debugTokenFile(stateDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return tokenFile(stateDir, SECRET_FILES.debugToken, 'CDN_DEBUG_TOKEN', env);
}

export function readState(stateDir: string): StackState | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as StackState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function writeState(stateDir: string, state: StackState): void {
  const file = path.join(stateDir, STATE_FILE);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2) + '\n');
  fs.renameSync(`${file}.tmp`, file);
}

/** True when any service recorded in the state directory is still running. */
export function isRunning(state: StackState | null): boolean {
  return !!state && state.services.some((s) => isAlive(s.pid));
}

function stateOf(units: ServiceUnit[], topology: Topology, running: RunningService[], o: { stateDir: string; tokenFile: string; debugTokenFile: string; detached: boolean }): StackState {
  const pidOf = (name: string) => running.find((r) => r.unit.name === name)?.pid ?? 0;
  const urlOf = (name: string) => units.find((u) => u.name === name)?.url ?? null;
  // the balancer's health check is on its internal listener, as is its status page
  const statusHealth = units.find((u) => u.name === 'balancer')?.health;
  return {
    balancer: urlOf('balancer')!,
    balancerStatus: statusHealth?.kind === 'http' ? statusHealth.url.replace(/\/healthz$/, '/status') : undefined,
    origin: urlOf('origin')!,
    originDelivery: url(topology.origin.reach),
    edges: units.filter((u) => u.role === 'edge').map((u) => ({ id: u.name.replace(/^edge-/, ''), region: u.region!, url: u.url!, pid: pidOf(u.name) })),
    redis: urlOf('redis')!,
    prometheus: urlOf('prometheus'),
    adminTokenFile: o.tokenFile,
    debugTokenFile: o.debugTokenFile,
    stateDir: o.stateDir,
    detached: o.detached,
    supervisorPid: process.pid,
    startedAt: new Date().toISOString(),
    services: running.map((r) => ({ name: r.unit.name, role: r.unit.role, pid: r.pid, url: r.unit.url, log: r.log })),
  };
}

export interface UpResult {
  state: StackState;
  services: RunningService[];
  /** Stops every service and removes the state file. */
  stop(): Promise<void>;
}

/**
 * Natively, secrets the spec names (S3 keys, the Redis password) come from
 * environment variables of those names and are written to files under
 * `<state-dir>/secrets` (mode 0600), the form every service reads them in.
 * Returns that directory, or undefined when the spec names none.
 */
export function writeNativeSecrets(spec: CdnSpec, stateDir: string, env: NodeJS.ProcessEnv = process.env, options: { redisTls?: boolean } = {}): string | undefined {
  const wanted: [SecretName, string][] = [];
  if (spec.storage.kind === 's3') {
    const { accessKeySecret, secretKeySecret, edgeAccessKeySecret, edgeSecretKeySecret } = spec.storage;
    wanted.push(['s3AccessKey', accessKeySecret], ['s3SecretKey', secretKeySecret]);
    if (edgeAccessKeySecret && edgeSecretKeySecret) wanted.push(['s3EdgeAccessKey', edgeAccessKeySecret], ['s3EdgeSecretKey', edgeSecretKeySecret]);
  }
  if (spec.secrets.redisPassword) wanted.push(['redisPassword', spec.secrets.redisPassword]);
  if (wanted.length === 0 && !options.redisTls) return undefined;
  const missing = wanted.filter(([, variable]) => !env[variable]).map(([, variable]) => variable);
  if (missing.length > 0) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `the spec names secrets that are not set in the environment: ${missing.join(', ')}`);
  }
  const dir = path.join(stateDir, 'secrets');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [name, variable] of wanted) {
    fs.writeFileSync(path.join(dir, SECRET_FILES[name]), `${env[variable]}\n`, { mode: 0o600 });
  }
  if (spec.secrets.redisPassword) {
    fs.writeFileSync(path.join(dir, SECRET_FILES.redisAuthConf), renderRedisAuth(env[spec.secrets.redisPassword]!), { mode: 0o600 });
  }
  if (options.redisTls) writeNativeRedisTls(dir);
  return dir;
}

export async function up(o: UpOptions): Promise<UpResult> {
  const stateDir = path.resolve(o.stateDir);
  fs.mkdirSync(stateDir, { recursive: true });
  const secretsDir = writeNativeSecrets(o.spec, stateDir, process.env, { redisTls: o.regionalReplicas });
  const layout = debianLayout({ repoRoot: o.repoRoot, stateDir, secretsDir });
  assertPackages(layout);
  fs.mkdirSync(stateDir, { recursive: true });
  if (isRunning(readState(stateDir))) {
    throw cdnError('CDN_ERR_STACK_RUNNING', `${stateDir}; stop it with: cdn local down --state-dir ${stateDir}`);
  }
  const withPrometheus = o.prometheus !== false && fs.existsSync(layout.prometheus);
  const topology = await nativeTopology(o.spec, { balancerPort: o.balancerPort, withPrometheus, regionalReplicas: o.regionalReplicas });
  const tokenFile = adminTokenFile(stateDir);
  const debugFile = debugTokenFile(stateDir);
  const units = buildUnits({ spec: o.spec, topology, layout, adminTokenFile: tokenFile, debugTokenFile: debugFile, urlSigningKeysFile: urlSigningKeysFile(stateDir, o.spec), withPrometheus });
  const running = await startAll(units, {
    timeoutMs: o.timeoutMs ?? 30000,
    onStarted: (svc) => o.log?.(`  ${svc.unit.name.padEnd(12)} healthy  ${svc.unit.url ?? ''}`),
  });
  const state = stateOf(units, topology, running, { stateDir, tokenFile, debugTokenFile: debugFile, detached: o.detached });
  writeState(stateDir, state);
  return {
    state,
    services: running,
    stop: async () => {
      await stopAll(running);
      fs.rmSync(path.join(stateDir, STATE_FILE), { force: true });
    },
  };
}

export function status(stateDir: string): StackState {
  const state = readState(path.resolve(stateDir));
  if (!state) throw cdnError('CDN_ERR_STACK_NOT_RUNNING', path.resolve(stateDir));
  return { ...state, services: state.services.map((s) => ({ ...s, running: isAlive(s.pid) })) };
}

export async function down(stateDir: string): Promise<StackState> {
  const dir = path.resolve(stateDir);
  const state = readState(dir);
  if (!state) throw cdnError('CDN_ERR_STACK_NOT_RUNNING', dir);
  await stopAll(state.services);
  fs.rmSync(path.join(dir, STATE_FILE), { force: true });
  return state;
}
