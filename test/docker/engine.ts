/**
 * The machine side of `npm run test:docker`: the Debian packages it needs
 * (scripts/setup.sh --system --docker), a Docker engine (one that runs, or a dockerd
 * started here as root and stopped again at the end), one run at a time, and the
 * leftovers of an interrupted run removed before anything is created.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Docker from 'dockerode';
import { RUN_LABELS } from './containers';

export type Log = (line: string) => void;

const SOCKET = '/var/run/docker.sock';

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore', env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } }).status === 0;
}

/** dockerd and debootstrap, installed by the setup script when missing. */
export function ensurePackages(repoRoot: string, log: Log): void {
  const missing = ['dockerd', 'debootstrap'].filter((c) => !onPath(c));
  if (missing.length === 0) return;
  log(`host: ${missing.join(', ')} missing: scripts/setup.sh --system --docker`);
  const r = spawnSync(path.join(repoRoot, 'scripts/setup.sh'), ['--system', '--docker'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`scripts/setup.sh --system --docker failed (exit ${r.status})`);
}

/** One run at a time: a second one would remove the first one's containers as leftovers. */
export function takeLock(): () => void {
  const file = path.join(os.tmpdir(), 'cdn-docker-run.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (pid > 0 && pid !== process.pid && alive(pid)) throw new Error(`another test:docker run (pid ${pid}) holds ${file}`);
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`could not take ${file}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process's command name, or null when it is gone. */
function commandOf(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

export interface Engine {
  docker: Docker;
  version: string;
  apiVersion: string;
  /** The dockerd this test started (stopped by `release`), or null when one was running. */
  started: { pid: number } | null;
  release(): Promise<void>;
}

async function ping(docker: Docker): Promise<boolean> {
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

/**
 * The engine on /var/run/docker.sock. When none answers, a dockerd is started here
 * (as root), and `release` stops it again: the run leaves the machine as it found it,
 * while images (the cache) stay in dockerd's data root for the next run.
 */
export async function connectEngine(log: Log): Promise<Engine> {
  const docker = new Docker({ socketPath: SOCKET });
  let started: { pid: number } | null = null;
  // A dockerd an earlier run started and could not stop (it was killed) is still this test's: stop it at the end too.
  const pidFile = path.join(os.tmpdir(), 'cdn-docker-run-dockerd.pid');
  const earlier = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : 0;
  if (earlier > 0 && commandOf(earlier) === 'dockerd' && (await ping(docker))) {
    started = { pid: earlier };
    log(`engine: the dockerd an interrupted run started (pid ${earlier}) still runs: used, and stopped at the end`);
  } else if (!(await ping(docker))) {
    if (process.getuid?.() !== 0) throw new Error(`no Docker engine answers on ${SOCKET}, and starting one needs root`);
    const logFile = path.join(os.tmpdir(), 'cdn-docker-run-dockerd.log');
    const out = fs.openSync(logFile, 'a');
    const t0 = Date.now();
    const child = spawn('dockerd', [], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
    fs.closeSync(out);
    child.unref();
    let exited: number | null = null;
    child.on('exit', (code) => (exited = code ?? -1));
    while (!(await ping(docker))) {
      if (exited !== null || Date.now() - t0 > 60_000) {
        const tail = fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
        if (exited === null) child.kill('SIGTERM');
        throw new Error(`dockerd did not come up (${exited !== null ? `exit ${exited}` : 'timeout'}); ${logFile}:\n${tail}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    started = { pid: child.pid! };
    fs.writeFileSync(pidFile, String(child.pid));
    log(`engine: started dockerd (pid ${child.pid}) in ${((Date.now() - t0) / 1000).toFixed(1)} s, log ${logFile}`);
  }
  const v = await docker.version();
  const child = started;
  return {
    docker,
    version: v.Version,
    apiVersion: v.ApiVersion,
    started,
    async release() {
      if (!child || !alive(child.pid)) return;
      process.kill(child.pid, 'SIGTERM');
      const t0 = Date.now();
      while (alive(child.pid) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 200));
      if (alive(child.pid)) process.kill(child.pid, 'SIGKILL');
      fs.rmSync(pidFile, { force: true });
      log(`engine: stopped the dockerd this test started (pid ${child.pid})`);
    },
  };
}

const LABEL_FILTER = () => JSON.stringify({ label: Object.entries(RUN_LABELS).map(([k, v]) => `${k}=${v}`) });

/** Removes every container, network and volume carrying the run's label; returns what it removed. */
export async function removeLabelled(docker: Docker): Promise<{ containers: string[]; networks: string[]; volumes: string[] }> {
  const filters = LABEL_FILTER();
  const containers = await docker.listContainers({ all: true, filters });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: false })));
  const networks = await docker.listNetworks({ filters });
  for (const n of networks) await docker.getNetwork(n.Id).remove();
  const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
  for (const v of volumes) await docker.getVolume(v.Name).remove();
  return { containers: containers.map((c) => c.Names[0]?.replace(/^\//, '') ?? c.Id), networks: networks.map((n) => n.Name), volumes: volumes.map((v) => v.Name) };
}

/** An image's ID, or null when the engine has no image of that name. */
export async function imageId(docker: Docker, name: string): Promise<string | null> {
  try {
    return (await docker.getImage(name).inspect()).Id;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
}

/** Follows a build/import stream to its end; rejects with the engine's error message. */
export function follow(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (e: Record<string, any>) => void = () => {}): Promise<Record<string, any>[]> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null, output: Record<string, any>[]) => {
        if (err) return reject(err);
        const failed = output.find((e) => e.error || e.errorDetail);
        if (failed) return reject(new Error(String(failed.error ?? failed.errorDetail?.message)));
        resolve(output);
      },
      onEvent,
    );
  });
}
