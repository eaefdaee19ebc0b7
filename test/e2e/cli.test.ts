/** The `cdn` command as a user runs it: bin/cdn in a child process, real services. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { isAlive } from '../../infra/targets/native/supervisor';
import { get } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

const CDN = path.join(REPO_ROOT, 'bin', 'cdn');

function cdn(args: string[], timeoutMs = 90000) {
  const r = spawnSync(CDN, args, { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, CDN_ADMIN_TOKEN: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-cli-'));
});
afterEach(() => {
  spawnSync(CDN, ['local', 'down', '--state-dir', dir], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('cdn local', () => {
  test('up --detach is healthy in under 60 s; status --json describes it; down stops every process', async () => {
    const started = Date.now();
    const upRun = cdn(['local', 'up', '--detach', '--state-dir', dir]);
    const seconds = (Date.now() - started) / 1000;
    expect(upRun.stderr).toBe('');
    expect(upRun.code).toBe(0);
    expect(seconds).toBeLessThan(60);
    expect(upRun.stdout).toContain('The CDN is up');

    const status = cdn(['local', 'status', '--json', '--state-dir', dir]);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s).toEqual(
      expect.objectContaining({
        balancer: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        origin: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        redis: expect.stringMatching(/^redis:\/\/127\.0\.0\.1:\d+$/),
        adminTokenFile: path.join(dir, 'admin-token'),
      }),
    );
    expect(s.prometheus === null || /^http:\/\/127\.0\.0\.1:\d+$/.test(s.prometheus)).toBe(true);
    expect(s.edges).toHaveLength(4);
    for (const e of s.edges) expect(Object.keys(e).sort()).toEqual(['id', 'pid', 'region', 'url']);
    expect(new Set(s.edges.map((e: { region: string }) => e.region))).toEqual(new Set(['eu', 'us']));
    const names = s.services.map((x: { name: string }) => x.name);
    expect(names).toEqual(expect.arrayContaining(['redis', 'origin', 'edge-eu-1', 'edge-us-2', 'balancer']));
    for (const svc of s.services) {
      expect(svc.running).toBe(true);
      expect(typeof svc.pid).toBe('number');
    }
    expect((await get(`${s.balancer}/nothing`)).status).toBe(404);
    if (s.prometheus) {
      // Prometheus scrapes every edge of the stack
      const targets = await waitForTargets(s.prometheus, 4 + 2);
      expect(targets.filter((t) => t.job === 'edge').map((t) => t.edge).sort()).toEqual(['eu-1', 'eu-2', 'us-1', 'us-2']);
    }

    const again = cdn(['local', 'up', '--detach', '--state-dir', dir]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('already running');

    const down = cdn(['local', 'down', '--state-dir', dir]);
    expect(down.code).toBe(0);
    for (const svc of s.services) expect(isAlive(svc.pid)).toBe(false);
    expect(cdn(['local', 'status', '--state-dir', dir]).code).not.toBe(0);
  }, 120000);

  test('foreground up stops everything cleanly on Ctrl-C (SIGINT)', async () => {
    const child = spawn(CDN, ['local', 'up', '--state-dir', dir, '--no-prometheus', '--regions', 'eu', '--edges-per-region', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const ready = await new Promise<boolean>((resolve) => {
      const t = setInterval(() => {
        if (out.includes('Press Ctrl-C')) {
          clearInterval(t);
          resolve(true);
        }
        if (child.exitCode !== null) {
          clearInterval(t);
          resolve(false);
        }
      }, 50);
    });
    expect(out).toContain('Press Ctrl-C');
    expect(ready).toBe(true);
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exit).toBe(0);
    for (const svc of state.services) expect(isAlive(svc.pid)).toBe(false);
    expect(fs.existsSync(path.join(dir, 'state.json'))).toBe(false);
  }, 120000);

  test('bad flags and a busy port give one clear message and a non-zero exit', async () => {
    const bad = cdn(['local', 'up', '--state-dir', dir, '--edges-per-region', 'lots']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--edges-per-region expects a whole number from 1 to 64');
    const badRegion = cdn(['local', 'up', '--state-dir', dir, '--regions', 'EU']);
    expect(badRegion.code).not.toBe(0);
    expect(badRegion.stderr).toContain('regions[0].name');
    const unknown = cdn(['local', 'sideways']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('cdn: error:');

    const busy = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => busy.once('listening', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = cdn(['local', 'up', '--state-dir', dir, '--port', String(port)]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`127.0.0.1:${port} (balancer) is in use`);
    } finally {
      busy.close();
    }
  });

  test('status and down on a directory with no stack say so and exit non-zero', () => {
    const r = cdn(['local', 'down', '--state-dir', dir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('No stack is running in this state directory');
  });
});

async function waitForTargets(prometheus: string, count: number): Promise<{ job: string; edge?: string; health: string }[]> {
  const deadline = Date.now() + 20000;
  let targets: { job: string; edge?: string; health: string }[] = [];
  while (Date.now() < deadline) {
    const r = await fetch(`${prometheus}/api/v1/targets`);
    const body = (await r.json()) as { data: { activeTargets: { labels: Record<string, string>; health: string }[] } };
    targets = body.data.activeTargets.map((t) => ({ job: t.labels.job, edge: t.labels.edge, health: t.health }));
    if (targets.length >= count && targets.every((t) => t.health === 'up')) return targets;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`Prometheus targets not all up: ${JSON.stringify(targets)}`);
}
