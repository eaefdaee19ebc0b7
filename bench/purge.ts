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
import { git, percentile, purgeLatencyThroughStack, uncommittedChanges } from './edge';
import { REPO_ROOT } from '../test/support/nginx-lua';

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

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
