/**
 * Edge benchmark: cache-HIT throughput of a native stack's own edge (its rendered
 * config, one worker, every Lua phase and the access log on) for assets uploaded
 * through the stack's origin API, side by side in one run with the servers a shop
 * could put there instead, all fronting the same origin delivery listener:
 *
 *   nginx sendfile on|off, open_file_cache on|off   plain proxy_cache, one worker, the
 *                     edge's keepalive settings and request pool, and the same JSON
 *                     access log (no Lua)
 *   varnish           Varnish from Debian, -s malloc, one thread pool, its default VCL
 *
 *   npm run build && node dist/bench/edge.js [--quick] [--out bench/results]
 *
 * For every size (1 KiB, 16 KiB: a product thumbnail, 100 KiB) it reports req/s,
 * CPU µs per request (the serving process's utime + stime from /proc) and system
 * calls per request (strace -c over a separate short run), with ratios against the
 * best plain nginx of that size and against Varnish. The machine is shared and
 * noisy, so each round runs every server back to back (rotating which goes first)
 * and the report gives medians; only 127.0.0.1 is ever targeted.
 *
 * The objects served are assets as shops store them: uploaded through the origin's
 * API with Cache-Control and Surrogate-Key, served with the origin's ETag,
 * Last-Modified, Content-Type and security headers, which the edge's Lua handles on
 * every HIT. Requests carry the headers the balancer sends an edge (X-Request-Id,
 * X-Forwarded-For, X-Forwarded-Proto), since only the balancer reaches an edge.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../infra/targets/native/ports';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { accessLog, NGINX_ERROR_LOG, REQUEST_POOL } from '../infra/render/nginx';
import { OPEN_FILE_CACHE } from '../edge/render';
import { REPO_ROOT } from '../test/support/nginx-lua';
import { checkHealth, stopPid } from '../infra/targets/native/supervisor';
import { childrenOf, cpuSeconds } from './proc';

const QUICK = process.argv.includes('--quick');
const OUT = (() => {
  const i = process.argv.indexOf('--out');
  return i > 0 ? path.resolve(process.argv[i + 1]) : path.join(REPO_ROOT, 'bench', 'results');
})();
const ROUNDS = QUICK ? 1 : 3;
const SECONDS = QUICK ? 2 : 4;
const CONNECTIONS = 50;
const STRACE_SECONDS = 2;

export const SIZES = { '1KiB': 1024, '16KiB': 16 * 1024, '100KiB': 100 * 1024 };
export type SizeName = keyof typeof SIZES;

/** The headers the balancer adds to every request it passes to an edge. */
export const BALANCER_HEADERS = ['X-Request-Id: 0f6c9a3e2b7d4c1a8e5f0b9d6c3a2e1f', 'X-Forwarded-For: 127.0.0.1', 'X-Forwarded-Proto: https'];

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

export function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Whether the checkout differs from its commit, results written by earlier benchmarks aside. */
export function uncommittedChanges(): boolean {
  return git(['status', '--porcelain', '--', '.', ':(exclude)bench/results']) !== '';
}

/** A server under test: where it answers, and the process whose CPU time and system calls are its cost. */
export interface Target {
  name: string;
  url: string;
  /** The serving process (an nginx worker, Varnish's cache process). */
  pid: number;
  /** Whether a response was served from the cache. */
  isHit(res: Response): boolean;
  stop?(): Promise<void>;
}

async function waitFor(url: string, child: ChildProcess, what: string, errors: () => string): Promise<void> {
  const deadline = Date.now() + 15000;
  while (!(await checkHealth({ kind: 'http', url }, 500))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${what} did not start:\n${errors()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function childPid(parent: number, pattern: RegExp): number {
  const pid = childrenOf(parent, pattern)[0];
  if (pid === undefined) throw new Error(`process ${parent} has no child matching ${pattern}`);
  return pid;
}

export interface PlainNginxOptions {
  sendfile: boolean;
  openFileCache: boolean;
}

export function plainNginxName(o: PlainNginxOptions): string {
  return `nginx sendfile ${o.sendfile ? 'on' : 'off'}${o.openFileCache ? ', open_file_cache' : ''}`;
}

/**
 * Plain nginx proxy_cache in front of `originUrl`: one worker, no Lua module, the
 * edge's keepalive and buffer settings, and the edge's access log (the same JSON
 * line per request, buffered), so that the comparison is of the hit path alone.
 */
export async function startPlainNginx(originUrl: string, o: PlainNginxOptions): Promise<Target> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-nginx-'));
  for (const d of ['conf', 'logs', 'tmp', 'cache']) fs.mkdirSync(path.join(dir, d));
  // the worker (nobody, when the master runs as root) writes the cache and temp files
  fs.chmodSync(dir, 0o755);
  for (const d of ['tmp', 'cache']) fs.chmodSync(path.join(dir, d), 0o777);
  const port = await freePort();
  const origin = new URL(originUrl);
  const conf = `worker_processes 1;
error_log ${NGINX_ERROR_LOG} notice;
pid logs/nginx.pid;
worker_rlimit_nofile 16384;
events {
    worker_connections 4096;
}
http {
    default_type application/octet-stream;
    server_tokens off;
    sendfile ${o.sendfile ? 'on' : 'off'};
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 10000;
${REQUEST_POOL}${accessLog(true)}
    proxy_cache_path cache levels=1:2 keys_zone=ref:64m max_size=1g inactive=7d use_temp_path=off;
    proxy_temp_path tmp;
    upstream origin {
        server ${origin.hostname}:${origin.port};
        keepalive 32;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location = /__ready { access_log off; return 204; }
${o.openFileCache ? OPEN_FILE_CACHE : ''}        location / {
            proxy_cache ref;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass http://origin;
            add_header Cache-Status $upstream_cache_status;
        }
    }
}
`;
  fs.writeFileSync(path.join(dir, 'conf', 'nginx.conf'), conf);
  const child = spawn('/usr/sbin/nginx', ['-p', dir, '-c', path.join(dir, 'conf', 'nginx.conf'), '-e', path.join(dir, NGINX_ERROR_LOG), '-g', 'daemon off;'], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/__ready`, child, 'nginx', () => fs.readFileSync(path.join(dir, NGINX_ERROR_LOG), 'utf8'));
  return {
    name: plainNginxName(o),
    url,
    pid: childPid(child.pid!, /worker process/),
    isHit: (res) => res.headers.get('cache-status') === 'HIT',
    stop: async () => {
      await stopPid(child.pid!);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Varnish from Debian in front of `originUrl`: its default VCL, -s malloc, one thread pool. */
export async function startVarnish(originUrl: string): Promise<Target> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-varnish-'));
  const port = await freePort();
  const origin = new URL(originUrl);
  let stderr = '';
  const child = spawn(
    '/usr/sbin/varnishd',
    ['-F', '-j', 'none', '-n', dir, '-a', `127.0.0.1:${port}`, '-b', `${origin.hostname}:${origin.port}`, '-s', 'malloc,256m', '-p', 'thread_pools=1'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  // any answer means it listens (its backend has no /__ready: a 404 will do)
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      await (await fetch(`${url}/__ready`)).arrayBuffer();
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`varnishd did not start:\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    name: 'varnish',
    url,
    pid: childPid(child.pid!, /varnishd/),
    // X-Varnish carries the ids of this request and of the one that stored the object
    isHit: (res) => (res.headers.get('x-varnish') ?? '').trim().split(/\s+/).length === 2,
    stop: async () => {
      await stopPid(child.pid!);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An edge of a native stack, by the pid of its nginx master. */
export function edgeTarget(url: string, masterPid: number, name = 'edge'): Target {
  return { name, url, pid: childPid(masterPid, /worker process/), isHit: (res) => /; hit/.test(res.headers.get('cache-status') ?? '') };
}

export interface Sample {
  rps: number;
  requests: number;
  cpuUsPerRequest: number;
  errors: number;
}

function wrkArgs(url: string, seconds: number, script?: string): string[] {
  return ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, ...BALANCER_HEADERS.flatMap((h) => ['-H', h]), ...(script ? ['-s', script] : []), url];
}

function parseWrk(out: string): { requests: number; rps: number; errors: number } {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors: .*?(\d+) timeout/.exec(out)?.[1] ?? 0);
  return { requests, rps, errors };
}

/** A wrk run against `url` (or the paths a wrk Lua `script` picks), with the CPU the process `pid` (and its threads) used. */
export function wrk(url: string, pid: number, seconds = SECONDS, script?: string): Sample {
  const before = cpuSeconds(pid);
  const out = execFileSync('wrk', wrkArgs(url, seconds, script), { encoding: 'utf8' });
  const used = cpuSeconds(pid) - before;
  const { requests, rps, errors } = parseWrk(out);
  return { rps, requests, errors, cpuUsPerRequest: requests > 0 ? (used * 1e6) / requests : NaN };
}

export interface Syscalls {
  perRequest: number;
  /** The calls made at least 0.05 times per request, by name. */
  byName: Record<string, number>;
}

/** System calls per request: strace -c on every thread of `pid` during a short wrk run. */
async function syscalls(url: string, pid: number): Promise<Syscalls> {
  const out = path.join(os.tmpdir(), `cdn-bench-strace-${pid}-${Date.now()}.txt`);
  const tids = fs.readdirSync(`/proc/${pid}/task`);
  const strace = spawn('strace', ['-c', '-q', '-o', out, ...tids.flatMap((t) => ['-p', t])], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500)); // attached
  const { requests } = parseWrk(await new Promise<string>((resolve, reject) => {
    const w = spawn('wrk', wrkArgs(url, STRACE_SECONDS), { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    w.stdout!.on('data', (d: Buffer) => (s += d.toString()));
    w.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`wrk exited ${code}`))));
  }));
  await new Promise<void>((resolve) => {
    strace.once('exit', () => resolve());
    strace.kill('SIGINT');
  });
  const table = fs.readFileSync(out, 'utf8');
  fs.rmSync(out, { force: true });
  const byName: Record<string, number> = {};
  let total = 0;
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^[\d.]+$/.test(f[0])) continue;
    const name = f[f.length - 1];
    const calls = Number(f[3]);
    if (name === 'total') total = calls;
    else if (requests > 0 && calls / requests >= 0.05) byName[name] = calls / requests;
  }
  if (requests === 0 || total === 0) throw new Error(`strace counted nothing for ${url}:\n${table}`);
  return { perRequest: total / requests, byName };
}

/** GETs `url` until it is a HIT (at most 5 tries); false if it never is. */
export async function warm(target: Target, url: string): Promise<boolean> {
  for (let i = 0; i < 5; i++) {
    const res = await fetch(url, { headers: Object.fromEntries(BALANCER_HEADERS.map((h) => h.split(': '))) });
    await res.arrayBuffer();
    if (res.ok && target.isHit(res)) return true;
  }
  return false;
}

export interface TargetResult {
  name: string;
  rps: number;
  cpuUsPerRequest: number;
  syscalls?: Syscalls;
}

export interface SizeResult {
  size: SizeName;
  path: string;
  targets: TargetResult[];
  /** Per round, req/s by target name. */
  rounds: Record<string, number>[];
  /** The plain nginx configuration with the highest median req/s. */
  bestNginx: string;
  /** Medians of the per-round ratios of the edge's req/s. */
  edgeVsBestNginx: number;
  edgeVsVarnish?: number;
}

/**
 * Serves `paths[size]` from every target's cache, then runs `rounds` rounds in which
 * every target gets one wrk run back to back (rotating which goes first), then one
 * strace run each (`withSyscalls`). The first target is the edge.
 */
export async function hitThroughput(targets: Target[], paths: Partial<Record<SizeName, string>>, o: { rounds?: number; seconds?: number; withSyscalls?: boolean } = {}): Promise<SizeResult[]> {
  const rounds = o.rounds ?? ROUNDS;
  const results: SizeResult[] = [];
  for (const [size, p] of Object.entries(paths) as [SizeName, string][]) {
    for (const t of targets) {
      if (!(await warm(t, `${t.url}${p}`))) throw new Error(`${t.name} does not serve ${p} from its cache`);
    }
    const samples: Record<string, Sample[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(r + i) % targets.length];
        const s = wrk(`${t.url}${p}`, t.pid, o.seconds ?? SECONDS);
        if (s.errors > 0) throw new Error(`${t.name}: ${s.errors} errors or non-2xx responses serving ${p}`);
        samples[t.name].push(s);
      }
      process.stderr.write(`  ${size} round ${r + 1}/${rounds}: ${targets.map((t) => `${t.name} ${samples[t.name][r].rps.toFixed(0)}`).join(', ')}\n`);
    }
    const byTarget: TargetResult[] = [];
    for (const t of targets) {
      byTarget.push({
        name: t.name,
        rps: median(samples[t.name].map((s) => s.rps)),
        cpuUsPerRequest: median(samples[t.name].map((s) => s.cpuUsPerRequest)),
        ...(o.withSyscalls !== false ? { syscalls: await syscalls(`${t.url}${p}`, t.pid) } : {}),
      });
    }
    const edge = targets[0].name;
    const nginxes = byTarget.filter((t) => t.name.startsWith('nginx '));
    const best = nginxes.reduce((a, b) => (b.rps > a.rps ? b : a), nginxes[0]);
    const ratio = (other: string) => median(samples[edge].map((s, r) => s.rps / samples[other][r].rps));
    results.push({
      size,
      path: p,
      targets: byTarget,
      rounds: Array.from({ length: rounds }, (_, r) => Object.fromEntries(targets.map((t) => [t.name, samples[t.name][r].rps]))),
      bestNginx: best.name,
      edgeVsBestNginx: ratio(best.name),
      ...(samples.varnish ? { edgeVsVarnish: ratio('varnish') } : {}),
    });
  }
  return results;
}

/** `bytes` bytes that begin as a JPEG does (the origin checks an upload's bytes against its type). */
function jpegLike(bytes: number): Buffer {
  const body = randomBytes(bytes);
  Buffer.from('ffd8ffe000104a46494600', 'hex').copy(body);
  return body;
}

/** Uploads one asset per size through the origin's API, as a shop would: a product image with its tags. */
export async function uploadAssets(stack: UpResult): Promise<Record<SizeName, string>> {
  const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const paths = {} as Record<SizeName, string>;
  for (const [size, bytes] of Object.entries(SIZES) as [SizeName, number][]) {
    const key = `bench/products/sku-${size.toLowerCase()}.jpg`;
    const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'image/jpeg', 'Cache-Control': 'public, max-age=3600', 'Surrogate-Key': `product-${size} collection-bench` },
      body: jpegLike(bytes),
    });
    if (!res.ok) throw new Error(`upload of ${key} failed: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    paths[size] = `/${key}`;
  }
  return paths;
}

function renderReport(report: { commit: string; dirty: boolean; date: string; machine: Record<string, unknown>; command: string; headers: Record<string, Record<string, string>> }, results: SizeResult[]): string {
  const f = (n: number) => Math.round(n).toLocaleString('en');
  const names = results[0].targets.map((t) => t.name);
  const lines = [
    '# Edge benchmark',
    '',
    `Commit \`${report.commit}\`${report.dirty ? ' (with uncommitted changes)' : ''}, ${report.date}, ${report.machine.cpus} cores (${report.machine.model}), kernel ${report.machine.kernel}.`,
    `Command: \`${report.command}\`. A native stack with the default spec (\`up\`, its own rendered edge config, one worker); one asset per size uploaded through its origin API (\`image/jpeg\`, \`Cache-Control: public, max-age=3600\`, two Surrogate-Key tags); every server below fronts the same origin delivery listener and serves the same asset from its cache. ${ROUNDS} rounds of ${SECONDS} s per size, each running every server back to back (rotating which goes first), \`wrk -t1 -c${CONNECTIONS}\` with the headers the balancer adds (X-Request-Id, X-Forwarded-For, X-Forwarded-Proto), 127.0.0.1; medians. CPU µs per request: the serving process's utime + stime (/proc) over the run. System calls per request: \`strace -c\` on the serving process during a separate ${STRACE_SECONDS} s run.`,
    '',
    'The edge logs every request (one JSON line, 64 KiB buffered); the plain nginx references log the same line the same way, and have the same request pool as the edge (`request_pool_size 16k`, which saves plain nginx about 6% of the instructions of a 1 KiB HIT as well). Varnish logs to its shared-memory log (varnishd always does; no varnishncsa runs).',
    '',
    '## Cache-HIT throughput for assets uploaded through the origin',
    '',
    '| object | edge / best plain nginx | edge / Varnish | best plain nginx |',
    '|---|---|---|---|',
    ...results.map((r) => `| ${r.size} | **${r.edgeVsBestNginx.toFixed(3)}** | **${r.edgeVsVarnish?.toFixed(3) ?? '-'}** | ${r.bestNginx} |`),
    '',
    '### req/s (median of rounds)',
    '',
    `| object | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...results.map((r) => `| ${r.size} | ${r.targets.map((t) => f(t.rps)).join(' | ')} |`),
    '',
    '### CPU µs per request',
    '',
    `| object | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...results.map((r) => `| ${r.size} | ${r.targets.map((t) => t.cpuUsPerRequest.toFixed(1)).join(' | ')} |`),
    '',
    '### System calls per request (under strace)',
    '',
    `| object | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...results.map((r) => `| ${r.size} | ${r.targets.map((t) => (t.syscalls ? `${t.syscalls.perRequest.toFixed(2)}<br>${Object.entries(t.syscalls.byName).sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} ${c.toFixed(2)}`).join(', ')}` : '-')).join(' | ')} |`),
    '',
    '### Every round (req/s)',
    '',
    `| object | round | ${names.join(' | ')} |`,
    `|---|---|${names.map(() => '---').join('|')}|`,
    ...results.flatMap((r) => r.rounds.map((round, i) => `| ${r.size} | ${i + 1} | ${names.map((n) => f(round[n])).join(' | ')} |`)),
    '',
    '## What each server sent for the 1 KiB asset',
    '',
    ...Object.entries(report.headers).flatMap(([name, h]) => [`${name}:`, '', '```', ...Object.entries(h).map(([k, v]) => `${k}: ${v}`), '```', '']),
  ];
  return lines.join('\n');
}

async function responseHeaders(url: string): Promise<Record<string, string>> {
  const res = await fetch(url, { headers: Object.fromEntries(BALANCER_HEADERS.map((h) => h.split(': '))) });
  await res.arrayBuffer();
  return Object.fromEntries([...res.headers.entries()].filter(([k]) => k !== 'date' && k !== 'connection' && k !== 'keep-alive'));
}

async function main(): Promise<void> {
  for (const [file, pkg] of [['/usr/sbin/varnishd', 'varnish'], ['/usr/bin/strace', 'strace'], ['/usr/bin/wrk', 'wrk']]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: install ${pkg} with ./scripts/setup.sh --bench`);
  }
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-edge-'));
  const targets: Target[] = [];
  let stack: UpResult | undefined;
  try {
    stack = await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
    const paths = await uploadAssets(stack);
    const edge = stack.state.edges[0];
    targets.push(edgeTarget(edge.url, edge.pid));
    for (const sendfile of [true, false]) for (const openFileCache of [false, true]) targets.push(await startPlainNginx(stack.state.originDelivery, { sendfile, openFileCache }));
    targets.push(await startVarnish(stack.state.originDelivery));
    process.stderr.write(`edge benchmark: ${ROUNDS} rounds of ${SECONDS}s per size, wrk -t1 -c${CONNECTIONS}, ${targets.map((t) => t.name).join('; ')}\n`);
    const results = await hitThroughput(targets, paths);
    const headers: Record<string, Record<string, string>> = {};
    for (const t of [targets[0], targets[1], targets[targets.length - 1]]) headers[t.name] = await responseHeaders(`${t.url}${paths['1KiB']}`);
    const report = {
      commit: git(['rev-parse', 'HEAD']),
      dirty: uncommittedChanges(),
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
      command: `npm run bench:edge${QUICK ? ' -- --quick' : ''}`,
      method: { rounds: ROUNDS, secondsPerRun: SECONDS, connections: CONNECTIONS, workers: 1, tool: 'wrk -t1', requestHeaders: BALANCER_HEADERS },
      headers,
      results,
    };
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'edge.json'), JSON.stringify(report, null, 2) + '\n');
    const md = renderReport(report, results);
    fs.writeFileSync(path.join(OUT, 'edge.md'), md);
    process.stdout.write(md);
  } finally {
    for (const t of targets) await t.stop?.();
    await stack?.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
