/**
 * The load scripts: the k6 scenarios type-check against @types/k6 (k6 itself is not
 * installed here, so they are never run), and the wrk storefront mix runs for a few
 * seconds against a native stack on 127.0.0.1 with purges during the run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../support/nginx-lua';

const K6 = path.join(REPO_ROOT, 'load', 'k6');
const TSC = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsc');

function tsc(project: string): { code: number | null; out: string } {
  const r = spawnSync(TSC, ['-p', project], { encoding: 'utf8', timeout: 60000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('k6 scripts (type-checked only: k6 is not installed here)', () => {
  test('every scenario type-checks with @types/k6, and each declares thresholds', () => {
    const r = tsc(path.join(K6, 'tsconfig.json'));
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
    for (const f of ['storefront.ts', 'flash-sale.ts', 'origin-outage.ts']) {
      const src = fs.readFileSync(path.join(K6, f), 'utf8');
      expect(src).toMatch(/thresholds:\s*\{/);
      expect(src).toContain('BASE_URL');
    }
  });

  test('a script that misuses the k6 API fails the check', () => {
    const dir = fs.mkdtempSync(path.join(K6, '.broken-'));
    try {
      fs.copyFileSync(path.join(K6, 'lib.ts'), path.join(dir, 'lib.ts'));
      fs.copyFileSync(path.join(K6, 'globals.d.ts'), path.join(dir, 'globals.d.ts'));
      const broken = fs.readFileSync(path.join(K6, 'storefront.ts'), 'utf8').replace("executor: 'constant-arrival-rate',", "executor: 'constant-arrival-rate', rate: 'fast',");
      fs.writeFileSync(path.join(dir, 'storefront.ts'), broken);
      fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../tsconfig.json', include: ['*.ts'] }));
      const r = tsc(path.join(dir, 'tsconfig.json'));
      expect(r.code).not.toBe(0);
      expect(r.out).toContain('storefront.ts');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('wrk storefront mix (load/load_tests.sh)', () => {
  let dir: string;
  const cdn = (args: string[]) => execFileSync(path.join(REPO_ROOT, 'bin', 'cdn'), args, { encoding: 'utf8', timeout: 90000, env: { ...process.env, CDN_ADMIN_TOKEN: '' } });
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-load-'));
    cdn(['local', 'up', '--detach', '--no-prometheus', '--state-dir', dir, '--regions', 'eu', '--edges-per-region', '2']);
  }, 120000);
  afterAll(() => {
    spawnSync(path.join(REPO_ROOT, 'bin', 'cdn'), ['local', 'down', '--state-dir', dir], { encoding: 'utf8' });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('seeds, loads for 4 s with purges, and reports a hit ratio the Zipf mix explains', () => {
    const r = spawnSync(path.join(REPO_ROOT, 'load', 'load_tests.sh'), ['--state-dir', dir, '--duration', '4s', '--connections', '8', '--threads', '1'], {
      encoding: 'utf8',
      timeout: 90000,
      env: { ...process.env, CDN_LOAD_IMAGES: '40', CDN_LOAD_BUNDLES: '10', PURGE_EVERY: '1' },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const ratio = Number(/hit ratio \(Cache-Status\): ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(1);
    expect(Number(/status 200: (\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(100);
    expect(r.stdout).toMatch(/status 404: \d+/);
    expect(Number(/purges during the run: \d+ sent, (\d+) accepted/.exec(r.stdout)?.[1])).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/errors: connect 0, read 0, write 0/);
  }, 120000);

  test('refuses a state directory without a stack, and a duration past the cap', () => {
    const none = spawnSync(path.join(REPO_ROOT, 'load', 'load_tests.sh'), ['--state-dir', path.join(dir, 'nothing')], { encoding: 'utf8', timeout: 30000 });
    expect(none.status).not.toBe(0);
    expect(none.stderr).toContain('no stack');
    const long = spawnSync(path.join(REPO_ROOT, 'load', 'load_tests.sh'), ['--state-dir', dir, '--duration', '3600s'], { encoding: 'utf8', timeout: 30000 });
    expect(long.status).not.toBe(0);
    expect(long.stderr).toContain('capped');
  });
});
