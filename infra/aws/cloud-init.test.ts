import { renderRedisAuth } from '../redis';
import { renderBootstrap, renderSystemdUnit, shq, systemdWord, type HostPlan } from './cloud-init';
import type { ServiceUnit } from '../units';

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

  const unit: ServiceUnit = {
    name: 'redis',
    role: 'redis',
    packages: ['redis-server'],
    dir: '/etc/cdn/redis',
    dirs: ['data'],
    files: [],
    command: ['/usr/bin/redis-server', '/etc/cdn/redis/redis.conf'],
    env: {},
    health: { kind: 'redis', host: '10.0.0.1', port: 6379 },
    url: null,
    dependsOn: [],
  };

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

describe('Redis password file', () => {
  test('holds a quoted requirepass line', () => {
    expect(renderRedisAuth('A'.repeat(32))).toBe(`requirepass "${'A'.repeat(32)}"\n`);
  });

  test.each([['short'], ['has space in it ok ok'], ['quote"quote"quote"1'], ['back\\slash\\back\\slash']])('refuses %j', (pw) => {
    expect(() => renderRedisAuth(pw)).toThrow(/Redis password must be/);
  });
});
