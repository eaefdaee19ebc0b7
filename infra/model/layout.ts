/**
 * Where files and programs live on a target. Native: the repository and a state
 * directory; docker and aws: fixed paths inside the image or instance. Renderers
 * only see absolute paths from here.
 */
import * as path from 'node:path';

export interface Layout {
  /** Absolute directory holding one unit's rendered files, logs and cache. */
  unitDir(unit: string): string;
  /**
   * Directories that contain the `cdn` Lua package: each role's own modules, and the
   * modules both roles use (settings, key, memo, metrics).
   */
  edgeLuaRoot: string;
  balancerLuaRoot: string;
  sharedLuaRoot: string;
  /** Debian's Lua library path (lua-resty-core, nginx.redis, cjson). */
  systemLuaPath: string;
  nginxModulesDir: string;
  nginx: string;
  redisServer: string;
  prometheus: string;
  node: string;
  /** Compiled origin entry point. */
  originEntry: string;
  /**
   * User nginx workers run as when the master starts as root (`user` directive), or
   * null to leave it out (a non-root master cannot switch users anyway).
   */
  nginxUser: string | null;
  /**
   * Directory the target writes secret files into (mode 0600: admin token, Redis
   * password, S3 keys), or undefined where the target provides none (native): then
   * no renderer points at a secret file.
   */
  secretsDir?: string;
}

/** Secret files a target may provide, by purpose; renderers name paths, never values. */
export const SECRET_FILES = {
  adminToken: 'admin-token',
  /** Unlocks the edges' X-Cdn-Debug headers, nothing else (the admin token never reaches an edge). */
  debugToken: 'debug-token',
  redisPassword: 'redis-password',
  /** redis.conf `include`s this one: it holds `requirepass`, so redis.conf itself stays free of secrets. */
  redisAuthConf: 'redis-auth.conf',
  /**
   * The Redis servers' certificate and key, and the CA that signed it: the links
   * that cross regions (replication, acknowledgements) are TLS, verified against it.
   */
  redisTlsCert: 'redis-tls.crt',
  redisTlsKey: 'redis-tls.key',
  redisTlsCa: 'redis-tls-ca.crt',
  s3AccessKey: 's3-access-key',
  s3SecretKey: 's3-secret-key',
  /** The edges' own (read-only) keys for the bucket, when the spec names them. */
  s3EdgeAccessKey: 's3-edge-access-key',
  s3EdgeSecretKey: 's3-edge-secret-key',
  grafanaAdminPassword: 'grafana-admin-password',
  /** `<id>:<secret>,...`: the keys signed URLs are made and checked with (the edges verify, the origin signs). */
  urlSigningKeys: 'url-signing-keys',
} as const;

export type SecretName = keyof typeof SECRET_FILES;

/** Absolute path of a secret file on the target, or undefined when the layout has no secrets directory. */
export function secretFile(layout: Layout, name: SecretName): string | undefined {
  return layout.secretsDir === undefined ? undefined : path.posix.join(layout.secretsDir, SECRET_FILES[name]);
}

/** Paths on a Debian machine running services from a checkout of this repository. */
export function debianLayout(options: { repoRoot: string; stateDir: string; node?: string; secretsDir?: string }): Layout {
  const { repoRoot, stateDir } = options;
  return {
    ...(options.secretsDir ? { secretsDir: options.secretsDir } : {}),
    unitDir: (unit) => path.join(stateDir, unit),
    edgeLuaRoot: path.join(repoRoot, 'edge', 'lua'),
    balancerLuaRoot: path.join(repoRoot, 'balancer', 'lua'),
    sharedLuaRoot: path.join(repoRoot, 'lua'),
    systemLuaPath: '/usr/share/lua/5.1',
    nginxModulesDir: '/usr/lib/nginx/modules',
    nginx: '/usr/sbin/nginx',
    redisServer: '/usr/bin/redis-server',
    prometheus: '/usr/bin/prometheus',
    node: options.node ?? process.execPath,
    originEntry: path.join(repoRoot, 'dist', 'origin', 'src', 'main.js'),
    // Natively every file lives in the caller's own state directory, which workers
    // dropped to `nobody` could not read; so they keep the caller's identity.
    nginxUser: process.getuid?.() === 0 ? 'root' : null,
  };
}

/** Where everything lives inside the CDN's containers and on its EC2 instances. */
export const CONTAINER_ROOT = '/opt/cdn';

/**
 * Paths inside the images (edge/Dockerfile, balancer/Dockerfile, origin/Dockerfile,
 * infra/targets/docker/Dockerfile) and on EC2 instances, where cloud-init checks the
 * repository out at /opt/cdn: rendered files under /etc/cdn/<unit>, secrets under
 * /etc/cdn/secrets, Lua and the built origin under /opt/cdn. nginx masters start
 * as root (to bind and to read secrets) and drop their workers to www-data.
 */
export function containerLayout(): Layout {
  return {
    unitDir: (unit) => path.posix.join('/etc/cdn', unit),
    edgeLuaRoot: `${CONTAINER_ROOT}/edge/lua`,
    balancerLuaRoot: `${CONTAINER_ROOT}/balancer/lua`,
    sharedLuaRoot: `${CONTAINER_ROOT}/lua`,
    systemLuaPath: '/usr/share/lua/5.1',
    nginxModulesDir: '/usr/lib/nginx/modules',
    nginx: '/usr/sbin/nginx',
    redisServer: '/usr/bin/redis-server',
    prometheus: '/usr/bin/prometheus',
    // node:20-bookworm-slim and the official tarball cloud-init unpacks both put it here.
    node: '/usr/local/bin/node',
    originEntry: `${CONTAINER_ROOT}/dist/origin/src/main.js`,
    nginxUser: 'www-data',
    secretsDir: '/etc/cdn/secrets',
  };
}
