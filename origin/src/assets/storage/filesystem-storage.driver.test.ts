/**
 * The filesystem driver on a real temp directory: content addressing, the metadata
 * commit point, failed puts leaving nothing behind, and readiness.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { CdnError } from '../../../../infra/model/errors';
import { listFiles } from '../../../test/harness';
import { FilesystemStorageDriver } from './filesystem-storage.driver';

const OPTIONS = { contentType: 'text/plain', cacheControl: null, tags: ['t1'], maxBytes: 1024 };
const sha256 = (data: string): string => createHash('sha256').update(data).digest('hex');

let root: string;

/** stat + read, as delivery does. */
async function openAsset(key: string) {
  const metadata = await driver.stat(key);
  return metadata === null ? null : { metadata, body: (await driver.read(metadata))! };
}
let driver: FilesystemStorageDriver;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cdn-fs-driver-'));
  driver = new FilesystemStorageDriver(join(root, 'store'));
  await driver.init();
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

test('init creates tmp, blobs and meta; check passes', async () => {
  await driver.check();
  expect(await listFiles(join(root, 'store'))).toEqual([]);
});

test('put writes a content-addressed blob and the metadata under sha256(key)', async () => {
  const { asset, previous } = await driver.put('a/b.txt', Readable.from([Buffer.from('hello')]), OPTIONS);
  expect(previous).toBeNull();
  const hash = sha256('hello');
  const keyHash = sha256('a/b.txt');
  expect(await listFiles(join(root, 'store'))).toEqual([`blobs/${hash.slice(0, 2)}/${hash}`, `meta/${keyHash.slice(0, 2)}/${keyHash}.json`].sort());
  const meta = JSON.parse(await readFile(join(root, 'store', 'meta', keyHash.slice(0, 2), `${keyHash}.json`), 'utf8'));
  expect(meta).toEqual({
    key: 'a/b.txt',
    size: 5,
    sha256: hash,
    contentType: 'text/plain',
    cacheControl: null,
    tags: ['t1'],
    createdAt: asset.createdAt,
    updatedAt: asset.updatedAt,
  });
});

test('an overwrite returns the previous metadata and keeps createdAt', async () => {
  const first = await driver.put('k', Readable.from([Buffer.from('one')]), OPTIONS);
  await new Promise((r) => setTimeout(r, 5));
  const second = await driver.put('k', Readable.from([Buffer.from('two')]), { ...OPTIONS, tags: ['t2'] });
  expect(second.previous).toEqual(first.asset);
  expect(second.asset.createdAt).toBe(first.asset.createdAt);
  expect(second.asset.updatedAt > first.asset.updatedAt).toBe(true);
  const opened = await openAsset('k');
  expect(await text(opened!.body)).toBe('two');
  expect(opened!.metadata.tags).toEqual(['t2']);
});

test('a body that fails midway leaves the old asset and no temp file', async () => {
  await driver.put('k', Readable.from([Buffer.from('old')]), OPTIONS);
  const failing = new Readable({
    read() {
      this.push(Buffer.from('partial'));
      this.destroy(new Error('client went away'));
    },
  });
  await expect(driver.put('k', failing, OPTIONS)).rejects.toMatchObject({ code: 'CDN_ERR_BODY_INVALID' });
  expect(await listFiles(join(root, 'store', 'tmp'))).toEqual([]);
  expect(await text((await openAsset('k'))!.body)).toBe('old');
});

test('a body over maxBytes is refused with CDN_ERR_BODY_TOO_LARGE and not committed', async () => {
  const err = await driver.put('big', Readable.from([Buffer.alloc(1000), Buffer.alloc(1000)]), OPTIONS).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CdnError);
  expect((err as CdnError).code).toBe('CDN_ERR_BODY_TOO_LARGE');
  expect(await driver.stat('big')).toBeNull();
  expect(await listFiles(join(root, 'store'))).toEqual([]);
});

test('identical bytes under two keys share one blob', async () => {
  await driver.put('x', Readable.from([Buffer.from('same')]), OPTIONS);
  await driver.put('y', Readable.from([Buffer.from('same')]), OPTIONS);
  expect((await listFiles(join(root, 'store', 'blobs'))).length).toBe(1);
});

test('delete removes the metadata and returns it; the key then reads as absent', async () => {
  const { asset } = await driver.put('gone', Readable.from([Buffer.from('x')]), OPTIONS);
  expect(await driver.delete('gone')).toEqual(asset);
  expect(await driver.stat('gone')).toBeNull();
  expect(await openAsset('gone')).toBeNull();
  expect(await driver.delete('gone')).toBeNull();
});

test('corrupt metadata is reported as a storage error, not served', async () => {
  const keyHash = sha256('bad');
  await mkdir(join(root, 'store', 'meta', keyHash.slice(0, 2)), { recursive: true });
  await writeFile(join(root, 'store', 'meta', keyHash.slice(0, 2), `${keyHash}.json`), '{"key":"bad"');
  await expect(driver.stat('bad')).rejects.toMatchObject({ code: 'CDN_ERR_STORAGE_UNAVAILABLE' });
});

test('init removes stale temp files and keeps recent ones', async () => {
  const stale = join(root, 'store', 'tmp', 'stale.blob');
  const fresh = join(root, 'store', 'tmp', 'fresh.blob');
  await writeFile(stale, 'x');
  await writeFile(fresh, 'x');
  const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
  await utimes(stale, old, old);
  await driver.init();
  expect(await listFiles(join(root, 'store', 'tmp'))).toEqual(['fresh.blob']);
});

test('check fails when a storage directory is missing', async () => {
  await rm(join(root, 'store', 'meta'), { recursive: true });
  await expect(driver.check()).rejects.toThrow(/ENOENT/);
});
