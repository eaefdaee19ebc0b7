// The cross-vendor HTTP cache test suite (http-cache-tests, the suite behind
// https://cache-tests.fyi) through the CDN as a shop runs it: a native stack with
// the default spec, the suite's own origin server as its external origin
// (`cdn local up --origin URL`), the suite's client pointed at the balancer.
//
//   npm run conformance            (after npm run build)
//   npm run conformance -- --id freshness-max-age      one test, with its dump
//   npm run conformance -- --out DIR                   results elsewhere
//   npm run conformance -- --strict                    with the options for RFC 9111
//                                                      to the letter (STRICT), into
//                                                      conformance-strict.md
//
// Writes bench/results/conformance.md (the score, and every required test that
// fails with the suite's reason) and bench/results/conformance.json (the raw
// results, as the suite's own CLI prints them). Only 127.0.0.1 is used.
//
// Also imported by test/conformance.test.ts (npm test), which fails when a test
// listed as passing in test/conformance-passing.json no longer passes.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SUITE = dirname(createRequire(import.meta.url).resolve('http-cache-tests/package.json'));
const SUITE_VERSION = createRequire(import.meta.url)('http-cache-tests/package.json').version;

/**
 * The spec options that trade the CDN's defaults for RFC 9111 to the letter
 * (docs/edge.md): `--strict` runs the suite with them, to show what the defaults
 * cost.
 */
export const STRICT = { staleWhileUpdating: false, minStaleWhileRevalidate: 0, max5xxTtl: 31536000, storeSetCookie: true };

/** The suite's origin server on a free port; resolves once it listens. */
async function startSuiteOrigin(dir) {
  const { freePort } = await import(pathToFileURL(join(ROOT, 'dist/infra/targets/native/ports.js')).href);
  const port = await freePort();
  const child = spawn(process.execPath, ['server/server.mjs'], {
    cwd: SUITE,
    env: { ...process.env, npm_config_protocol: 'http', npm_config_port: String(port), npm_config_pidfile: join(dir, 'suite-origin.pid') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the suite's origin did not start:\n${output}`)), 10000);
    const seen = (d) => {
      output += d.toString();
      if (output.includes('Listening on')) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.once('exit', (code) => rej(new Error(`the suite's origin exited (${code}):\n${output}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

/** The suite's CLI against `base`: its JSON results (or, with `id`, its dump of one test). */
function runSuiteClient(base, id = '') {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--no-warnings', 'cli.mjs'], {
      cwd: SUITE,
      env: { ...process.env, npm_config_base: base, npm_config_id: id, npm_package_config_id: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? res(out) : rej(new Error(`the suite's client exited ${code}`))));
  });
}

/** The suites the CLI runs (its index plus surrogate-control). */
export async function suites() {
  const index = (await import(pathToFileURL(join(SUITE, 'tests/index.mjs')).href)).default;
  const surrogate = (await import(pathToFileURL(join(SUITE, 'tests/surrogate-control.mjs')).href)).default;
  return [...index, surrogate];
}

/**
 * What cache-tests.fyi shows for one test (lib/display.mjs determineTestResult,
 * which needs a browser to import): pass, fail, optimal_fail, yes, no, setup_fail,
 * retry, dependency_fail or untested.
 */
export function classify(all, id, results) {
  const test = all.get(id);
  const result = results[id];
  if (result === undefined) return 'untested';
  for (const dependency of test.depends_on ?? []) {
    if (!['pass', 'yes'].includes(classify(all, dependency, results))) return 'dependency_fail';
  }
  if (Array.isArray(result) && result[0] === 'Setup') return result[1] === 'retry' ? 'retry' : 'setup_fail';
  const kind = test.kind ?? 'required';
  if (kind === 'check') return result === true ? 'yes' : 'no';
  if (result === true) return 'pass';
  return kind === 'optimal' ? 'optimal_fail' : 'fail';
}

/**
 * The suite's origin and a native stack in front of it (the default spec, with
 * STRICT's cache options when `strict`), for `fn(balancerUrl, originUrl)`; both
 * are stopped afterwards.
 */
async function withStack(strict, fn) {
  const dir = mkdtempSync(join(tmpdir(), 'cdn-conformance-'));
  const { up } = await import(pathToFileURL(join(ROOT, 'dist/infra/targets/native/stack.js')).href);
  const { parseSpec } = await import(pathToFileURL(join(ROOT, 'dist/infra/model/spec.js')).href);
  const origin = await startSuiteOrigin(dir);
  let stack;
  try {
    stack = await up({ spec: parseSpec({ origins: [{ match: '*', url: origin.url }], ...(strict ? { cache: STRICT } : {}) }), stateDir: join(dir, 'stack'), repoRoot: ROOT, prometheus: false, detached: true });
    return await fn(stack.state.balancer, origin.url);
  } finally {
    await stack?.stop();
    origin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the suite through a fresh native stack; returns the raw results and, per
 * test, its suite, kind, name, classification and the suite's reason.
 */
export async function runConformance({ log = (s) => process.stderr.write(`${s}\n`), strict = false } = {}) {
  return withStack(strict, async (balancer, origin) => {
    log(`conformance: http-cache-tests ${SUITE_VERSION} through ${balancer} (the suite's origin at ${origin})`);
    const started = Date.now();
    const raw = JSON.parse(await runSuiteClient(balancer));
    const all = new Map();
    const suiteOf = new Map();
    for (const suite of await suites()) {
      for (const test of suite.tests) {
        all.set(test.id, test);
        suiteOf.set(test.id, suite.name);
      }
    }
    const tests = [...all.values()].map((t) => ({
      id: t.id,
      suite: suiteOf.get(t.id),
      kind: t.kind ?? 'required',
      name: t.name,
      result: classify(all, t.id, raw),
      reason: Array.isArray(raw[t.id]) ? raw[t.id].slice(0, 2).join(': ') : undefined,
    }));
    return { suiteVersion: SUITE_VERSION, seconds: Math.round((Date.now() - started) / 1000), raw, tests };
  });
}

/**
 * The figures cache-tests.fyi publishes: required and optimal tests of the suite's
 * index (160 required in 0.4.5); the Surrogate-Control suite, which the CLI also
 * runs, is counted apart.
 */
export function score(tests) {
  const count = (kind, ok, surrogate = false) => tests.filter((t) => t.kind === kind && (t.suite === 'Surrogate-Control') === surrogate && ok(t.result)).length;
  const pass = (r) => r === 'pass';
  const any = () => true;
  return {
    required: { passed: count('required', pass), of: count('required', any) },
    optimal: { passed: count('optimal', pass), of: count('optimal', any) },
    surrogate: { passed: count('required', pass, true) + count('optimal', pass, true), of: count('required', any, true) + count('optimal', any, true) },
  };
}

/** Why a test does not pass, where the cause is known (the report's last column). */
const CAUSES = [
  [/^(freshness-max-age-s-maxage-private|cc-resp-immutable-stale)/, 'not run: a test for private (browser) caches'],
  [/^stale-close-/, "no cache that refuses stale use can pass it as written: the CDN answers 502 (the directive forbids the stale copy; edge/caching.test.ts checks it), but the suite's origin closes the connection, so the answer has no Server-Request-Count, and the client (client/test.mjs) reads a missing count as \"from cache\""],
  [/^status-5\d\d-stale$|^status-599-must-understand$/, 'cache.store5xx: false (5xx responses are not stored)'],
  [/^304-etag-update-response-(Test-Header|X-Test-Header|Content-Foo|X-Content-Foo|Content-Location|Content-Security-Policy|Content-Type|Clear-Site-Data|Expires|Public-Key-Pins|Set-Cookie2|X-Frame-Options|X-XSS-Protection)$/, 'cache.minStaleWhileRevalidate above 0: the request comes about a second after expiry and gets the stored copy while the 304 is fetched'],
  [/Set-Cookie$/, 'default policy: a response that sets a cookie is not stored (a shared cache would hand one shopper\'s cookie to the next; cache.storeSetCookie: true stores it, --strict passes)'],
  [/^age-parse-prefix$/, 'the suite contradicts itself: this test\'s title says an Age of "0, old" is stale but its check expects a HIT for "0,7200", while age-parse-dup-0 expects "0, 0" to be stale. Age is one delta-seconds (RFC 9111 §5.1), so the edge takes any list as invalid: stale'],
];

function cause(id) {
  return CAUSES.find(([re]) => re.test(id))?.[1] ?? '';
}

function report(run, commit, strict, name) {
  const s = score(run.tests);
  const surrogate = (t) => t.suite === 'Surrogate-Control';
  const failing = run.tests.filter((t) => t.kind === 'required' && !surrogate(t) && t.result !== 'pass');
  const failingSurrogate = run.tests.filter((t) => surrogate(t) && t.result !== 'pass');
  const optimal = run.tests.filter((t) => t.kind === 'optimal' && !surrogate(t) && t.result !== 'pass');
  const row = (t) => `| \`${t.id}\` | ${t.suite} | ${t.name.replace(/\|/g, '\\|')} | ${t.result} | ${(t.reason ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} | ${cause(t.id)} |`;
  return [
    '# HTTP cache conformance',
    '',
    `Commit \`${commit}\`, ${new Date().toISOString()}. Command: \`npm run conformance\`. [http-cache-tests](https://github.com/http-tests/cache-tests) ${run.suiteVersion} (the suite behind cache-tests.fyi), its client pointed at the balancer of a native stack with ${strict ? `the default spec but for \`cache: ${JSON.stringify(STRICT)}\` (--strict)` : 'the default spec'}, whose only external origin (\`*\`) is the suite's own server; ${run.seconds} s.`,
    '',
    `**Required: ${s.required.passed} of ${s.required.of}.** Optimal: ${s.optimal.passed} of ${s.optimal.of}. Surrogate-Control (run by the suite's CLI, not part of those figures): ${s.surrogate.passed} of ${s.surrogate.of}.`,
    '',
    'Published figures for the required tests (cache-tests.fyi): Apache Traffic Server 132, Apache httpd 131, Squid 122, Varnish 119, nginx 99, Fastly 96.',
    '',
    'What no shared cache gets: 3 of the 160 are for private (browser) caches and are not run; 4 (`stale-close-*`) cannot pass as the client is written, and 1 (`age-parse-prefix`) contradicts `age-parse-dup-0` (see their causes below). The 2 `Set-Cookie` tests fail by policy. That puts the ceiling of the default stack at 150.',
    '',
    `## Required tests that do not pass (${failing.length})`,
    '',
    '| test | suite | what it checks | result | the suite\'s reason | cause |',
    '|---|---|---|---|---|---|',
    ...failing.map(row),
    '',
    `## Optimal tests that do not pass (${optimal.length})`,
    '',
    '| test | suite | what it checks | result | the suite\'s reason | cause |',
    '|---|---|---|---|---|---|',
    ...optimal.map(row),
    '',
    `## Surrogate-Control tests that do not pass (${failingSurrogate.length})`,
    '',
    '| test | suite | what it checks | result | the suite\'s reason | cause |',
    '|---|---|---|---|---|---|',
    ...failingSurrogate.map(row),
    '',
    `Raw results: [\`${name}.json\`](${name}.json) (test id -> true, or [kind, reason]); per test, its classification: [\`${name}-tests.json\`](${name}-tests.json).`,
    '',
  ].join('\n');
}

async function main() {
  const args = process.argv.slice(2);
  const idAt = args.indexOf('--id');
  const strict = args.includes('--strict');
  if (idAt >= 0) {
    // one test, with the suite's request/response dump (through its own CLI)
    process.stdout.write(await withStack(strict, (balancer) => runSuiteClient(balancer, args[idAt + 1])));
    return;
  }
  const run = await runConformance({ strict });
  const { execFileSync } = await import('node:child_process');
  const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? resolve(args[outAt + 1]) : join(ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  // per test: its classification (what test/conformance.test.ts compares)
  const name = `conformance${strict ? '-strict' : ''}`;
  writeFileSync(join(out, `${name}-tests.json`), JSON.stringify(Object.fromEntries(run.tests.map((t) => [t.id, t.result])), null, 2) + '\n');
  writeFileSync(join(out, `${name}.json`), JSON.stringify(run.raw, null, 2) + '\n');
  const md = report(run, commit, strict, name);
  writeFileSync(join(out, `${name}.md`), md);
  const s = score(run.tests);
  process.stdout.write(`required ${s.required.passed}/${s.required.of}, optimal ${s.optimal.passed}/${s.optimal.of}, surrogate ${s.surrogate.passed}/${s.surrogate.of}; wrote ${join(out, `${name}.md`)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`conformance failed: ${err.stack ?? err}\n`);
    process.exit(1);
  });
}
