/**
 * Where files and programs live on a target. Native: the repository and a state
 * directory; docker and aws: fixed paths inside the image or instance. Renderers
 * only see absolute paths from here.
 */
import * as path from 'node:path';

export interface Layout {
  /** Absolute directory holding one unit's rendered files, logs and cache. */
  unitDir(unit: string): string;
  /** Directories that contain the `cdn` Lua package; shared modules live in the first. */
  edgeLuaRoot: string;
  balancerLuaRoot: string;
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
}

/** Paths on a Debian machine running services from a checkout of this repository. */
export function debianLayout(options: { repoRoot: string; stateDir: string; node?: string }): Layout {
  const { repoRoot, stateDir } = options;
  return {
    unitDir: (unit) => path.join(stateDir, unit),
    edgeLuaRoot: path.join(repoRoot, 'edge', 'lua'),
    balancerLuaRoot: path.join(repoRoot, 'balancer', 'lua'),
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
