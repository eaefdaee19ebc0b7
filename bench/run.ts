/**
 * `npm run bench [-- --quick]`: the CDN's numbers in one report, every scenario run
 * side by side against a plain nginx reference on this machine (127.0.0.1 only):
 *
 *   HIT throughput   a native stack's edge vs plain nginx proxy_cache on the same origin
 *                    (bench/edge.ts: hitThroughput, startPlainNginx; bench:edge adds the other
 *                    references and Varnish)
 *   balancer hop     balancer -> edge vs plain nginx -> the same edge (bench/balancer-bench.ts: hop)
 *   purge latency    purge API 202 -> every edge of the stack refetched (bench/edge.ts)
 *   cold spike       N concurrent requests for one object nobody holds: origin requests
 *                    through one edge, through the balancer, through the reference
 *   Zipf mix         the storefront mix (load/storefront.ts) through the balancer and
 *                    through the reference: hit ratio by requests and bytes, origin offload
 *
 * Writes bench/results/report.md and report.json with the commit and the machine.
 * `--quick` (fewer rounds, shorter runs) finishes in under 2 minutes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { catalogue, percentile, runStorefront, seedCatalogue, type StorefrontStats } from '../load/storefront';
import { REPO_ROOT } from '../test/support/nginx-lua';
import { hop, machine } from './balancer-bench';
import { edgeTarget, git, hitThroughput, median, plainNginxName, startPlainNginx, uncommittedChanges, uploadAssets, type Target } from './edge';
import { purgeLatencyThroughStack } from './purge';

const QUICK = process.argv.includes('--quick');
const OUT = (() => {
  const i = process.argv.indexOf('--out');
  return i > 0 ? path.resolve(process.argv[i + 1]) : path.join(REPO_ROOT, 'bench', 'results');
})();
const P = QUICK
  ? { hopRuns: 3, hopSeconds: 2, hitRounds: 2, hitSeconds: 2, purges: 30, spike: 50, zipfItems: 300, zipfRequests: 10000, zipfSeconds: 15, concurrency: 8 }
  : { hopRuns: 10, hopSeconds: 2, hitRounds: 5, hitSeconds: 4, purges: 100, spike: 200, zipfItems: 1000, zipfRequests: 60000, zipfSeconds: 90, concurrency: 8 };
/** The plain nginx this report compares with (the fastest for small objects; bench:edge runs them all). */
const REFERENCE = { sendfile: false, openFileCache: true };

const log = (s: string) => process.stderr.write(`${s}\n`);

/** GET/HEAD requests the origin answered on its delivery routes so far (from its /metrics). */
export async function originDeliveryRequests(origin: string): Promise<number> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    const m = /^cdn_origin_http_requests_total\{([^}]*)\} (\S+)$/.exec(line);
    if (m && /route="(\/\*|\/_v\/\*)"/.test(m[1]) && /method="(GET|HEAD)"/.test(m[1])) n += Number(m[2]);
  }
  return n;
}

async function put(origin: string, token: string, key: string, body: Buffer): Promise<void> {
  const res = await fetch(`${origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=86400' },
    body,
  });
  if (!res.ok) throw new Error(`PUT ${key}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

export interface SpikeResult {
  target: string;
  concurrent: number;
  originRequests: number;
  ok: number;
  ms: number;
}

/** N concurrent GETs of one object no cache holds; how many reached the origin. */
async function coldSpike(label: string, base: string, origin: string, token: string, n: number): Promise<SpikeResult> {
  const key = `bench/spike-${label}-${Date.now()}.bin`;
  await put(origin, token, key, Buffer.alloc(64 * 1024, 's'));
  const before = await originDeliveryRequests(origin);
  const t = performance.now();
  const statuses = await Promise.all(
    Array.from({ length: n }, async () => {
      const res = await fetch(`${base}/${key}`, { signal: AbortSignal.timeout(15000) });
      await res.arrayBuffer();
      return res.status;
    }),
  );
  const ms = performance.now() - t;
  return { target: label, concurrent: n, originRequests: (await originDeliveryRequests(origin)) - before, ok: statuses.filter((s) => s === 200).length, ms };
}

export interface ZipfResult {
  target: string;
  requests: number;
  rps: number;
  hitRatio: number;
  byteHitRatio: number;
  originRequests: number;
  offload: number;
  p50HitMs: number;
  p99HitMs: number;
  p50MissMs: number;
  p99MissMs: number;
  errors: number;
}

async function zipfRun(label: string, base: string, origin: string, items: ReturnType<typeof catalogue>): Promise<ZipfResult> {
  const before = await originDeliveryRequests(origin);
  const s: StorefrontStats = await runStorefront({ baseUrl: base, items, concurrency: P.concurrency, durationMs: P.zipfSeconds * 1000, maxRequests: P.zipfRequests, notFoundShare: 0, seed: 42 });
  if (s.requests < P.zipfRequests) log(`  ${label}: only ${s.requests} of ${P.zipfRequests} requests within ${P.zipfSeconds} s; hit ratios are not comparable`);
  const originRequests = (await originDeliveryRequests(origin)) - before;
  return {
    target: label,
    requests: s.requests,
    rps: s.requests / s.seconds,
    hitRatio: s.hits / s.requests,
    byteHitRatio: s.hitBytes / s.bytes,
    originRequests,
    offload: 1 - originRequests / s.requests,
    p50HitMs: percentile(s.latenciesMs.hit, 50),
    p99HitMs: percentile(s.latenciesMs.hit, 99),
    p50MissMs: percentile(s.latenciesMs.miss, 50),
    p99MissMs: percentile(s.latenciesMs.miss, 99),
    errors: s.errors,
  };
}

const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
const pct = (n: number) => `${(n * 100).toFixed(1)}%`;

async function main(): Promise<void> {
  const started = Date.now();
  const command = `npm run bench${QUICK ? ' -- --quick' : ''}`;
  log(`bench: ${QUICK ? 'quick' : 'full'} run; everything on 127.0.0.1`);

  // 1. balancer hop, on a 1-edge stack of its own (before the main stack, so they never compete)
  log('balancer hop (balancer-bench.ts hop)...');
  const hops = await hop({ runs: P.hopRuns, seconds: P.hopSeconds });

  // 2. the main stack: 2 regions x 2 edges, the real origin, no Prometheus (less noise)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-run-'));
  let stack: UpResult | undefined;
  let ref: Target | undefined;
  try {
    stack = await up({ spec: parseSpec({}), stateDir: dir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
    const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
    const origin = stack.state.origin;
    ref = await startPlainNginx(stack.state.originDelivery, REFERENCE);
    const edge = stack.state.edges[0];

    log('HIT throughput: native edge vs plain nginx proxy_cache (edge.ts hitThroughput)...');
    const hits = await hitThroughput([edgeTarget(edge.url, edge.pid), ref], await uploadAssets(stack), { rounds: P.hitRounds, seconds: P.hitSeconds, withSyscalls: false });

    log('purge latency through the stack (edge.ts purgeLatencyThroughStack)...');
    const purge = await purgeLatencyThroughStack(stack, { count: P.purges });

    log(`cold spike: ${P.spike} concurrent requests for one new object...`);
    const spikes = [
      await coldSpike('edge', edge.url, origin, token, P.spike),
      await coldSpike('balancer', stack.state.balancer, origin, token, P.spike),
      await coldSpike('reference', ref.url, origin, token, P.spike),
    ];

    log(`Zipf storefront mix: ${P.zipfItems} objects, ${P.zipfRequests} requests each through the balancer and the reference...`);
    const items = catalogue({ images: Math.round(P.zipfItems * 0.8), bundles: Math.round(P.zipfItems * 0.2), prefix: 'zipf' });
    await seedCatalogue(origin, token, items);
    const zipf = [await zipfRun('balancer (fleet)', stack.state.balancer, origin, items), await zipfRun('reference', ref.url, origin, items)];

    const commit = git(['rev-parse', 'HEAD']);
    const dirty = uncommittedChanges();
    const report = {
      commit,
      dirty,
      date: new Date().toISOString(),
      machine: machine(),
      cpus: os.cpus().length,
      command,
      quick: QUICK,
      seconds: Math.round((Date.now() - started) / 1000),
      parameters: P,
      hitThroughput: hits.map((h) => ({ size: h.size, reference: h.bestNginx, ratio: h.edgeVsBestNginx, targets: h.targets, rounds: h.rounds.length })),
      balancerHop: hops.map((h) => ({ size: h.size, balancerRps: median(h.balancer), plainRps: median(h.plain), ratio: median(h.ratios), pairRatios: h.ratios, errors: h.errors })),
      purgeLatencyMs: purge,
      coldSpike: spikes,
      zipf,
    };
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    const md = [
      '# CDN benchmark report',
      '',
      `- commit: \`${commit}\`${dirty ? ' (with uncommitted changes)' : ''}`,
      `- machine: ${report.machine}`,
      `- date: ${report.date}; took ${report.seconds} s`,
      `- command: \`${command}\`${QUICK ? ' (quick: few rounds, short runs; ratios are indicative, run without --quick for the figures to quote)' : ''}`,
      '- everything on 127.0.0.1 on a shared machine: only ratios measured side by side in one run mean anything; each reference is plain nginx (no Lua) with the same worker count and the same origin',
      '',
      '## HIT throughput: a native stack\'s edge vs plain nginx proxy_cache',
      '',
      `Assets uploaded through the origin API; the reference is ${plainNginxName(REFERENCE)} with the same access log, fronting the same origin. wrk -t1, back-to-back runs rotating which goes first; medians of ${hits[0]?.rounds.length ?? 0} rounds. \`npm run bench:edge\` compares with every plain nginx configuration and Varnish.`,
      '',
      '| object | edge req/s | reference req/s | edge / reference | CPU µs/req edge / reference |',
      '|---|---:|---:|---:|---:|',
      ...hits.map((h) => `| ${h.size} | ${f(h.targets[0].rps)} | ${f(h.targets[1].rps)} | **${h.edgeVsBestNginx.toFixed(3)}** | ${h.targets[0].cpuUsPerRequest.toFixed(1)} / ${h.targets[1].cpuUsPerRequest.toFixed(1)} |`),
      '',
      '## Through the balancer vs plain nginx in front of the same edge',
      '',
      `${P.hopRuns} pairs of ${P.hopSeconds} s per size on a 1-edge native stack; median of the per-pair ratios.`,
      '',
      '| object | balancer req/s | plain proxy req/s | balancer / plain |',
      '|---|---:|---:|---:|',
      ...report.balancerHop.map((h) => `| ${h.size} | ${f(h.balancerRps)} | ${f(h.plainRps)} | **${h.ratio.toFixed(3)}** |`),
      '',
      '## Purge latency',
      '',
      `From the purge API's 202 until every edge of the stack (${purge.edges}), queried directly, fetched the purged object again; ${purge.count} tag purges: p50 **${purge.p50.toFixed(1)} ms**, p99 **${purge.p99.toFixed(1)} ms**, max ${purge.max.toFixed(1)} ms.`,
      '',
      '## Collapse on a cold spike',
      '',
      `${P.spike} concurrent GETs of one 64 KiB object no cache holds yet; origin requests counted from the origin's own metrics (delivery routes).`,
      '',
      '| through | concurrent requests | 200s | origin requests | wall time |',
      '|---|---:|---:|---:|---:|',
      ...spikes.map((s) => `| ${s.target} | ${s.concurrent} | ${s.ok} | **${s.originRequests}** | ${f(s.ms)} ms |`),
      '',
      'Through the balancer, bounded loads spill a hot object to the next edge of the ring, so up to one origin request per edge of the region is expected.',
      'Wall time: nginx\'s proxy_cache_lock waiters re-check the lock every 500 ms, so a request that joined a collapsed miss can wait about half a second; compare the edge\'s and the reference\'s wall times over several runs before reading anything into one.',
      '',
      '## Hit ratio under Zipf and origin offload',
      '',
      `The storefront mix (load/storefront.ts): ${items.length} objects (images and bundles), Zipf(s = 0.9), variants \`?w=200\`/\`?w=800\` and marketing parameters, the same ${f(P.zipfRequests)} requests (one seeded stream, ${P.concurrency} clients, at most ${P.zipfSeconds} s) against each, caches cold at the start; req/s is what the Node clients drove, not a capacity. Hit ratio from the responses' Cache-Status; offload = 1 − origin delivery requests / client requests.`,
      '',
      '| through | requests | req/s | hit ratio (requests) | hit ratio (bytes) | origin requests | origin offload | HIT p50 / p99 | MISS p50 / p99 | errors |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...zipf.map(
        (z) =>
          `| ${z.target} | ${f(z.requests)} | ${f(z.rps)} | **${pct(z.hitRatio)}** | ${pct(z.byteHitRatio)} | ${f(z.originRequests)} | **${pct(z.offload)}** | ${z.p50HitMs.toFixed(1)} / ${z.p99HitMs.toFixed(1)} ms | ${z.p50MissMs.toFixed(1)} / ${z.p99MissMs.toFixed(1)} ms | ${z.errors} |`,
      ),
      '',
    ].join('\n');
    fs.writeFileSync(path.join(OUT, 'report.md'), md);
    process.stdout.write(md);
    log(`wrote ${path.join(OUT, 'report.md')} and report.json in ${report.seconds} s`);
  } finally {
    await ref?.stop?.();
    await stack?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
