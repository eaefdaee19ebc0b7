/**
 * Purge latency across regions: one native stack of two regions of two edges, the
 * second region's edges following the purge stream from a Redis replica of their
 * own (as the aws target runs one per region), the first's from the primary. From
 * the purge API's 202 until each edge, queried directly, fetched the purged object
 * again, per region: the replica's figure beside the direct one, in one run.
 *
 *   npm run bench:purge      (writes bench/results/purge.md)
 *
 * Only 127.0.0.1 is targeted. On one machine the replica adds one replication hop
 * over loopback; between real regions add the network's round trip.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { git, percentile, uncommittedChanges } from './edge';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { REPO_ROOT } from '../test/support/nginx-lua';

const PURGES = 100;

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
export async function purgeLatencyThroughStack(existing?: UpResult, options: { regionalReplicas?: boolean; count?: number } = {}): Promise<StackPurgeLatency> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-stack-'));
  const stack = existing ?? (await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, regionalReplicas: options.regionalReplicas, detached: true }));
  const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const auth = { Authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  const perEdge: Record<string, number[]> = Object.fromEntries(stack.state.edges.map((e) => [e.id, []]));
  try {
    for (let i = 0; i < (options.count ?? PURGES); i++) {
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


async function main(): Promise<void> {
  const result = await purgeLatencyThroughStack(undefined, { regionalReplicas: true });
  const byRegion = (region: string) => Object.entries(result.perEdge).filter(([id]) => id.startsWith(`${region}-`)).flatMap(([, xs]) => xs);
  const row = (label: string, xs: number[]) => `| ${label} | ${xs.length} | ${percentile(xs, 50).toFixed(1)} | ${percentile(xs, 99).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;
  const lines = [
    '# Purge latency across regions',
    '',
    `Commit \`${git(['rev-parse', 'HEAD'])}\`${uncommittedChanges() ? ' (with uncommitted changes)' : ''}, ${new Date().toISOString()}, ${os.cpus().length} cores (${os.cpus()[0]?.model}).`,
    'Command: `npm run bench:purge`. One native stack, regions eu and us of two edges each; the us edges read the purge stream from',
    'a Redis replica of their own (a second redis-server replicating from the first over TLS; their acknowledgements go to the',
    "primary over TLS too), the eu edges from the primary. Each tag purge is",
    "timed from the purge API's 202 until each edge, queried directly, fetched the object again (milliseconds). Everything on 127.0.0.1:",
    "between real regions the replica's figure grows by the network's round trip.",
    '',
    '| edges | purges x edges | p50 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|',
    row('eu: from the primary (direct)', byRegion('eu')),
    row('us: from their regional replica', byRegion('us')),
    '',
    `Every edge: p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, max ${result.max.toFixed(1)} ms over ${result.count} purges.`,
    '',
  ];
  const out = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'purge.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
