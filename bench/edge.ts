/**
 * Edge benchmark: cache-HIT throughput of the edge (every Lua phase on) against a
 * plain nginx proxy_cache serving the same objects from the same origin with the
 * same worker count and http settings, measured side by side in one run (plus the
 * same reference with the edge's open_file_cache, to show what the Lua phases alone
 * cost); and purge latency from the stream entry to the edge serving fresh bytes.
 *
 *   npm run build && node dist/bench/edge.js [--quick] [--out bench/results]
 *
 * Its scenarios are exported for `npm run bench` (bench/run.ts), which runs them on
 * the native stack beside the balancer's.
 *
 * The machine is shared and noisy, so every round runs the reference and the edge
 * back to back (alternating which goes first), and the report gives medians of the
 * per-round ratios, plus nginx worker CPU time per request (less sensitive to other
 * load than wall-clock throughput). Only 127.0.0.1 is ever targeted.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { REPO_ROOT, startNginx, type NginxHandle } from '../test/support/nginx-lua';
import { startEdge, type EdgeHarness, type OriginReply } from '../test/support/edge-harness';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { OPEN_FILE_CACHE } from '../edge/render';

const QUICK = process.argv.includes('--quick');
const OUT = (() => {
  const i = process.argv.indexOf('--out');
  return i > 0 ? process.argv[i + 1] : path.join(REPO_ROOT, 'bench', 'results');
})();
const ROUNDS = QUICK ? 3 : 7;
const SECONDS = QUICK ? 2 : 5;
const CONNECTIONS = 32;
const PURGES = QUICK ? 30 : 100;

export const SIZES = { '1KiB': 1024, '100KiB': 100 * 1024 };

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/**
 * The reference: plain nginx proxy_cache, no Lua phase, the edge's base settings.
 * `tuned` adds the edge's open_file_cache, so that the report can also show what
 * the Lua phases alone cost (the bar is against the plain reference).
 */
export async function startReference(originUrl: string, tuned = false): Promise<NginxHandle> {
  const origin = new URL(originUrl);
  return startNginx(
    `        location / {
${tuned ? OPEN_FILE_CACHE : ''}            proxy_cache ref;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass http://origin;
            add_header Cache-Status $upstream_cache_status;
        }`,
    {
      http: `    proxy_cache_path cache levels=1:2 keys_zone=ref:64m max_size=1g inactive=7d use_temp_path=off;
    proxy_temp_path tmp;
    upstream origin {
        server ${origin.hostname}:${origin.port};
        keepalive 32;
    }`,
    },
  );
}

function workerPid(masterPid: number): number {
  const out = execFileSync('pgrep', ['-P', String(masterPid), '-f', 'worker process'], { encoding: 'utf8' });
  return Number(out.trim().split('\n')[0]);
}

function cpuTicks(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
}

interface Sample {
  rps: number;
  requests: number;
  cpuUsPerRequest: number;
  errors: number;
}

function wrk(url: string, worker: number): Sample {
  const before = cpuTicks(worker);
  const out = execFileSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, url], { encoding: 'utf8' });
  const ticks = cpuTicks(worker) - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const hz = 100; // Linux USER_HZ
  return { rps, requests, errors, cpuUsPerRequest: requests > 0 ? ((ticks / hz) * 1e6) / requests : NaN };
}

/**
 * fetch with one retry: wrk runs block this process (execFileSync) for longer than
 * nginx's keepalive_timeout, so a pooled connection may have been closed meanwhile
 * without this process noticing.
 */
async function fetchOnce(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch {
    return fetch(url);
  }
}

export async function expectHit(url: string): Promise<string> {
  for (let i = 0; i < 3; i++) await (await fetchOnce(url)).arrayBuffer();
  const res = await fetchOnce(url);
  await res.arrayBuffer();
  return res.headers.get('cache-status') ?? '';
}

export interface HitResult {
  size: string;
  refRps: number;
  edgeRps: number;
  throughputRatio: number;
  refCpuUs: number;
  edgeCpuUs: number;
  cpuRatio: number;
  /** Against the reference with the edge's open_file_cache, when one ran. */
  tuned?: { refRps: number; throughputRatio: number; refCpuUs: number; cpuRatio: number };
  rounds: { ref: Sample; edge: Sample; tuned?: Sample }[];
}

type Server = { url: string; pid: number };

/**
 * Serves /b/1KiB and /b/100KiB from cache on all (edge: any nginx master with one
 * worker, e.g. a native stack's edge). Each round runs every server back to back,
 * rotating which goes first.
 */
export async function hitThroughput(edge: Server, ref: Server, tunedRef?: Server): Promise<HitResult[]> {
  const servers = { ref, edge, ...(tunedRef ? { tuned: tunedRef } : {}) };
  const workers = Object.fromEntries(Object.entries(servers).map(([name, s]) => [name, workerPid(s.pid)]));
  const results: HitResult[] = [];
  for (const size of Object.keys(SIZES)) {
    for (const [name, s] of Object.entries(servers)) {
      const status = await expectHit(`${s.url}/b/${size}`);
      if (!(name === 'edge' ? status.includes('hit') : status === 'HIT')) throw new Error(`objects are not cached: ${name} "${status}"`);
    }
    const rounds: { ref: Sample; edge: Sample; tuned?: Sample }[] = [];
    const names = Object.keys(servers) as (keyof typeof servers)[];
    for (let r = 0; r < ROUNDS; r++) {
      const round: Partial<Record<keyof typeof servers, Sample>> = {};
      for (let i = 0; i < names.length; i++) {
        const name = names[(r + i) % names.length];
        round[name] = wrk(`${servers[name]!.url}/b/${size}`, workers[name]);
      }
      rounds.push(round as { ref: Sample; edge: Sample; tuned?: Sample });
      const shown = names.map((n) => `${n} ${round[n]!.rps.toFixed(0)}`).join(', ');
      process.stderr.write(`  ${size} round ${r + 1}/${ROUNDS}: req/s ${shown}\n`);
    }
    for (const r of rounds) {
      if (names.some((n) => r[n]!.errors > 0)) throw new Error(`non-2xx responses during the ${size} run`);
    }
    const against = (pick: (r: (typeof rounds)[number]) => Sample) => ({
      refRps: median(rounds.map((r) => pick(r).rps)),
      throughputRatio: median(rounds.map((r) => r.edge.rps / pick(r).rps)),
      refCpuUs: median(rounds.map((r) => pick(r).cpuUsPerRequest)),
      cpuRatio: median(rounds.map((r) => pick(r).cpuUsPerRequest / r.edge.cpuUsPerRequest)),
    });
    results.push({
      size,
      ...against((r) => r.ref),
      edgeRps: median(rounds.map((r) => r.edge.rps)),
      edgeCpuUs: median(rounds.map((r) => r.edge.cpuUsPerRequest)),
      ...(tunedRef ? { tuned: against((r) => r.tuned!) } : {}),
      rounds,
    });
  }
  return results;
}

/** Publishes purges by tag and times until the edge serves the new bytes. */
async function purgeLatency(edge: EdgeHarness): Promise<{ count: number; p50: number; p99: number; max: number }> {
  const redis = new Redis(edge.redis.url);
  const versions = new Map<string, number>();
  edge.setOrigin((req): OriginReply => {
    const url = req.url ?? '';
    if (url.startsWith('/b/')) return { headers: { 'Cache-Control': 'public, max-age=3600' }, body: Buffer.alloc(SIZES[url.slice(3) as keyof typeof SIZES] ?? 1, 120) };
    return { headers: { 'Cache-Control': 'public, max-age=3600', 'Surrogate-Key': `product-${url}` }, body: `v${versions.get(url) ?? 0}` };
  });
  const latencies: number[] = [];
  try {
    for (let i = 0; i < PURGES; i++) {
      const p = `/product/${i}`;
      versions.set(p, 0);
      await expectHit(`${edge.url}${p}`);
      versions.set(p, 1);
      const start = process.hrtime.bigint();
      await redis.xadd('cdn:purges', '*', 'purge', JSON.stringify({ id: `bench-${i}`, urls: [], prefixes: [], tags: [`product-${p}`], at: Date.now() }));
      for (;;) {
        const body = await (await fetch(`${edge.url}${p}`)).text();
        if (body === 'v1') break;
        if (Number(process.hrtime.bigint() - start) > 5e9) throw new Error(`purge ${i} not applied within 5 s`);
      }
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  } finally {
    redis.disconnect();
  }
  return { count: latencies.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies) };
}

export interface StackPurgeLatency {
  count: number;
  edges: number;
  /** From the 202 until the last edge fetched again. */
  p50: number;
  p99: number;
  max: number;
  /** From the 202 until each edge fetched again, by edge id. */
  perEdge: Record<string, number[]>;
}

/**
 * The same through the whole native stack (2 regions x 2 edges, the real origin):
 * from the purge API's 202 until every edge, queried directly, has fetched the
 * purged object again. On `existing` (left running) when given, else on a stack of
 * its own (with a Redis replica for the second region when `regionalReplicas`).
 */
export async function purgeLatencyThroughStack(existing?: UpResult, options: { regionalReplicas?: boolean } = {}): Promise<StackPurgeLatency> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-stack-'));
  const stack = existing ?? (await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, regionalReplicas: options.regionalReplicas, detached: true }));
  const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const auth = { Authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  const perEdge: Record<string, number[]> = Object.fromEntries(stack.state.edges.map((e) => [e.id, []]));
  try {
    for (let i = 0; i < PURGES; i++) {
      const key = `bench/purge-${i}.txt`;
      const put = await fetch(`${stack.state.origin}/v1/assets/${key}`, { method: 'PUT', headers: { ...auth, 'Content-Type': 'text/plain', 'Surrogate-Key': `bench-${i}` }, body: `v${i}` });
      if (!put.ok) throw new Error(`upload failed: ${put.status} ${await put.text()}`);
      for (const e of stack.state.edges) {
        const s = await expectHit(`${e.url}/${key}`);
        if (!s.includes('hit')) throw new Error(`${e.id} did not cache ${key}: ${s}`);
      }
      // The purge API rate-limits each token (429 + Retry-After): wait as told.
      let res: Response;
      for (;;) {
        res = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: [`bench-${i}`] }) });
        if (res.status !== 429) break;
        await res.arrayBuffer();
        await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 1) * 1000));
      }
      const start = process.hrtime.bigint();
      if (res.status !== 202) throw new Error(`purge refused: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      await Promise.all(
        stack.state.edges.map(async (e) => {
          for (;;) {
            const r = await fetch(`${e.url}/${key}`);
            await r.arrayBuffer();
            if (r.headers.get('cache-status')?.includes('fwd=')) {
              perEdge[e.id].push(Number(process.hrtime.bigint() - start) / 1e6);
              return;
            }
            if (Number(process.hrtime.bigint() - start) > 5e9) throw new Error(`purge ${i} not applied by ${e.id} within 5 s`);
          }
        }),
      );
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  } finally {
    if (!existing) await stack.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
  return { count: latencies.length, edges: stack.state.edges.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies), perEdge };
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

async function main(): Promise<void> {
  const edge = await startEdge();
  edge.setOrigin((req) => ({
    headers: { 'Cache-Control': 'public, max-age=3600' },
    body: Buffer.alloc(SIZES[(req.url ?? '').slice(3) as keyof typeof SIZES] ?? 1, 120),
  }));
  const ref = await startReference(edge.originUrl);
  const tunedRef = await startReference(edge.originUrl, true);
  try {
    process.stderr.write(`edge benchmark: ${ROUNDS} rounds of ${SECONDS}s per size, wrk -t1 -c${CONNECTIONS}, 1 nginx worker each\n`);
    const hits = await hitThroughput(edge, ref, tunedRef);
    const purge = await purgeLatency(edge);
    const stackPurge = await purgeLatencyThroughStack();
    const report = {
      commit: git(['rev-parse', 'HEAD']),
      dirty: uncommittedChanges(),
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
      command: `node dist/bench/edge.js${QUICK ? ' --quick' : ''}`,
      method: { rounds: ROUNDS, secondsPerRun: SECONDS, connections: CONNECTIONS, workers: 1, tool: 'wrk -t1' },
      hits,
      purge,
      stackPurge,
    };
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'edge.json'), JSON.stringify(report, null, 2) + '\n');
    const lines = [
      '# Edge benchmark',
      '',
      `Commit \`${report.commit}\`${report.dirty ? ' (with uncommitted changes)' : ''}, ${report.date}, ${report.machine.cpus} cores (${report.machine.model}).`,
      `Command: \`${report.command}\`. ${ROUNDS} rounds per size, each running the reference and the edge back to back for ${SECONDS} s (wrk -t1 -c${CONNECTIONS}, one nginx worker each, 127.0.0.1).`,
      '',
      '## Cache-HIT throughput: edge (all Lua phases) vs plain nginx proxy_cache',
      '',
      '| object | reference req/s | edge req/s | edge/reference (median of rounds) | reference CPU µs/req | edge CPU µs/req | CPU ratio |',
      '|---|---|---|---|---|---|---|',
      ...hits.map(
        (h) =>
          `| ${h.size} | ${h.refRps.toFixed(0)} | ${h.edgeRps.toFixed(0)} | **${h.throughputRatio.toFixed(3)}** | ${h.refCpuUs.toFixed(2)} | ${h.edgeCpuUs.toFixed(2)} | ${h.cpuRatio.toFixed(3)} |`,
      ),
      '',
      "The edge keeps hot cache files open (`open_file_cache`), which plain nginx does not. The same reference with the edge's `open_file_cache` shows what the Lua phases alone cost (same rounds):",
      '',
      '| object | tuned reference req/s | edge/tuned reference (median of rounds) | tuned reference CPU µs/req | CPU ratio |',
      '|---|---|---|---|---|',
      ...hits.map((h) => `| ${h.size} | ${h.tuned!.refRps.toFixed(0)} | ${h.tuned!.throughputRatio.toFixed(3)} | ${h.tuned!.refCpuUs.toFixed(2)} | ${h.tuned!.cpuRatio.toFixed(3)} |`),
      '',
      '## Purge latency (tag purge XADDed to the stream → the edge serves the new bytes)',
      '',
      `One edge, ${purge.count} purges: p50 ${purge.p50.toFixed(1)} ms, p99 ${purge.p99.toFixed(1)} ms, max ${purge.max.toFixed(1)} ms.`,
      '',
      `Whole native stack (${stackPurge.edges} edges in 2 regions, the real origin), from the purge API's 202 until every edge, queried directly, fetched the object again; ${stackPurge.count} tag purges: p50 ${stackPurge.p50.toFixed(1)} ms, p99 ${stackPurge.p99.toFixed(1)} ms, max ${stackPurge.max.toFixed(1)} ms.`,
      '',
    ];
    fs.writeFileSync(path.join(OUT, 'edge.md'), lines.join('\n'));
    process.stdout.write(lines.join('\n'));
  } finally {
    await tunedRef.stop();
    await ref.stop();
    await edge.stop();
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
