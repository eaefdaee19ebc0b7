// Benchmark of the origin (issue #3), run after `npm run build`:
//
//   node bench/origin-get.mjs [--rounds 5] [--duration 5] [--connections 32]
//
// 1. GET /{key} of a 100 KiB asset from the filesystem driver, against a bare Fastify
//    route streaming the same file, alternating the two in the same run (wrk on
//    127.0.0.1); medians and the ratio.
// 2. PUT of a 50 MiB body to a fresh origin: throughput and the process's peak RSS
//    (VmHWM) against its RSS before the upload.
// Writes bench/results/origin.md. Needs redis-server and wrk (Debian packages).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const ROUNDS = option('rounds', 5);
const DURATION = option('duration', 5);
const CONNECTIONS = option('connections', 32);
const TOKEN = 'bench-admin-token-0123456789';
const ASSET_BYTES = 100 * 1024;
const UPLOAD_BYTES = 50 * 1024 * 1024;

const children = [];
const work = mkdtempSync(join(tmpdir(), 'cdn-bench-origin-'));
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function start(command, argv, env = {}) {
  const child = spawn(command, argv, { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function waitFor(url) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

function stop(child) {
  return new Promise((done) => {
    if (child.exitCode !== null) return done();
    child.once('exit', done);
    child.kill('SIGTERM');
  });
}

async function startOrigin(redisPort, storage, env = {}) {
  const port = await freePort();
  const child = start(process.execPath, [join(ROOT, 'dist/origin/src/main.js')], {
    CDN_ORIGIN_PORT: String(port),
    CDN_STORAGE_PATH: storage,
    CDN_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    CDN_ADMIN_TOKEN: TOKEN,
    ...env,
  });
  await waitFor(`http://127.0.0.1:${port}/readyz`);
  return { child, port };
}

function upload(port, key, size, chunk = 64 * 1024) {
  return new Promise((done, fail) => {
    const block = randomBytes(chunk);
    const started = process.hrtime.bigint();
    const req = request(
      { host: '127.0.0.1', port, method: 'PUT', path: `/v1/assets/${key}`, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': String(size) } },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => done({ status: res.statusCode, body: JSON.parse(body), seconds: Number(process.hrtime.bigint() - started) / 1e9 }));
      },
    );
    req.on('error', fail);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(chunk, size - sent);
        sent += n;
        if (!req.write(n === chunk ? block : block.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

function wrk(url) {
  const out = execFileSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}s`, url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) throw new Error(`${url}: ${non2xx[1]} non-2xx responses`);
  return rps;
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function peakRss(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)[1]);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

// --- setup
const redisPort = await freePort();
start('/usr/bin/redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work]);
await new Promise((r) => setTimeout(r, 300));
const storage = join(work, 'storage');
const origin = await startOrigin(redisPort, storage);
const asset = await upload(origin.port, 'bench/asset-100k.bin', ASSET_BYTES);
if (asset.status !== 201) throw new Error(`upload failed: ${JSON.stringify(asset.body)}`);
const sha = asset.body.sha256;
const blob = join(storage, 'blobs', sha.slice(0, 2), sha);
const referencePort = await freePort();
const reference = start(process.execPath, [join(ROOT, 'bench/origin-reference-server.mjs'), String(referencePort), blob, 'application/octet-stream']);
await waitFor(`http://127.0.0.1:${referencePort}/bench/asset-100k.bin`);
const check = Buffer.from(await (await fetch(`http://127.0.0.1:${origin.port}/bench/asset-100k.bin`)).arrayBuffer());
if (createHash('sha256').update(check).digest('hex') !== sha) throw new Error('the origin served other bytes');

// --- GET: alternate which one goes first, so drift on the shared machine hits both
const originUrl = `http://127.0.0.1:${origin.port}/bench/asset-100k.bin`;
const referenceUrl = `http://127.0.0.1:${referencePort}/bench/asset-100k.bin`;
wrk(originUrl); // warm-up (JIT, page cache)
wrk(referenceUrl);
const rounds = [];
for (let i = 0; i < ROUNDS; i++) {
  const pair = i % 2 === 0 ? [['reference', referenceUrl], ['origin', originUrl]] : [['origin', originUrl], ['reference', referenceUrl]];
  const round = {};
  for (const [name, url] of pair) round[name] = wrk(url);
  rounds.push(round);
  process.stderr.write(`round ${i + 1}: reference ${round.reference.toFixed(0)} req/s, origin ${round.origin.toFixed(0)} req/s, ratio ${(round.origin / round.reference).toFixed(3)}\n`);
}
const medReference = median(rounds.map((r) => r.reference));
const medOrigin = median(rounds.map((r) => r.origin));
const medRatio = median(rounds.map((r) => r.origin / r.reference));
await stop(reference);
await stop(origin.child);

// --- 50 MiB upload on a fresh origin
const fresh = await startOrigin(redisPort, join(work, 'storage-upload'), { CDN_MAX_UPLOAD_BYTES: String(UPLOAD_BYTES * 5) });
const before = peakRss(fresh.child.pid);
const big = await upload(fresh.port, 'bench/upload-50m.bin', UPLOAD_BYTES);
if (big.status !== 201 || big.body.size !== UPLOAD_BYTES) throw new Error(`50 MiB upload failed: ${JSON.stringify(big.body)}`);
const after = peakRss(fresh.child.pid);
// Flat means independent of the body size: four times the body must not grow the peak.
const huge = await upload(fresh.port, 'bench/upload-200m.bin', UPLOAD_BYTES * 4);
if (huge.status !== 201) throw new Error(`200 MiB upload failed: ${JSON.stringify(huge.body)}`);
const afterHuge = peakRss(fresh.child.pid);
await stop(fresh.child);

// --- report
const mib = (bytes) => (bytes / 1024 / 1024).toFixed(1);
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
} catch {}
const dirty = (() => {
  try {
    return execFileSync('git', ['status', '--porcelain', '--', 'origin', 'bench'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
  } catch {
    return false;
  }
})();
const report = `# Origin benchmark

Measured ${new Date().toISOString()} on commit \`${commit}\`${dirty ? ' plus uncommitted changes to origin/ and bench/ (the issue #3 work before its commit)' : ''}.

Machine: ${cpus().length} CPUs (\`nproc\`), ${cpus()[0]?.model ?? 'unknown model'}, Node ${process.version}; shared with other work,
so the two servers are measured alternately in the same run and medians are reported.

Command: \`npm run build && node bench/origin-get.mjs --rounds ${ROUNDS} --duration ${DURATION} --connections ${CONNECTIONS}\`

## GET /{key}, 100 KiB, filesystem driver

\`wrk -t1 -c${CONNECTIONS} -d${DURATION}s\` on 127.0.0.1, one process each. Reference: a bare Fastify route streaming
the same blob file (\`bench/origin-reference-server.mjs\`). The origin runs as deployed (\`node dist/origin/src/main.js\`,
default config: metadata from disk, reused for at most 1 s, metrics, JSON access log at info).

| round | reference req/s | origin req/s | ratio |
|---|---|---|---|
${rounds.map((r, i) => `| ${i + 1} | ${r.reference.toFixed(0)} | ${r.origin.toFixed(0)} | ${(r.origin / r.reference).toFixed(3)} |`).join('\n')}
| **median** | **${medReference.toFixed(0)}** | **${medOrigin.toFixed(0)}** | **${medRatio.toFixed(3)}** |

Target: ratio >= 0.8. Result: **${medRatio >= 0.8 ? 'met' : 'NOT met'}** (median of per-round ratios ${medRatio.toFixed(3)}).

## PUT of 50 MiB (filesystem driver)

| | |
|---|---|
| throughput | ${(UPLOAD_BYTES / 1024 / 1024 / big.seconds).toFixed(1)} MiB/s (${big.seconds.toFixed(2)} s, sha256 + fsync included) |
| RSS before the upload | ${mib(before.rss)} MiB |
| peak RSS (VmHWM) after the upload | ${mib(after.hwm)} MiB |
| peak growth | ${mib(after.hwm - before.hwm)} MiB for a ${mib(UPLOAD_BYTES)} MiB body |
| then a ${mib(UPLOAD_BYTES * 4)} MiB upload, same process | ${(UPLOAD_BYTES * 4 / 1024 / 1024 / huge.seconds).toFixed(1)} MiB/s; peak RSS ${mib(afterHuge.hwm)} MiB (growth over the 50 MiB peak: ${mib(afterHuge.hwm - after.hwm)} MiB) |

The peak does not follow the body size: uploads stream to a temp file in 64 KiB chunks with
backpressure; the growth is the garbage of those chunks before V8 collects it.
`;
writeFileSync(join(ROOT, 'bench/results/origin.md'), report);
process.stdout.write(report);
process.exit(0);
