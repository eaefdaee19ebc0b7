/**
 * Runs service units as child processes: writes their rendered files, starts them
 * in dependency order, waits until each is healthy and stops them again. Each
 * child gets its own process group, so stopping one also stops what it forked
 * (nginx workers), and a detached stack outlives the CLI that started it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { cdnError } from '../../model/errors';
import { NGINX_ERROR_LOG } from '../../render/nginx';
import { runsNginx, type HealthCheck, type ServiceUnit } from '../../units/units';

export interface RunningService {
  unit: ServiceUnit;
  pid: number;
  log: string;
  child?: ChildProcess;
}

export function logPath(unit: ServiceUnit): string {
  return path.join(unit.dir, 'logs', 'service.log');
}

export function writeUnitFiles(unit: ServiceUnit): void {
  fs.mkdirSync(unit.dir, { recursive: true });
  // A unix socket left by a killed nginx (the edge's internal hop) would make the
  // next start fail with "address in use"; the unit is not running now.
  for (const f of fs.readdirSync(unit.dir)) if (f.endsWith('.sock')) fs.rmSync(path.join(unit.dir, f), { force: true });
  for (const d of unit.dirs) fs.mkdirSync(path.join(unit.dir, d), { recursive: true });
  fs.mkdirSync(path.join(unit.dir, 'logs'), { recursive: true });
  for (const f of unit.files) {
    const target = path.join(unit.dir, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, f.content, { mode: f.mode ?? 0o644 });
    fs.renameSync(tmp, target);
  }
}

/**
 * The little of the caller's environment a service needs. Everything else stays
 * out: the caller's environment may hold secrets (CDN_ADMIN_TOKEN, S3 keys) that
 * services must only ever read from their files.
 */
const INHERITED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR'];

function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

export function startUnit(unit: ServiceUnit): RunningService {
  const log = logPath(unit);
  const fd = fs.openSync(log, 'a');
  try {
    const [cmd, ...args] = unit.command;
    const child = spawn(cmd, args, {
      cwd: unit.dir,
      env: { ...inheritedEnv(), ...unit.env },
      stdio: ['ignore', fd, fd],
      detached: true,
    });
    if (child.pid === undefined) {
      throw cdnError('CDN_ERR_SERVICE_FAILED', `${unit.name}: could not start ${cmd} (see ${log})`);
    }
    child.unref();
    return { unit, pid: child.pid, log, child };
  } finally {
    fs.closeSync(fd);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function redisPing(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    // a Redis that requires a password answers NOAUTH: it is up all the same
    socket.once('data', (buf) => done(/^(\+PONG|-NOAUTH)/.test(buf.toString())));
  });
}

/** Whether a service answers its health check (one without a check counts as healthy once it runs). */
export async function checkHealth(check: HealthCheck | null, timeoutMs = 1000): Promise<boolean> {
  if (check === null) return true;
  if (check.kind === 'redis') return redisPing(check.host, check.port, timeoutMs);
  if (check.kind === 'command') return commandSucceeds(check.command, timeoutMs);
  try {
    const res = await fetch(check.url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** A check command run on this machine (beside the service, natively). */
function commandSucceeds(command: string[], timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command[0], command.slice(1), { timeout: timeoutMs }, (err) => resolve(!err));
  });
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Waits until the service answers its health check; fails fast if it exits. */
export async function waitHealthy(svc: RunningService, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | null = null;
  svc.child?.once('exit', (code, signal) => {
    exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
  });
  while (Date.now() < deadline) {
    if (exited || !isAlive(svc.pid)) {
      const why = exited ?? 'exited';
      const extra = runsNginx(svc.unit.role) ? ` and ${path.join(svc.unit.dir, NGINX_ERROR_LOG)}` : '';
      throw cdnError('CDN_ERR_SERVICE_FAILED', `${svc.unit.name} ${why}; see ${svc.log}${extra}\n${tail(svc.log)}`);
    }
    if (await checkHealth(svc.unit.health, 1000)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw cdnError('CDN_ERR_SERVICE_FAILED', `${svc.unit.name} did not become healthy within ${timeoutMs / 1000}s; see ${svc.log}\n${tail(svc.log)}`);
}

/** SIGTERM to the process group, then SIGKILL if it is still there after `graceMs`. */
export async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  if (!isAlive(pid)) return;
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  signal('SIGKILL');
}

/** Stages of units whose dependencies are all in earlier stages. */
export function startOrder(units: ServiceUnit[]): ServiceUnit[][] {
  const done = new Set<string>();
  const names = new Set(units.map((u) => u.name));
  const stages: ServiceUnit[][] = [];
  let rest = [...units];
  while (rest.length > 0) {
    const ready = rest.filter((u) => u.dependsOn.every((d) => done.has(d) || !names.has(d)));
    if (ready.length === 0) throw new Error(`dependency cycle among ${rest.map((u) => u.name).join(', ')}`);
    stages.push(ready);
    ready.forEach((u) => done.add(u.name));
    rest = rest.filter((u) => !ready.includes(u));
  }
  return stages;
}

/**
 * Starts every unit, stage by stage. On any failure, stops what was started and
 * rethrows, so a failed `up` leaves nothing running.
 */
export async function startAll(units: ServiceUnit[], options: { timeoutMs: number; onStarted?: (svc: RunningService) => void }): Promise<RunningService[]> {
  const running: RunningService[] = [];
  try {
    for (const stage of startOrder(units)) {
      const started = stage.map((u) => {
        writeUnitFiles(u);
        const svc = startUnit(u);
        running.push(svc);
        return svc;
      });
      await Promise.all(started.map((s) => waitHealthy(s, options.timeoutMs)));
      started.forEach((s) => options.onStarted?.(s));
    }
    return running;
  } catch (err) {
    await stopAll(running);
    throw err;
  }
}

/** Stops services in reverse start order (the balancer before the edges, Redis last). */
export async function stopAll(services: { pid: number }[]): Promise<void> {
  for (const svc of [...services].reverse()) {
    await stopPid(svc.pid);
  }
}

/**
 * Re-renders a running nginx unit (an edge or the balancer) in place and reloads it
 * without dropping a connection: the new files are checked with `nginx -t` (the old
 * ones are put back when that fails), then the master gets SIGHUP, starts workers on
 * the new config and lets the old workers finish the requests they hold. `ready`,
 * when given, is polled until it holds (e.g. the balancer's /healthz reports the new
 * revision). This is how edges are added to or removed from a running balancer.
 */
export async function reloadUnit(svc: { pid: number }, unit: ServiceUnit, options: { timeoutMs?: number; ready?: () => Promise<boolean> } = {}): Promise<void> {
  if (unit.role !== 'edge' && unit.role !== 'balancer') {
    throw cdnError('CDN_ERR_SERVICE_FAILED', `${unit.name}: only nginx units (edge, balancer) can be reloaded`);
  }
  if (!isAlive(svc.pid)) throw cdnError('CDN_ERR_SERVICE_FAILED', `${unit.name} (pid ${svc.pid}) is not running`);
  const previous = unit.files.map((f) => {
    const file = path.join(unit.dir, f.path);
    return { file, content: fs.existsSync(file) ? fs.readFileSync(file) : null };
  });
  writeUnitFiles(unit);
  // the unit's own command line, as a config test whose complaints go to us, not
  // to the running service's error log
  const args = unit.command
    .slice(1)
    .filter((a, i, all) => a !== '-g' && all[i - 1] !== '-g')
    .map((a, i, all) => (all[i - 1] === '-e' ? '/dev/stderr' : a));
  const tested = await new Promise<{ ok: boolean; out: string }>((resolve) => {
    execFile(unit.command[0], ['-t', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` }));
  });
  if (!tested.ok) {
    for (const p of previous) {
      if (p.content) fs.writeFileSync(p.file, p.content);
      else fs.rmSync(p.file, { force: true });
    }
    throw cdnError('CDN_ERR_SERVICE_FAILED', `${unit.name}: the new configuration was refused, the running one is kept:\n${tested.out.trim()}`);
  }
  process.kill(svc.pid, 'SIGHUP');
  if (!options.ready) return;
  const timeoutMs = options.timeoutMs ?? 10000;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await options.ready()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw cdnError('CDN_ERR_SERVICE_FAILED', `${unit.name} did not take the new configuration within ${timeoutMs / 1000}s; see ${path.join(unit.dir, NGINX_ERROR_LOG)}`);
}

/** True once the balancer's /healthz reports `revision` (its settings' revision). */
export async function reportsRevision(healthUrl: string, revision: string): Promise<boolean> {
  try {
    const res = await fetch(healthUrl, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { revision?: string };
    return res.ok && body.revision === revision;
  } catch {
    return false;
  }
}
