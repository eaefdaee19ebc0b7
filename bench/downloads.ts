/**
 * Signed downloads benchmark (issue #19): what verifying a download token costs a
 * 100 KiB HIT, side by side in one run with the same object unprotected, on a native
 * stack's own edge (its rendered config, one worker), and the latency a use-limited
 * token adds (its Redis read and count).
 *
 *   npm run bench:downloads [-- --quick]
 *
 * HIT throughput: wrk against the edge (-t1 -c50, the headers the balancer sends), 3
 * rounds of 4 s rotating the order, medians, for
 *   plain       /plain/file.bin, no token (the same 100 KiB bytes)
 *   one token   /downloads/file.bin?<one token>, the same URL every time
 *   1000 tokens /downloads/file.bin?<one of 1,000 tokens>, a wrk script cycling them
 *               (each token verified once per worker, then its memo entry)
 *   1000 plain  /plain/file.bin?n=<1..1000>, the same script mechanism (wrk's Lua
 *               costs the machine's CPU too) and 1,000 distinct request signatures
 *               in the edge's memo, the fair reference for "1000 tokens"
 * Latency: 300 sequential GETs on one keep-alive connection, p50 / p99, for a token
 * without and with `uses`. Only 127.0.0.1 is ever targeted.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { up, type UpResult } from '../infra/targets/native/stack';
import { parseSpec } from '../infra/model/spec';
import { REPO_ROOT } from '../test/support/nginx-lua';
import { BALANCER_HEADERS, edgeTarget, warm, wrk, type Sample } from './edge';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 3;
const SECONDS = QUICK ? 2 : 4;
const TOKENS = 1000;
const LATENCY_REQUESTS = QUICK ? 100 : 300;
const OUT = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : path.join(REPO_ROOT, 'bench', 'results');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function signedUrl(stack: UpResult, token: string, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${stack.state.origin}/v1/signed-urls`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 201) throw new Error(`signing failed: ${res.status} ${await res.text()}`);
  const { url } = (await res.json()) as { url: string };
  return `${new URL(url).pathname}${new URL(url).search}`;
}

/** Sequential GETs on one kept-alive connection: milliseconds each. */
async function latencies(base: string, target: string, n: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const headers = Object.fromEntries(BALANCER_HEADERS.map((h) => h.split(': ')));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = process.hrtime.bigint();
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get(`${base}${target}`, { agent, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
    if (status !== 200) throw new Error(`${target}: ${status}`);
    out.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  agent.destroy();
  return out;
}

async function main(): Promise<void> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-bench-downloads-'));
  const scriptFile = path.join(stateDir, 'tokens.lua');
  const plainScript = path.join(stateDir, 'plain.lua');
  let stack: UpResult | undefined;
  try {
    stack = await up({ spec: parseSpec({ regions: [{ name: 'eu', edges: 1 }], downloads: { prefixes: ['/downloads/'] } }), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
    const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
    const body = randomBytes(100 * 1024);
    for (const key of ['downloads/file.bin', 'plain/file.bin']) {
      const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, { method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=3600' }, body });
      if (res.status !== 201) throw new Error(`upload ${key}: ${res.status}`);
    }
    const edge = stack.state.edges[0];
    const target = edgeTarget(edge.url, edge.pid);
    const tokens: string[] = [];
    for (let i = 0; i < TOKENS; i++) tokens.push(await signedUrl(stack, token, { key: 'downloads/file.bin', ttl: 3600 }));
    const limited = await signedUrl(stack, token, { key: 'downloads/file.bin', ttl: 3600, maxUses: 1000 });
    for (const p of ['/plain/file.bin', tokens[0]]) if (!(await warm(target, `${edge.url}${p}`))) throw new Error(`${p} never became a HIT`);
    const cycling = (paths: string[]) => `local paths = { ${paths.map((t) => JSON.stringify(t)).join(', ')} }\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n`;
    fs.writeFileSync(scriptFile, cycling(tokens));
    fs.writeFileSync(plainScript, cycling(tokens.map((_, i) => `/plain/file.bin?n=${i + 1}`)));

    const runs: Record<string, Sample[]> = { plain: [], 'one token': [], '1000 plain': [], '1000 tokens': [] };
    const order = Object.keys(runs);
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < order.length; k++) {
        const name = order[(k + round) % order.length];
        const sample =
          name === 'plain'
            ? wrk(`${edge.url}/plain/file.bin`, target.pid, SECONDS)
            : name === 'one token'
              ? wrk(`${edge.url}${tokens[0]}`, target.pid, SECONDS)
              : wrk(`${edge.url}/`, target.pid, SECONDS, name === '1000 plain' ? plainScript : scriptFile);
        if (sample.errors > 0) throw new Error(`${name}: ${sample.errors} non-2xx responses`);
        runs[name].push(sample);
      }
    }
    // each protected run against the unprotected run driven the same way
    const reference: Record<string, string> = { plain: 'plain', 'one token': 'plain', '1000 plain': '1000 plain', '1000 tokens': '1000 plain' };
    const rows = order.map((name) => {
      const rps = median(runs[name].map((s) => s.rps));
      const cpu = median(runs[name].map((s) => s.cpuUsPerRequest));
      const ratio = median(runs[name].map((s, i) => s.rps / runs[reference[name]][i].rps));
      return `| ${name} | ${Math.round(rps).toLocaleString('en')} | ${cpu.toFixed(1)} | **${ratio.toFixed(3)}** (${reference[name]}) | ${runs[name].map((s) => Math.round(s.rps).toLocaleString('en')).join(' / ')} |`;
    });

    const plainToken = await latencies(edge.url, tokens[1], LATENCY_REQUESTS);
    const counted = await latencies(edge.url, limited, LATENCY_REQUESTS);
    const lat = (xs: number[]) => `${percentile(xs, 50).toFixed(3)} / ${percentile(xs, 99).toFixed(3)}`;

    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim() !== '' ? '+dirty' : '';
    const md = `# Signed downloads benchmark

Command: \`npm run bench:downloads${QUICK ? ' -- --quick' : ''}\`. Commit \`${commit}${dirty}\`, ${new Date().toISOString()}. Machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB.

A native stack (one edge, one worker, its rendered config; \`downloads.prefixes: ['/downloads/']\`), one 100 KiB object uploaded twice through the origin API: under the protected prefix and outside it. HITs from the edge with wrk (-t1 -c50, ${SECONDS} s, the balancer's headers), ${ROUNDS} round(s) rotating the order, medians; CPU µs per request is the edge worker's utime + stime (/proc) over the run.

## HIT throughput: a token's cost (the bar: at least 0.95 of an unprotected HIT)

| HIT of 100 KiB | req/s | CPU µs / request | vs (median of per-round ratios) | every round |
|---|---:|---:|---:|---|
${rows.join('\n')}

"one token" repeats one URL (the token was verified on its first request, later ones check expiry and revocation only); "1000 tokens" cycles 1,000 tokens of the same object (wrk Lua script), so each worker verifies each token once (HMAC-SHA256, constant-time compare) and then finds it in the key memo.

## Latency: a use-limited token (${LATENCY_REQUESTS} sequential HITs on one kept-alive connection)

| token | p50 / p99 ms |
|---|---|
| without \`uses\` | ${lat(plainToken)} |
| with \`uses\` (Redis read before, count after) | ${lat(counted)} |

Added p50: **${(percentile(counted, 50) - percentile(plainToken, 50)).toFixed(3)} ms** (a Redis HMGET on the primary in the access phase; the count is written after the response, from a timer).
`;
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'downloads.md'), md);
    process.stdout.write(md);
  } finally {
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
