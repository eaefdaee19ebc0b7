import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { CdnError } from '../../../infra/errors';
import { loadOriginConfig } from './origin-config';

const BASE = {
  CDN_STORAGE_PATH: '/var/lib/cdn',
  CDN_REDIS_URL: 'redis://127.0.0.1:6379',
  CDN_ADMIN_TOKEN: 'a-very-secret-token',
};

function configError(env: NodeJS.ProcessEnv): CdnError {
  try {
    loadOriginConfig(env, '/srv');
  } catch (err) {
    expect(err).toBeInstanceOf(CdnError);
    expect((err as CdnError).code).toBe('CDN_ERR_CONFIG_INVALID');
    return err as CdnError;
  }
  throw new Error('expected the configuration to be refused');
}

describe('loadOriginConfig', () => {
  test('applies the documented defaults', () => {
    const config = loadOriginConfig(BASE, '/srv');
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 3000,
      publicBaseUrl: 'http://127.0.0.1:3000',
      storage: { kind: 'filesystem', path: '/var/lib/cdn' },
      purge: { stream: 'cdn:purges', maxLen: 100000 },
      maxUploadBytes: 104857600,
      defaultCacheControl: 'public, max-age=3600',
    });
    expect(config.adminToken.reveal()).toBe('a-very-secret-token');
    expect(config.redis.url.reveal()).toBe('redis://127.0.0.1:6379');
  });

  test('reads every variable', () => {
    const config = loadOriginConfig(
      {
        ...BASE,
        CDN_ORIGIN_HOST: '0.0.0.0',
        CDN_ORIGIN_PORT: '8081',
        CDN_STORAGE_KIND: 'filesystem',
        CDN_STORAGE_PATH: 'data/storage',
        CDN_PUBLIC_BASE_URL: 'https://cdn.shop.example/',
        CDN_PURGE_STREAM: 'shop:purges',
        CDN_PURGE_STREAM_MAXLEN: '5000',
        CDN_MAX_UPLOAD_BYTES: '1048576',
        CDN_DEFAULT_CACHE_CONTROL: 'public, max-age=60',
      },
      '/srv',
    );
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 8081,
      publicBaseUrl: 'https://cdn.shop.example',
      storage: { kind: 'filesystem', path: '/srv/data/storage' },
      purge: { stream: 'shop:purges', maxLen: 5000 },
      maxUploadBytes: 1048576,
      defaultCacheControl: 'public, max-age=60',
    });
  });

  test('empty variables count as unset', () => {
    expect(loadOriginConfig({ ...BASE, CDN_ORIGIN_PORT: '', CDN_PUBLIC_BASE_URL: '' }, '/srv').port).toBe(3000);
  });

  test.each([
    ['CDN_ORIGIN_PORT', { CDN_ORIGIN_PORT: 'abc' }, /CDN_ORIGIN_PORT must be a positive integer \(got "abc"\)/],
    ['CDN_ORIGIN_PORT', { CDN_ORIGIN_PORT: '70000' }, /CDN_ORIGIN_PORT must be at most 65535/],
    ['CDN_ORIGIN_PORT', { CDN_ORIGIN_PORT: '0' }, /CDN_ORIGIN_PORT must be at least 1/],
    ['CDN_STORAGE_KIND', { CDN_STORAGE_KIND: 's3' }, /CDN_STORAGE_KIND must be "filesystem"/],
    ['CDN_STORAGE_PATH', { CDN_STORAGE_PATH: undefined }, /CDN_STORAGE_PATH is required/],
    ['CDN_REDIS_URL', { CDN_REDIS_URL: undefined }, /CDN_REDIS_URL is required/],
    ['CDN_REDIS_URL', { CDN_REDIS_URL: 'http://127.0.0.1:6379' }, /CDN_REDIS_URL must be a redis:\/\//],
    ['CDN_PUBLIC_BASE_URL', { CDN_PUBLIC_BASE_URL: 'cdn.example' }, /CDN_PUBLIC_BASE_URL must be an http\(s\) URL/],
    ['CDN_PURGE_STREAM_MAXLEN', { CDN_PURGE_STREAM_MAXLEN: '-5' }, /CDN_PURGE_STREAM_MAXLEN must be a positive integer/],
    ['CDN_MAX_UPLOAD_BYTES', { CDN_MAX_UPLOAD_BYTES: '1e6' }, /CDN_MAX_UPLOAD_BYTES must be a positive integer/],
    ['CDN_PURGE_STREAM', { CDN_PURGE_STREAM: 'has space' }, /CDN_PURGE_STREAM must be 1-256 printable/],
    ['CDN_ADMIN_TOKEN', { CDN_ADMIN_TOKEN: undefined }, /CDN_ADMIN_TOKEN or CDN_ADMIN_TOKEN_FILE is required/],
    ['CDN_ADMIN_TOKEN', { CDN_ADMIN_TOKEN_FILE: '/etc/token' }, /both set/],
  ])('a bad %s stops the boot with a message naming it', (variable, overrides, message) => {
    const err = configError({ ...BASE, ...overrides });
    expect(err.message).toMatch(message);
    expect(err.details).toEqual({ variable });
  });

  test('never echoes the token or the Redis URL (which may hold a password)', () => {
    const err = configError({ ...BASE, CDN_REDIS_URL: 'http://user:hunter2@redis:6379' });
    expect(err.message).not.toContain('hunter2');
    const token = configError({ ...BASE, CDN_ADMIN_TOKEN: 'bad token with spaces' });
    expect(token.message).not.toContain('bad token');
  });

  describe('CDN_ADMIN_TOKEN_FILE', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'cdn-config-test-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test('reads the token from the file, trimmed', () => {
      const file = join(dir, 'token');
      writeFileSync(file, '  from-a-file-0123\n');
      const config = loadOriginConfig({ ...BASE, CDN_ADMIN_TOKEN: undefined, CDN_ADMIN_TOKEN_FILE: file }, '/srv');
      expect(config.adminToken.reveal()).toBe('from-a-file-0123');
    });

    test('a missing or empty file is refused, naming the variable', () => {
      const missing = configError({ ...BASE, CDN_ADMIN_TOKEN: undefined, CDN_ADMIN_TOKEN_FILE: join(dir, 'nope') });
      expect(missing.message).toMatch(/CDN_ADMIN_TOKEN_FILE names a file that cannot be read .*ENOENT/);
      const file = join(dir, 'empty');
      writeFileSync(file, '\n');
      const empty = configError({ ...BASE, CDN_ADMIN_TOKEN: undefined, CDN_ADMIN_TOKEN_FILE: file });
      expect(empty.message).toMatch(/CDN_ADMIN_TOKEN_FILE gives an empty token/);
    });
  });

  test('secrets do not leak through JSON, String or inspect', () => {
    const config = loadOriginConfig(BASE, '/srv');
    const printed = [JSON.stringify(config), String(config.adminToken), inspect(config, { depth: 5 })].join('\n');
    expect(printed).not.toContain('a-very-secret-token');
    expect(printed).not.toContain('redis://127.0.0.1:6379');
    expect(printed).toContain('[redacted]');
  });
});
