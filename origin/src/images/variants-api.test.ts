/**
 * Image variants at the origin on both storage drivers (a real filesystem, and
 * s3rver as MinIO), with a real Redis: the reserve in the object store (kept, read,
 * hidden from listings, dropped with the source), conditionals without a transform,
 * the bounded queue's 503, and Range ignored for variants.
 */
import sharp from 'sharp';
import { startRedis, type RedisHandle } from '../../../test/support/redis-server';
import { startS3rver, type S3rverHandle } from '../../../test/support/s3rver';
import { eventually, startOrigin, type OriginUnderTest } from '../../test/harness';
import { DEFAULT_IMAGES, VARIANT_PREFIX } from '../../contract/images';
import { STORAGE_DRIVER, type StorageDriver } from '../assets/storage/storage-driver';

let redisServer: RedisHandle;
let s3: S3rverHandle;
let photo: Buffer;

beforeAll(async () => {
  [redisServer, s3] = await Promise.all([startRedis(), startS3rver()]);
  photo = await sharp({ create: { width: 2400, height: 1600, channels: 3, background: { r: 10, g: 120, b: 200 } } })
    .jpeg()
    .toBuffer();
});

afterAll(async () => {
  await Promise.all([redisServer?.stop(), s3?.stop()]);
});

describe.each(['filesystem', 's3'] as const)('image variants on %s storage', (kind) => {
  let origin: OriginUnderTest;
  let storage: StorageDriver;
  const put = (key: string, body: Buffer, type = 'image/jpeg') => origin.request('PUT', `/v1/assets/${key}`, { auth: true, body, headers: { 'content-type': type } });
  const variant = (path: string, headers: Record<string, string> = {}) => origin.request('GET', path, { headers: { accept: 'image/webp,*/*', ...headers } });
  const metric = async (name: string) => {
    const text = (await origin.request('GET', '/metrics')).body.toString();
    return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  };
  const reserve = async (sha256: string) => (await storage.list({ prefix: `${VARIANT_PREFIX}${sha256}/`, after: null, limit: 100 })).assets.map((a) => a.key);

  beforeAll(async () => {
    origin = await startOrigin(redisServer.url, {
      CDN_PURGE_STREAM: `test:images:${kind}`,
      CDN_IMAGES: JSON.stringify({ ...DEFAULT_IMAGES, concurrency: 1, queue: 1 }),
      ...(kind === 's3' ? s3.env(`images-${Date.now()}`) : {}),
    });
    storage = origin.app.get(STORAGE_DRIVER);
  });

  afterAll(async () => {
    await origin?.close();
  });

  test('a variant is kept in the reserve, read from it the next time, and never listed as an asset', async () => {
    const created = (await put('p/photo.jpg', photo)).json<{ sha256: string }>();
    const transforms = await metric('cdn_origin_image_transforms_total');
    const first = await variant('/p/photo.jpg?fmt=auto&q=75&w=640');
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe('image/webp');
    expect(first.headers.vary).toBe('Accept');
    expect(await sharp(first.body).metadata()).toMatchObject({ width: 640, height: 427 });
    expect(await metric('cdn_origin_image_transforms_total')).toBe(transforms + 1);
    // (written to the reserve after the answer)
    await eventually(async () => (await reserve(created.sha256)).length === 1);
    expect(await reserve(created.sha256)).toEqual([`${VARIANT_PREFIX}${created.sha256}/640x-q75-auto-webp`]);

    const hits = await metric('cdn_origin_image_reserve_hits_total');
    const second = await variant('/p/photo.jpg?fmt=auto&q=75&w=640');
    expect(second.body.equals(first.body)).toBe(true);
    expect(second.headers.etag).toBe(first.headers.etag);
    expect(await metric('cdn_origin_image_reserve_hits_total')).toBe(hits + 1);
    expect(await metric('cdn_origin_image_transforms_total')).toBe(transforms + 1);

    const listed = (await origin.request('GET', '/v1/assets', { auth: true })).json<{ items: { key: string }[] }>();
    expect(listed.items.map((i) => i.key)).toEqual(['p/photo.jpg']);
  });

  test('a conditional request gets 304 without a transform; a Range is ignored (the whole variant)', async () => {
    const full = await variant('/p/photo.jpg?fmt=jpeg&q=50&w=256');
    const transforms = await metric('cdn_origin_image_transforms_total');
    const notModified = await variant('/p/photo.jpg?fmt=jpeg&q=50&w=256', { 'if-none-match': String(full.headers.etag) });
    expect(notModified.status).toBe(304);
    expect(await metric('cdn_origin_image_transforms_total')).toBe(transforms);
    const ranged = await variant('/p/photo.jpg?fmt=jpeg&q=50&w=256', { range: 'bytes=0-9' });
    expect(ranged.status).toBe(200);
    expect(ranged.body.equals(full.body)).toBe(true);
  });

  test('overwriting or deleting the source drops its variants from the reserve', async () => {
    // (other bytes than p/photo.jpg: variants are named by the source's sha256)
    const own = await sharp({ create: { width: 600, height: 400, channels: 3, background: { r: 90, g: 90, b: 0 } } }).jpeg().toBuffer();
    const before = (await put('p/drop.jpg', own)).json<{ sha256: string }>();
    await variant('/p/drop.jpg?fmt=webp&q=75&w=128');
    await eventually(async () => (await reserve(before.sha256)).length === 1);
    const other = await sharp({ create: { width: 300, height: 300, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toBuffer();
    const after = (await put('p/drop.jpg', other, 'image/png')).json<{ sha256: string }>();
    expect(await reserve(before.sha256)).toEqual([]);
    await variant('/p/drop.jpg?fmt=webp&q=75&w=128');
    await eventually(async () => (await reserve(after.sha256)).length === 1);
    expect((await origin.request('DELETE', '/v1/assets/p/drop.jpg', { auth: true })).status).toBe(204);
    expect(await reserve(after.sha256)).toEqual([]);
  });

  test('when the transform queue is full, 503 with Retry-After at once, and every request is answered', async () => {
    const big = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: { r: 200, g: 10, b: 10 } }, limitInputPixels: false })
      .jpeg()
      .toBuffer();
    await put('p/big.jpg', big);
    const busy = await metric('cdn_origin_image_refusals_total{reason="busy"}');
    // concurrency 1, queue 1: of six distinct variants at once, at least four are refused
    const answers = await Promise.all([1200, 1080, 828, 750, 640, 384].map((w) => variant(`/p/big.jpg?fmt=jpeg&q=90&w=${w}`)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    const refused = answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThanOrEqual(4);
    for (const r of refused) {
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json()).toMatchObject({ error: 'CDN_ERR_IMAGE_BUSY' });
    }
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    expect(await metric('cdn_origin_image_refusals_total{reason="busy"}')).toBe(busy + refused.length);
  });

  test('bad parameters get 400 with the reason; a non-image ignores them', async () => {
    const bad = await variant('/p/photo.jpg?w=99999');
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'CDN_ERR_IMAGE_PARAMS_INVALID' });
    await origin.request('PUT', '/v1/assets/p/readme.txt', { auth: true, body: 'hello', headers: { 'content-type': 'text/plain' } });
    const text = await variant('/p/readme.txt?w=640');
    expect(text.status).toBe(200);
    expect(text.body.toString()).toBe('hello');
  });
});
