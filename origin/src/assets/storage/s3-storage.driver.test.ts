/**
 * The S3 driver against a real s3rver (MinIO's stand-in here): objects at their keys
 * with their headers, the temp-object + copy commit, verification and limits leaving
 * nothing behind, version-pinned reads, ranges, listing, and storage outages.
 *
 * Multipart: the minio client's own putObject cannot go multipart against s3rver (it
 * first calls ListMultipartUploads, NotImplemented there). The driver drives multipart
 * itself (initiate, upload parts, complete), which s3rver implements, so the multipart
 * path IS exercised here, with a part size of 64 KiB instead of S3's 5 MiB minimum
 * (s3rver does not enforce it; CDN_S3_PART_SIZE does).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { Client } from 'minio';
import { CdnError } from '../../../../infra/model/errors';
import { S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY, startS3rver, type S3rverHandle } from '../../../../test/support/s3rver';
import { Secret } from '../../config/secret';
import { createS3Client, S3StorageDriver, TEMP_PREFIX } from './s3-storage.driver';
import type { PutOptions } from './storage-driver';

const BUCKET = 'cdn-test';
const PART_SIZE = 64 * 1024;
const OPTIONS: PutOptions = { contentType: 'text/plain', cacheControl: null, tags: ['t1', 'product-9'], maxBytes: 1024 * 1024 };
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

let s3: S3rverHandle;
let client: Client;
let driver: S3StorageDriver;

function makeClient(endpoint: string): Client {
  return createS3Client({
    kind: 's3',
    endpoint,
    bucket: BUCKET,
    region: 'us-east-1',
    accessKey: new Secret(S3RVER_ACCESS_KEY),
    secretKey: new Secret(S3RVER_SECRET_KEY),
    partSize: PART_SIZE,
  });
}

async function objectNames(prefix = ''): Promise<string[]> {
  const page = await client.listObjectsV2Query(BUCKET, prefix, '', '', 1000, '');
  return page.objects.map((o) => o.name ?? '').sort();
}

async function readAll(key: string): Promise<string | null> {
  const metadata = await driver.stat(key);
  if (metadata === null) return null;
  const body = await driver.read(metadata);
  return body === null ? null : text(body);
}

beforeAll(async () => {
  s3 = await startS3rver();
  client = makeClient(s3.endpoint);
  driver = new S3StorageDriver(client, BUCKET, PART_SIZE);
  await driver.init(); // creates the bucket
});

afterAll(async () => {
  await s3?.stop();
});

test('init created the bucket; check passes', async () => {
  expect(await client.bucketExists(BUCKET)).toBe(true);
  await driver.check();
});

test('put stores the object at its key with Content-Type, Cache-Control and cdn metadata; stat reads it back', async () => {
  const { asset, previous } = await driver.put('a/b.txt', Readable.from([Buffer.from('hello')]), { ...OPTIONS, cacheControl: 'public, max-age=60' });
  expect(previous).toBeNull();
  expect(asset).toMatchObject({ key: 'a/b.txt', size: 5, sha256: sha256('hello'), contentType: 'text/plain', cacheControl: 'public, max-age=60', tags: ['t1', 'product-9'] });

  // The bucket itself holds a servable object: an edge reading it directly gets the headers.
  const raw = await client.statObject(BUCKET, 'a/b.txt');
  expect(raw.metaData['content-type']).toBe('text/plain');
  expect(raw.metaData['cache-control']).toBe('public, max-age=60');
  expect(raw.metaData['cdn-sha256']).toBe(sha256('hello'));
  expect(raw.metaData['cdn-tags']).toBe('t1 product-9');

  const stat = await driver.stat('a/b.txt');
  expect(stat).toMatchObject({ ...asset, storageVersion: expect.any(String) });
  expect(await readAll('a/b.txt')).toBe('hello');
  // No temporary object stays behind.
  expect(await objectNames(TEMP_PREFIX)).toEqual([]);
});

test('an overwrite returns the previous metadata and keeps createdAt', async () => {
  const first = await driver.put('k', Readable.from([Buffer.from('one')]), OPTIONS);
  await new Promise((r) => setTimeout(r, 5));
  const second = await driver.put('k', Readable.from([Buffer.from('two')]), { ...OPTIONS, tags: ['t2'] });
  expect(second.previous).toMatchObject({ key: 'k', sha256: sha256('one'), tags: ['t1', 'product-9'] });
  expect(second.asset.createdAt).toBe(first.asset.createdAt);
  expect(second.asset.updatedAt > first.asset.updatedAt).toBe(true);
  expect(await readAll('k')).toBe('two');
});

test('a body larger than the part size goes up as a multipart upload and reads back whole', async () => {
  const big = Buffer.alloc(PART_SIZE * 3 + 1234);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) % 251;
  // Many small chunks, as an HTTP body arrives.
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < big.length; offset += 16 * 1024) chunks.push(big.subarray(offset, offset + 16 * 1024));
  const { asset } = await driver.put('big/file.bin', Readable.from(chunks), { ...OPTIONS, contentType: 'application/octet-stream' });
  expect(asset.size).toBe(big.length);
  expect(asset.sha256).toBe(sha256(big));
  const metadata = (await driver.stat('big/file.bin'))!;
  expect((await buffer((await driver.read(metadata))!)).equals(big)).toBe(true);
  expect(await objectNames(TEMP_PREFIX)).toEqual([]);
});

test('a failed verification stores nothing and removes the temporary object', async () => {
  const err = await driver
    .put('verify/x.txt', Readable.from([Buffer.from('payload')]), {
      ...OPTIONS,
      verify: () => {
        throw new CdnError({ code: 'CDN_ERR_CHECKSUM_MISMATCH', message: 'mismatch', httpStatus: 400, exitCode: 1 });
      },
    })
    .catch((e: unknown) => e);
  expect((err as CdnError).code).toBe('CDN_ERR_CHECKSUM_MISMATCH');
  expect(await driver.stat('verify/x.txt')).toBeNull();
  expect(await objectNames(TEMP_PREFIX)).toEqual([]);
});

test('verify sees size, sha256, MD5 and the first bytes', async () => {
  let seen: unknown;
  await driver.put('verify/seen.txt', Readable.from([Buffer.from('abc'), Buffer.from('def')]), {
    ...OPTIONS,
    computeMd5: true,
    verify: (received) => {
      seen = received;
    },
  });
  expect(seen).toEqual({
    size: 6,
    sha256: sha256('abcdef'),
    md5: createHash('md5').update('abcdef').digest('base64'),
    head: Buffer.from('abcdef'),
  });
});

test('a body over maxBytes (also past a part) is 413, nothing stored, multipart aborted', async () => {
  const err = await driver
    .put('big/too.bin', Readable.from([Buffer.alloc(PART_SIZE), Buffer.alloc(PART_SIZE), Buffer.alloc(10)]), { ...OPTIONS, maxBytes: PART_SIZE * 2 })
    .catch((e: unknown) => e);
  expect((err as CdnError).code).toBe('CDN_ERR_BODY_TOO_LARGE');
  expect(await driver.stat('big/too.bin')).toBeNull();
  expect(await objectNames(TEMP_PREFIX)).toEqual([]);
});

test('a body that fails midway leaves the old asset', async () => {
  await driver.put('mid/k.txt', Readable.from([Buffer.from('old')]), OPTIONS);
  const failing = new Readable({
    read() {
      this.push(Buffer.from('partial'));
      this.destroy(new Error('client went away'));
    },
  });
  await expect(driver.put('mid/k.txt', failing, OPTIONS)).rejects.toMatchObject({ code: 'CDN_ERR_BODY_INVALID' });
  expect(await readAll('mid/k.txt')).toBe('old');
  expect(await objectNames(TEMP_PREFIX)).toEqual([]);
});

test('a range read returns exactly those bytes', async () => {
  await driver.put('range/r.txt', Readable.from([Buffer.from('0123456789')]), OPTIONS);
  const metadata = (await driver.stat('range/r.txt'))!;
  expect(await text((await driver.read(metadata, { start: 2, end: 5 }))!)).toBe('2345');
});

test('a read pinned to an overwritten version returns null (the caller stats again)', async () => {
  await driver.put('pin/p.txt', Readable.from([Buffer.from('v1')]), OPTIONS);
  const old = (await driver.stat('pin/p.txt'))!;
  await driver.put('pin/p.txt', Readable.from([Buffer.from('v2')]), OPTIONS);
  expect(await driver.read(old)).toBeNull();
});

test('list: prefix, key order, pages, no temporary or foreign objects', async () => {
  for (const key of ['shop/c.txt', 'shop/a.txt', 'shop/b/x.txt', 'other/z.txt']) {
    await driver.put(key, Readable.from([Buffer.from(key)]), OPTIONS);
  }
  await client.putObject(BUCKET, `${TEMP_PREFIX}leftover`, Buffer.from('x'));
  await client.putObject(BUCKET, 'shop/foreign.txt', Buffer.from('not written by the origin'));

  const first = await driver.list({ prefix: 'shop/', after: null, limit: 2 });
  expect(first.assets.map((a) => a.key)).toEqual(['shop/a.txt', 'shop/b/x.txt']);
  expect(first.more).toBe(true);
  expect(first.assets[0]).toMatchObject({ sha256: sha256('shop/a.txt'), tags: ['t1', 'product-9'] });
  const second = await driver.list({ prefix: 'shop/', after: 'shop/b/x.txt', limit: 2 });
  expect(second.assets.map((a) => a.key)).toEqual(['shop/c.txt']);
  expect(second.more).toBe(false);
  await client.removeObject(BUCKET, `${TEMP_PREFIX}leftover`);
});

test('delete removes the object and returns what it held', async () => {
  const { asset } = await driver.put('gone/g.txt', Readable.from([Buffer.from('x')]), OPTIONS);
  expect(await driver.delete('gone/g.txt')).toMatchObject({ key: 'gone/g.txt', sha256: asset.sha256 });
  expect(await driver.stat('gone/g.txt')).toBeNull();
  expect(await driver.delete('gone/g.txt')).toBeNull();
});

test('tags longer than S3 user metadata allows are refused before any byte is sent', async () => {
  const tags = Array.from({ length: 64 }, (_, i) => `tag-${i}-${'x'.repeat(40)}`);
  await expect(driver.put('tags/many.txt', Readable.from([Buffer.from('x')]), { ...OPTIONS, tags })).rejects.toMatchObject({
    code: 'CDN_ERR_HEADER_INVALID',
  });
});

test('storage down: check and every operation fail with CDN_ERR_STORAGE_UNAVAILABLE, not a crash', async () => {
  const down = new S3StorageDriver(makeClient('http://127.0.0.1:1'), BUCKET, PART_SIZE);
  await expect(down.check()).rejects.toThrow();
  await expect(down.stat('x')).rejects.toMatchObject({ code: 'CDN_ERR_STORAGE_UNAVAILABLE' });
  await expect(down.put('x', Readable.from([Buffer.from('x')]), OPTIONS)).rejects.toMatchObject({ code: 'CDN_ERR_STORAGE_UNAVAILABLE' });
  await expect(down.list({ prefix: '', after: null, limit: 10 })).rejects.toMatchObject({ code: 'CDN_ERR_STORAGE_UNAVAILABLE' });
  // init does not throw (object storage may start after the origin); readyz reports it.
  await down.init();
});
