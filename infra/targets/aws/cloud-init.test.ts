import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { renderRedisAuth } from '../../render/redis';
import { GRAFANA_APT, renderBootstrap, renderSystemdUnit, shq, systemdWord, type HostPlan } from './cloud-init';
import type { ServiceUnit } from '../../units/units';

const unit: ServiceUnit = {
  name: 'redis',
  role: 'redis',
  packages: ['redis-server'],
  group: 'redis',
  trees: [],
  user: 'redis',
  secrets: [],
  volumes: ['data'],
  reads: [],
  hostPaths: [],
  accepts: [],
  dir: '/etc/cdn/redis',
  dirs: ['data'],
  files: [],
  command: ['/usr/bin/redis-server', '/etc/cdn/redis/redis.conf'],
  env: {},
  health: { kind: 'redis', host: '10.0.0.1', port: 6379 },
  url: null,
  dependsOn: [],
};

describe('cloud-init rendering', () => {
  test('systemd words escape what systemd would expand or split', () => {
    expect(systemdWord('/usr/sbin/nginx')).toBe('/usr/sbin/nginx');
    expect(systemdWord('daemon off;')).toBe('"daemon off;"');
    expect(systemdWord('100%')).toBe('100%%');
    expect(systemdWord('KEY=$HOME')).toBe('KEY=$$HOME');
    expect(systemdWord('say "hi"')).toBe('"say \\"hi\\""');
  });

  test('shell words are quoted only when needed, single quotes survive', () => {
    expect(shq('https://git.example/shop.git')).toBe('https://git.example/shop.git');
    expect(shq("it's; rm -rf /")).toBe("'it'\\''s; rm -rf /'");
  });


  test('a systemd unit runs as its role\'s user through run-unit.sh and restarts on failure', () => {
    const text = renderSystemdUnit(unit);
    expect(text).toContain('ExecStart=/opt/cdn/scripts/run-unit.sh /usr/bin/redis-server /etc/cdn/redis/redis.conf');
    expect(text).toContain('Environment=CDN_RUN_AS=redis');
    expect(text).toContain('Environment=CDN_UNIT_DIRS=data');
    expect(text).toContain('Restart=always');
  });

  test('bootstrap stops on the first failing step and masks the packages\' own services', () => {
    const host: HostPlan = { roles: ['redis'], units: [unit], files: [], source: { repository: 'r', ref: 'main' }, containers: [], prepare: [] };
    const script = renderBootstrap(host);
    expect(script.split('\n').slice(0, 3)).toEqual(['#!/bin/bash', expect.stringContaining('Rendered'), 'set -euo pipefail']);
    expect(script).toContain('systemctl mask --now nginx.service redis-server.service prometheus.service');
    expect(script.indexOf('setup.sh --system --role redis')).toBeLessThan(script.indexOf('systemctl enable --now cdn-redis.service'));
  });
});

describe('Alloy\'s repository key check (run with gpg on keys made here)', () => {
  const host: HostPlan = { roles: [], units: [], files: [], source: { repository: 'r', ref: 'main' }, containers: [], prepare: [], logShipper: { version: '1.10.2', unit: { ...unit, name: 'alloy', role: 'log-shipper', image: 'alloy', env: { CDN_LOKI_PUSH_URL: 'http://10.0.0.9:3100/loki/api/v1/push' } } } };
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-gpg-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A fresh signing key, exported as apt.grafana.com serves its own; returns its fingerprint. */
  function makeKey(name: string, file: string): string {
    const home = fs.mkdtempSync(path.join(dir, 'home-'));
    const env = { ...process.env, GNUPGHOME: home };
    execFileSync('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', `${name} <${name}@shop-cdn.invalid>`, 'ed25519', 'sign', 'never'], { env, stdio: 'pipe' });
    fs.writeFileSync(file, execFileSync('gpg', ['--armor', '--export'], { env, stdio: 'pipe' }));
    return /^fpr:+([0-9A-F]{40}):/m.exec(execFileSync('gpg', ['--with-colons', '--fingerprint'], { env, encoding: 'utf8', stdio: 'pipe' }))![1];
  }

  /** The bootstrap's lines from the fingerprint check on, up to the keyring, run on `keyFile`. */
  function runCheck(keyFile: string, fingerprint: string): { status: number | null; stderr: string } {
    const lines = renderBootstrap(host).split('\n');
    const from = lines.findIndex((l) => l.startsWith('gnupghome='));
    const script = lines
      .slice(from, from + 4)
      .join('\n')
      .replaceAll('/tmp/grafana.key', keyFile)
      .replaceAll(GRAFANA_APT.fingerprint, fingerprint);
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  }

  test('the key with the pinned fingerprint passes; any other key stops the boot', () => {
    const good = path.join(dir, 'good.asc');
    const fingerprint = makeKey('good', good);
    expect(runCheck(good, fingerprint)).toEqual({ status: 0, stderr: '' });
    const other = path.join(dir, 'other.asc');
    const otherFingerprint = makeKey('other', other);
    const refused = runCheck(other, fingerprint);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`apt.grafana.com key is ${otherFingerprint}, expected ${fingerprint}`);
    // a file with both keys is refused too: signed-by would trust every key in it
    fs.writeFileSync(path.join(dir, 'both.asc'), Buffer.concat([fs.readFileSync(good), fs.readFileSync(other)]));
    expect(runCheck(path.join(dir, 'both.asc'), fingerprint).status).toBe(1);
  });

  test('Alloy is best effort: a failed install warns and the boot goes on, without starting it', () => {
    const script = renderBootstrap(host);
    const lines = script.split('\n');
    const open = lines.indexOf('(');
    const close = lines.findIndex((l) => l.startsWith(') || echo "warning: Grafana Alloy was not installed'));
    expect(open).toBeGreaterThan(-1);
    expect(close).toBeGreaterThan(open);
    expect(lines.findIndex((l) => l.startsWith('gnupghome='))).toBeGreaterThan(open);
    expect(lines.findIndex((l) => l.startsWith('apt-get install -y -qq --no-install-recommends alloy='))).toBeLessThan(close);
    // the same shape, run: a failing step inside stops only the block
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', ['(', 'false', 'exit 1', lines[close], 'echo booted'].join('\n')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('booted\n');
    expect(r.stderr).toContain('warning: Grafana Alloy was not installed');
    expect(script).toContain('[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service');
  });

  test('the pinned fingerprint is a full 40-digit one', () => {
    expect(GRAFANA_APT.fingerprint).toMatch(/^[0-9A-F]{40}$/);
  });
});

describe('Redis password file', () => {
  test('holds a quoted requirepass line', () => {
    expect(renderRedisAuth('A'.repeat(32))).toBe(`requirepass "${'A'.repeat(32)}"\nmasterauth "${'A'.repeat(32)}"\n`);
  });

  test.each([['short'], ['has space in it ok ok'], ['quote"quote"quote"1'], ['back\\slash\\back\\slash']])('refuses %j', (pw) => {
    expect(() => renderRedisAuth(pw)).toThrow(/Redis password must be/);
  });
});
