/**
 * The balancer's numbers (issue 5), measured on this machine, only on 127.0.0.1:
 *
 *   hop       balancer -> edge HIT throughput vs plain nginx round-robin -> the same
 *             edge, 1 KiB and 100 KiB, side by side in one run (wrk, alternating,
 *             medians of several runs, ratio).
 *   spread    100,000 Zipf-distributed keys over 4 edges, simulated inside nginx with
 *             the real ring code (cdn.balancer.ring, bounded loads) and real LRU
 *             caches (resty.lrucache): keys held and requests per edge (busiest /
 *             mean), fleet hit ratio vs one cache of the fleet's size, round-robin
 *             beside it.
 *   failover  the native stack with 4 edges under steady GET load; one edge is
 *             killed and restarted: failed GETs, time to be marked down, time back.
 *
 * Build and run (writes bench/results/balancer.md):
 *   npm run build && node dist/bench/balancer-bench.js all
 * Options: BENCH_RUNS (pairs, default 30), BENCH_SECONDS per wrk run (default 2).
 * The scenarios are exported for `npm run bench` (bench/run.ts).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { up, type UpResult } from '../infra/targets/native/stack';
import { isAlive, startUnit, stopPid } from '../infra/targets/native/supervisor';
import { parseSpec } from '../infra/model/spec';
import { startNginx, type NginxHandle } from '../test/support/nginx-lua';
import { git, median, uncommittedChanges } from './edge';
import { childrenOf, cpuSeconds } from './proc';

const REPO = path.resolve(__dirname, '..', '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 30);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CONNECTIONS = 16;

/** The q-quantile, interpolated between the two nearest ranks (the middle half of the pairs). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startStack(edges: number): Promise<{ stack: UpResult; token: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-'));
  const stack = await up({ spec: parseSpec({ regions: [{ name: 'eu', edges }] }), stateDir: dir, repoRoot: REPO, prometheus: false, detached: true });
  const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  return { stack, token, dir };
}

async function putAsset(origin: string, token: string, key: string, body: Buffer): Promise<void> {
  const res = await fetch(`${origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=86400' },
    body,
  });
  if (!res.ok) throw new Error(`PUT ${key}: ${res.status} ${await res.text()}`);
}

async function warm(url: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const res = await fetch(url);
    await res.arrayBuffer();
    if (res.headers.get('cache-status')?.includes('; hit')) return;
  }
  throw new Error(`${url} never became a cache hit`);
}

/** One wrk run; also the proxy workers' CPU time per request (µs), when their master is given. */
export function wrk(url: string, masterPid?: number, seconds = SECONDS): { rps: number; cpuUs: number; errors: string } {
  const workers = masterPid ? childrenOf(masterPid) : [];
  const before = workers.reduce((a, p) => a + cpuSeconds(p), 0);
  const out = execFileSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, url], { encoding: 'utf8' });
  const after = workers.reduce((a, p) => a + cpuSeconds(p), 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const errors = [/Socket errors:[^\n]*/.exec(out)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(out)?.[0]].filter(Boolean).join('; ');
  return { rps, cpuUs: requests ? ((after - before) * 1e6) / requests : 0, errors };
}

/** Plain nginx, no Lua in any phase: upstream round-robin over the given edge(s). */
function startPlainProxy(edges: string[]): Promise<NginxHandle> {
  return startNginx(
    `        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Request-Id $cdn_request_id;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass http://edges;
        }`,
    {
      http: `    upstream edges {
${edges.map((e) => `        server ${e};`).join('\n')}
        keepalive 64;
        keepalive_requests 10000;
    }
    client_body_temp_path tmp;
    proxy_temp_path tmp;`,
    },
  );
}

export interface HopResult {
  size: string;
  balancer: number[];
  plain: number[];
  /** balancer / plain of each back-to-back pair */
  ratios: number[];
  balancerCpuUs: number[];
  plainCpuUs: number[];
  direct: number[];
  errors: string[];
}

/** Balancer -> edge vs plain nginx -> the same edge, on a 1-edge native stack of its own. */
export async function hop(o: { runs?: number; seconds?: number } = {}): Promise<HopResult[]> {
  const runs = o.runs ?? RUNS;
  const seconds = o.seconds ?? SECONDS;
  const { stack, token, dir } = await startStack(1);
  const edge = stack.state.edges[0];
  const balancerPid = stack.services.find((s) => s.unit.name === 'balancer')!.pid;
  const plain = await startPlainProxy([edge.url.replace('http://', '')]);
  const results: HopResult[] = [];
  try {
    const sizes: [string, number][] = [
      ['1 KiB', 1024],
      ['100 KiB', 100 * 1024],
    ];
    for (const [label, bytes] of sizes) {
      const key = `bench/hop-${bytes}.bin`;
      await putAsset(stack.state.origin, token, key, Buffer.alloc(bytes, 'x'));
      await warm(`${stack.state.balancer}/${key}`);
      await warm(`${plain.url}/${key}`);
      results.push({ size: label, balancer: [], plain: [], ratios: [], balancerCpuUs: [], plainCpuUs: [], direct: [], errors: [] });
    }
    for (let run = 0; run < runs; run++) {
      for (const [i, [, bytes]] of sizes.entries()) {
        const key = `bench/hop-${bytes}.bin`;
        const r = results[i];
        // back-to-back pairs, alternating which goes first, so that both see the
        // same (shared, noisy) machine; the pair's ratio is what counts
        const order = run % 2 === 0 ? (['balancer', 'plain'] as const) : (['plain', 'balancer'] as const);
        const pair: Record<string, number> = {};
        for (const which of order) {
          const w = which === 'balancer' ? wrk(`${stack.state.balancer}/${key}`, balancerPid, seconds) : wrk(`${plain.url}/${key}`, plain.pid, seconds);
          r[which].push(w.rps);
          (which === 'balancer' ? r.balancerCpuUs : r.plainCpuUs).push(w.cpuUs);
          pair[which] = w.rps;
          if (w.errors) r.errors.push(`${which}: ${w.errors}`);
        }
        r.ratios.push(pair.balancer / pair.plain);
        if (run === 0) r.direct.push(wrk(`${edge.url}/${key}`, undefined, seconds).rps);
        process.stdout.write(`hop pair ${run + 1}/${runs} ${r.size}: balancer ${fmt(pair.balancer)} plain ${fmt(pair.plain)} ratio ${(pair.balancer / pair.plain).toFixed(3)}\n`);
      }
    }
  } finally {
    await plain.stop();
    await stack.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

interface SpreadResult {
  [strategy: string]: { keysMaxOverMean: number; requestsMaxOverMean: number; hitRatio: number; keysHeld: number[]; requests: number[] };
}

const SPREAD_LUA = `
local ring = require "cdn.balancer.ring"
local lrucache = require "resty.lrucache"
local cjson = require "cjson"
local args = ngx.req.get_uri_args()
local N, R, CAP, S, W = tonumber(args.n), tonumber(args.r), tonumber(args.cap), tonumber(args.s), tonumber(args.w)
local EDGES = 4
math.randomseed(42)
-- Zipf(S) over ranks 1..N by inverse CDF
local cdf, total = {}, 0
for i = 1, N do total = total + 1 / i ^ S; cdf[i] = total end
for i = 1, N do cdf[i] = cdf[i] / total end
local function sample()
    local u, lo, hi = math.random(), 1, N
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return lo
end
local keys = {}
for i = 1, N do keys[i] = "shop.example/products/p-" .. i .. ".jpg" end
local nodes = {}
for i = 1, EDGES do nodes[i] = { id = "eu-" .. i } end
local r = ring.new(nodes)
local index = {}
for i, n in ipairs(nodes) do index[n] = i end
local stream = {}
for i = 1, R do stream[i] = sample() end

local function run(strategy)
    local caches, held, reqs, hits = {}, {}, {}, 0
    for i = 1, EDGES do caches[i] = lrucache.new(CAP); held[i] = {}; reqs[i] = 0 end
    local single = strategy == "single" and lrucache.new(CAP * EDGES)
    local usable, loads, window, head = {}, {}, {}, 1
    for i = 1, EDGES do usable[i] = true; loads[i] = 0 end
    for t = 1, R do
        local rank = stream[t]
        local k = keys[rank]
        if single then
            if single:get(k) then hits = hits + 1 else single:set(k, true) end
        else
            local e
            if strategy == "roundrobin" then
                e = (t - 1) % EDGES + 1
            elseif strategy == "ring" then
                e = index[r:pick(k)]
            else -- "bounded": W requests in flight, each ends W arrivals later
                local _, idx = r:pick_bounded(k, usable, loads, 1.25)
                e = idx
                loads[e] = loads[e] + 1
                window[t] = e
                if t > W then loads[window[t - W]] = loads[window[t - W]] - 1; window[t - W] = nil end
            end
            reqs[e] = reqs[e] + 1
            held[e][rank] = true
            if caches[e]:get(k) then hits = hits + 1 else caches[e]:set(k, true) end
        end
    end
    local out = { hit_ratio = hits / R, requests = reqs, held = {} }
    if not single then
        for i = 1, EDGES do
            local c = 0
            for _ in pairs(held[i]) do c = c + 1 end
            out.held[i] = c
        end
    end
    return out
end
ngx.print(cjson.encode({ single = run("single"), ring = run("ring"), bounded = run("bounded"),
                         roundrobin = run("roundrobin") }))
`;

const SPREAD = { n: 100000, r: 1000000, cap: 2500, s: 0.9, w: 64 };

async function spread(): Promise<{ params: typeof SPREAD; result: SpreadResult; single: number }> {
  const nginx = await startNginx(`        location = /spread {
            content_by_lua_block {
${SPREAD_LUA}
            }
        }`);
  try {
    const q = new URLSearchParams(Object.entries(SPREAD).map(([k, v]): [string, string] => [k, String(v)]));
    const res = await fetch(`${nginx.url}/spread?${q}`, { signal: AbortSignal.timeout(300000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`spread simulation failed: ${res.status} ${text}\n${nginx.errorLog()}`);
    const raw = JSON.parse(text) as Record<string, { hit_ratio: number; requests: number[]; held: number[] }>;
    const result: SpreadResult = {};
    for (const s of ['ring', 'bounded', 'roundrobin']) {
      const x = raw[s];
      const meanHeld = x.held.reduce((a, b) => a + b, 0) / x.held.length;
      const meanReq = x.requests.reduce((a, b) => a + b, 0) / x.requests.length;
      result[s] = {
        keysMaxOverMean: Math.max(...x.held) / meanHeld,
        requestsMaxOverMean: Math.max(...x.requests) / meanReq,
        hitRatio: x.hit_ratio,
        keysHeld: x.held,
        requests: x.requests,
      };
    }
    return { params: SPREAD, result, single: raw.single.hit_ratio };
  } finally {
    await nginx.stop();
  }
}

interface FailoverResult {
  requests: number;
  failed: number;
  failures: string[];
  downAfterMs: number;
  backAfterMs: number;
  quietDownAfterMs: number;
  rps: number;
}

async function failover(): Promise<FailoverResult> {
  const { stack, token, dir } = await startStack(4);
  try {
    const keys = Array.from({ length: 200 }, (_, i) => `bench/fo-${i}.bin`);
    for (const k of keys) await putAsset(stack.state.origin, token, k, Buffer.alloc(1024, 'y'));
    for (const k of keys) {
      const res = await fetch(`${stack.state.balancer}/${k}`);
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`warming ${k}: HTTP ${res.status}; the stack is not healthy, see ${dir}`);
    }
    const victim = stack.services.find((s) => s.unit.name === 'edge-eu-2')!;
    const balancerUnit = stack.services.find((s) => s.unit.name === 'balancer')!.unit;
    const statusJson = balancerUnit.health?.kind === 'http' ? balancerUnit.health.url.replace('/healthz', '/status.json') : '';
    const edgeUp = async (id: string) => {
      const doc = (await (await fetch(statusJson)).json()) as { edges: { id: string; up: boolean }[] };
      return doc.edges.find((e) => e.id === id)!.up;
    };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const base = new URL(stack.state.balancer);
    let requests = 0;
    let failed = 0;
    const failures: string[] = [];
    let stop = false;
    const get = (p: string) =>
      new Promise<number>((resolve) => {
        const req = http.get({ host: base.hostname, port: base.port, path: p, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(-1));
        });
        req.on('error', (e) => {
          failures.push(String(e));
          resolve(-1);
        });
      });
    // 8 clients, each ~50 req/s: a steady ~400 req/s
    const clients = Array.from({ length: 8 }, async (_, c) => {
      let i = c;
      while (!stop) {
        const t = Date.now();
        const status = await get(`/${keys[i++ % keys.length]}`);
        requests++;
        if (status !== 200) {
          failed++;
          if (status > 0) failures.push(`HTTP ${status}`);
        }
        const wait = 20 - (Date.now() - t);
        if (wait > 0) await sleep(wait);
      }
    });
    const started = Date.now();
    await sleep(3000);
    process.kill(-victim.pid, 'SIGKILL');
    const killedAt = Date.now();
    let downAfterMs = -1;
    while (Date.now() - killedAt < 10000) {
      if (!(await edgeUp('eu-2'))) {
        downAfterMs = Date.now() - killedAt;
        break;
      }
      await sleep(20);
    }
    await sleep(2000);
    while (isAlive(victim.pid)) await sleep(20);
    // a SIGKILLed nginx leaves its unix sockets behind (the edge's internal hop
    // listens on one) and would refuse to start on them: clear them as an
    // operator or systemd's ExecStartPre would
    for (const f of fs.readdirSync(victim.unit.dir)) if (f.endsWith('.sock')) fs.rmSync(path.join(victim.unit.dir, f), { force: true });
    const restarted = startUnit(victim.unit);
    const restartedAt = Date.now();
    let backAfterMs = -1;
    while (Date.now() - restartedAt < 15000) {
      if (await edgeUp('eu-2')) {
        backAfterMs = Date.now() - restartedAt;
        break;
      }
      await sleep(20);
    }
    if (backAfterMs < 0) {
      const tail = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n').slice(-5).join(' | ') : '(none)');
      failures.push(`eu-2 not back: alive=${isAlive(restarted.pid)}; edge log: ${tail(path.join(victim.unit.dir, 'logs', 'error.log'))}; service log: ${tail(restarted.log)}; balancer: ${tail(path.join(balancerUnit.dir, 'logs', 'error.log'))}`);
    }
    await sleep(2000);
    stop = true;
    await Promise.all(clients);
    const elapsed = (Date.now() - started) / 1000;
    agent.destroy();
    // the restarted edge is not in stack.services: stop it ourselves
    await stopPid(restarted.pid);
    // and with no traffic at all, only the active checks can notice
    const quiet = stack.services.find((s) => s.unit.name === 'edge-eu-3')!;
    process.kill(-quiet.pid, 'SIGKILL');
    const quietAt = Date.now();
    let quietDownAfterMs = -1;
    while (Date.now() - quietAt < 10000) {
      if (!(await edgeUp('eu-3'))) {
        quietDownAfterMs = Date.now() - quietAt;
        break;
      }
      await sleep(20);
    }
    return { requests, failed, failures: failures.slice(0, 5), downAfterMs, backAfterMs, quietDownAfterMs, rps: requests / elapsed };
  } finally {
    await stack.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function machine(): string {
  const cpus = os.cpus();
  const nginxVersion = execFileSync('sh', ['-c', '/usr/sbin/nginx -v 2>&1'], { encoding: 'utf8' }).trim();
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${fmt(os.totalmem() / 2 ** 30, 1)} GiB RAM, Linux ${os.release()}, ${nginxVersion}, Node ${process.version}, ${execFileSync('sh', ['-c', 'wrk --version 2>&1 | head -1'], { encoding: 'utf8' }).trim().split(' Copyright')[0]}`;
}

async function main() {
  const what = process.argv[2] ?? 'all';
  const sections: string[] = [];
  const command = `npm run build && node dist/bench/balancer-bench.js ${what}`;
  const dirty = uncommittedChanges() ? ' (with uncommitted changes)' : '';
  const head = [
    '# Balancer benchmark',
    '',
    `- commit: \`${git(['rev-parse', 'HEAD'])}\`${dirty}`,
    `- machine: ${machine()}`,
    `- date: ${new Date().toISOString()}`,
    `- command: \`${command}\``,
    `- everything on 127.0.0.1; the machine is shared, so only ratios measured side by side in one run mean anything`,
    '',
  ];
  if (what === 'hop' || what === 'all') {
    const results = await hop();
    const rows = results.map(
      (r) =>
        `| ${r.size} | **${median(r.ratios).toFixed(3)}** | ${quantile(r.ratios, 0.25).toFixed(3)} – ${quantile(r.ratios, 0.75).toFixed(3)} | ${fmt(median(r.balancer))} | ${fmt(median(r.plain))} | ${(median(r.balancer) / median(r.plain)).toFixed(3)} | ${median(r.balancerCpuUs).toFixed(1)} / ${median(r.plainCpuUs).toFixed(1)} | ${fmt(median(r.direct))} |`,
    );
    const runs = results.map((r) => `- ${r.size} pair ratios: ${r.ratios.map((x) => x.toFixed(3)).join(', ')}`);
    const errors = results.flatMap((r) => r.errors);
    sections.push(
      '## Hop cost: balancer -> edge vs plain nginx round-robin -> the same edge',
      '',
      `Cache HITs of one object on one real edge (native stack: 1 edge, origin, Redis); wrk \`-t1 -c${CONNECTIONS} -d${SECONDS}s\`, ${RUNS} back-to-back`,
      'pairs per size (balancer run, plain run; the order alternates). Both proxies run 1 worker with the same common nginx config',
      '(access log, request id, buffers, upstream keepalive); the plain one has no Lua in any phase. The balancer does everything it does',
      'in production on each request: front-door checks, region, bounded-load ring pick (shared health, per-worker in-flight counts), per-edge',
      'statistics, limit_conn. Target: ratio >= 0.9. The machine (2 cores) is shared with other work, so single pairs swing widely',
      '(by ±10%); the median of the per-pair ratios is the figure, and the middle half of the pairs shows the spread. CPU µs/request',
      'is the proxy workers\' own CPU time (from /proc) per request.',
      '',
      '| object | median pair ratio | middle half of pairs | balancer req/s (median) | plain req/s (median) | ratio of medians | proxy CPU µs/req balancer / plain | edge direct req/s (1 run) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      ...runs,
      '',
      errors.length ? `wrk reported: ${errors.join('; ')}` : 'wrk reported no socket errors and no non-2xx responses.',
      '',
    );
  }
  if (what === 'spread' || what === 'all') {
    const { params, result, single } = await spread();
    const row = (name: string, label: string) => {
      const x = result[name];
      return `| ${label} | ${x.keysMaxOverMean.toFixed(3)} | ${x.requestsMaxOverMean.toFixed(3)} | ${(x.hitRatio * 100).toFixed(2)}% | **${(x.hitRatio / single).toFixed(3)}** | ${x.keysHeld.map((v) => fmt(v)).join(' / ')} |`;
    };
    sections.push(
      '## Key spread and fleet hit ratio (simulation with the real ring code)',
      '',
      `${fmt(params.n)} keys, ${fmt(params.r)} requests drawn from Zipf(s = ${params.s}), 4 edges with an LRU of ${fmt(params.cap)} objects each`,
      `(resty.lrucache), compared with one LRU of ${fmt(params.cap * 4)}; run inside nginx with \`cdn.balancer.ring\`. "Bounded" keeps`,
      `${params.w} requests in flight (each ends ${params.w} arrivals later) and uses \`pick_bounded\` with c = 1.25, as the balancer does.`,
      `One cache of the fleet's size: **${(single * 100).toFixed(2)}%** hits. Targets: busiest edge <= 1.25 x mean, fleet hit ratio >= 0.95 x one cache.`,
      '',
      '| routing | keys held: busiest / mean | requests: busiest / mean | fleet hit ratio | vs one cache | keys held per edge |',
      '|---|---:|---:|---:|---:|---|',
      row('bounded', 'consistent hashing, bounded loads (the balancer)'),
      row('ring', 'consistent hashing, no load bound'),
      row('roundrobin', 'round-robin'),
      '',
    );
  }
  if (what === 'failover' || what === 'all') {
    const r = await failover();
    sections.push(
      '## Failover: kill one of four edges under steady load',
      '',
      'Native stack, one region of 4 edges, default health settings (interval 1 s, timeout 0.5 s, fall 2, rise 2). 8 keep-alive',
      'clients GET 200 cached (warmed) 1 KiB objects (~50 req/s each) for ~3 s, then eu-2 gets SIGKILL (process group), is restarted 2 s',
      'after it was marked down (its stale unix socket removed first), and the load goes on 2 s after it is back. "Marked down" and',
      '"back" are read from /status.json every 20 ms. Under load the proxy\'s own failed connections (passive) take the edge out',
      'before the next active check; the last column kills eu-3 with no traffic at all, so only the active checks can notice.',
      '',
      '| GETs | failed GETs | load | marked down after (under load) | back in rotation after restart | marked down after (no traffic, eu-3) |',
      '|---:|---:|---:|---:|---:|---:|',
      `| ${fmt(r.requests)} | **${r.failed}** | ${fmt(r.rps)} req/s | **${r.downAfterMs} ms** | ${r.backAfterMs} ms | **${r.quietDownAfterMs} ms** |`,
      '',
      r.failures.length ? `First failures: ${r.failures.join('; ')}` : '',
      '',
    );
  }
  const out = [...head, ...sections].join('\n');
  const file = path.join(REPO, 'bench', 'results', 'balancer.md');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, out.replace(/\n{3,}/g, '\n\n'));
  process.stdout.write(out + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
