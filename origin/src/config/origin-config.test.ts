import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { CdnError } from '../../../infra/model/errors';
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
    ['CDN_STORAGE_KIND', { CDN_STORAGE_KIND: 'ftp' }, /CDN_STORAGE_KIND must be "filesystem" or "s3"/],
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

describe('issue #3 variables', () => {
  let dir: string;
  const file = (name: string, content: string): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cdn-config-3-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('S3 storage reads endpoint, bucket, region and the key files (trimmed, redacted)', () => {
    const config = loadOriginConfig(
      {
        ...BASE,
        CDN_STORAGE_PATH: undefined,
        CDN_STORAGE_KIND: 's3',
        CDN_S3_ENDPOINT: 'http://minio:9000',
        CDN_S3_BUCKET: 'shop-assets',
        CDN_S3_REGION: 'eu-central-1',
        CDN_S3_ACCESS_KEY_FILE: file('ak', 'AKIAEXAMPLE\n'),
        CDN_S3_SECRET_KEY_FILE: file('sk', 'sekret-value\n'),
      },
      '/srv',
    );
    expect(config.storage).toMatchObject({ kind: 's3', endpoint: 'http://minio:9000', bucket: 'shop-assets', region: 'eu-central-1', partSize: 8 * 1024 * 1024 });
    if (config.storage.kind !== 's3') throw new Error('expected s3');
    expect(config.storage.secretKey.reveal()).toBe('sekret-value');
    expect(inspect(config, { depth: 5 })).not.toContain('sekret-value');
  });

  test.each([
    ['CDN_S3_ENDPOINT', {}],
    ['CDN_S3_BUCKET', { CDN_S3_ENDPOINT: 'http://minio:9000' }],
    ['CDN_S3_ACCESS_KEY_FILE', { CDN_S3_ENDPOINT: 'http://minio:9000', CDN_S3_BUCKET: 'b-1' }],
  ])('S3 storage without %s is refused, naming it', (variable, extra) => {
    const err = configError({ ...BASE, CDN_STORAGE_KIND: 's3', ...extra });
    expect(err.details).toEqual({ variable });
  });

  test('CDN_S3_PART_SIZE under 5 MiB and CDN_MAX_UPLOAD_BYTES over 5 GiB with S3 are refused', () => {
    const s3 = {
      ...BASE,
      CDN_STORAGE_KIND: 's3',
      CDN_S3_ENDPOINT: 'http://minio:9000',
      CDN_S3_BUCKET: 'b-1',
      CDN_S3_ACCESS_KEY_FILE: file('ak2', 'a'),
      CDN_S3_SECRET_KEY_FILE: file('sk2', 'b'),
    };
    expect(configError({ ...s3, CDN_S3_PART_SIZE: '1024' }).details).toEqual({ variable: 'CDN_S3_PART_SIZE' });
    expect(configError({ ...s3, CDN_MAX_UPLOAD_BYTES: String(6 * 1024 ** 3) }).details).toEqual({ variable: 'CDN_MAX_UPLOAD_BYTES' });
  });

  test('CDN_REDIS_PASSWORD_FILE and CDN_EDGE_IDS', () => {
    const config = loadOriginConfig({ ...BASE, CDN_REDIS_PASSWORD_FILE: file('rp', 'redis-pass\n'), CDN_EDGE_IDS: 'eu-1,eu-2,us-1' }, '/srv');
    expect(config.redis.password?.reveal()).toBe('redis-pass');
    expect(config.purge.edgeIds).toEqual(['eu-1', 'eu-2', 'us-1']);
    expect(configError({ ...BASE, CDN_EDGE_IDS: 'eu-1,,us 1' }).details).toEqual({ variable: 'CDN_EDGE_IDS' });
    expect(configError({ ...BASE, CDN_REDIS_PASSWORD_FILE: join(dir, 'missing') }).message).toMatch(/CDN_REDIS_PASSWORD_FILE names a file that cannot be read/);
  });

  test('CDN_TOKENS_FILE: tokens with scopes after the admin token', () => {
    const tokens = file('tokens.json', JSON.stringify([{ name: 'catalogue', token: 'catalogue-token-0123', scopes: ['upload'] }]));
    const config = loadOriginConfig({ ...BASE, CDN_TOKENS_FILE: tokens }, '/srv');
    expect(config.tokens.map((t) => [t.name, t.scopes])).toEqual([
      ['admin', ['admin']],
      ['catalogue', ['upload']],
    ]);
  });

  test.each([
    ['not JSON', '{', /is not valid JSON/],
    ['an unknown scope', JSON.stringify([{ name: 'a', token: 'x'.repeat(20), scopes: ['delete'] }]), /\[0\]\.scopes\.0 must be "upload", "purge" or "admin"|scopes/],
    ['a short token', JSON.stringify([{ name: 'a', token: 'short', scopes: ['upload'] }]), /token must be 16-512/],
    ['a duplicate name', JSON.stringify([{ name: 'admin', token: 'x'.repeat(20), scopes: ['upload'] }]), /uses the name "admin" twice/],
    ['an unknown field', JSON.stringify([{ name: 'a', token: 'x'.repeat(20), scopes: ['upload'], extra: 1 }]), /extra|Unrecognized/i],
  ])('CDN_TOKENS_FILE with %s is refused without echoing a token', (_name, content, message) => {
    const err = configError({ ...BASE, CDN_TOKENS_FILE: file('bad-tokens.json', content) });
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('x'.repeat(20));
  });

  test('CDN_CACHE_CONTROL_BY_TYPE replaces the per-type defaults; bad entries are refused', () => {
    const config = loadOriginConfig({ ...BASE, CDN_CACHE_CONTROL_BY_TYPE: '{"image/*": "public, max-age=600", "text/css": "public, max-age=60"}' }, '/srv');
    expect(config.cacheControlByType).toEqual([
      ['image/*', 'public, max-age=600'],
      ['text/css', 'public, max-age=60'],
    ]);
    expect(configError({ ...BASE, CDN_CACHE_CONTROL_BY_TYPE: '{"Image": "x"}' }).details).toEqual({ variable: 'CDN_CACHE_CONTROL_BY_TYPE' });
  });
});
