/**
 * The HTTP cache conformance suite (npm run conformance: http-cache-tests, the
 * suite behind cache-tests.fyi) in npm test: the whole suite, about 25 s, through
 * a native stack with the default spec, compared with test/conformance-passing.json,
 * the tests that passed in each of three runs when it was last written. Fails when
 * one of them no longer passes. Left out of that list: tests whose result varied
 * between runs, and the invalidation of Location / Content-Location targets, which
 * passes only when the target and the written URL share a home edge (the suite's
 * URLs are random: docs/edge.md, Invalidation).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './support/nginx-lua';

test('every conformance test that passed before still passes', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-conformance-test-'));
  try {
    execFileSync(process.execPath, [path.join(REPO_ROOT, 'bench', 'conformance.mjs'), '--out', out], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'], timeout: 240000 });
    const results = JSON.parse(fs.readFileSync(path.join(out, 'conformance-tests.json'), 'utf8')) as Record<string, string>;
    const passing = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test', 'conformance-passing.json'), 'utf8')) as string[];
    expect(passing.length).toBeGreaterThan(150);
    expect(passing.filter((id) => results[id] !== 'pass').map((id) => `${id}: ${results[id]}`)).toEqual([]);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 300000);
