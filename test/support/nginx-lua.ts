/**
 * Runs Lua inside a real nginx (Test::Nginx is not packaged for Debian, so tests
 * drive nginx from jest with its habits: a fresh config per case, and the error log
 * must hold no [error] line).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { debianLayout } from '../../infra/model/layout';
import { clientLimits, renderNginxConf } from '../../infra/render/nginx';
import { parseSpec } from '../../infra/model/spec';
import { freePort } from '../../infra/targets/native/ports';
import { checkHealth, stopPid } from '../../infra/targets/native/supervisor';

/** The repository root, from the sources (test/support) or their build (dist/test/support). */
export const REPO_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();

export interface NginxHandle {
  url: string;
  port: number;
  /** pid of the nginx master. */
  pid: number;
  dir: string;
  errorLog(): string;
  stop(): Promise<void>;
}

/**
 * Starts nginx with the project's base settings (renderNginxConf) and `server` as
 * the body of its one server. With no Lua in `server`, this is the "plain nginx"
 * the benchmarks compare against: same http settings, no Lua phase.
 */
export async function startNginx(server: string, options: { http?: string; dicts?: Record<string, string>; init?: string; initWorker?: string } = {}): Promise<NginxHandle> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-nginx-'));
  for (const d of ['conf', 'logs', 'tmp']) fs.mkdirSync(path.join(dir, d));
  const layout = debianLayout({ repoRoot: REPO_ROOT, stateDir: dir });
  const port = await freePort();
  const conf = renderNginxConf({
    layout,
    workers: 1,
    client: clientLimits(parseSpec({})),
    luaRoots: [layout.balancerLuaRoot, layout.edgeLuaRoot, layout.sharedLuaRoot],
    sharedDicts: Object.fromEntries(Object.entries(options.dicts ?? { cdn_test: '1m' }).map(([name, size]) => [name, { size, holds: 'a test zone' }])),
    init: options.init ?? '',
    initWorker: options.initWorker ?? '',
    continueRequestId: false,
    http: `${options.http ?? ''}
    server {
        listen 127.0.0.1:${port};
        location = /__ready { return 204; }
${server}
    }`,
  });
  fs.writeFileSync(path.join(dir, 'conf', 'nginx.conf'), conf);
  const child = spawn(layout.nginx, ['-p', dir, '-c', path.join(dir, 'conf', 'nginx.conf'), '-e', path.join(dir, 'logs', 'error.log'), '-g', 'daemon off;'], {
    stdio: 'ignore',
    detached: true,
  });
  const pid = child.pid!;
  const errorLog = () => {
    try {
      return fs.readFileSync(path.join(dir, 'logs', 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const deadline = Date.now() + 10000;
  while (!(await checkHealth({ kind: 'http', url: `http://127.0.0.1:${port}/__ready` }, 500))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopPid(pid);
      throw new Error(`nginx did not start:\n${errorLog()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid,
    dir,
    errorLog,
    stop: async () => {
      await stopPid(pid);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a Lua chunk in a content phase and returns what it printed. */
export async function runLua(code: string): Promise<string> {
  const nginx = await startNginx(`        location = /run {
            content_by_lua_block {
${code}
            }
        }`);
  try {
    const res = await fetch(`${nginx.url}/run`);
    const body = await res.text();
    if (res.status !== 200) throw new Error(`lua failed (${res.status}): ${body}\n${nginx.errorLog()}`);
    const errors = nginx.errorLog().split('\n').filter((l) => l.includes('[error]'));
    if (errors.length > 0) throw new Error(`lua logged errors:\n${errors.join('\n')}`);
    return body;
  } finally {
    await nginx.stop();
  }
}
