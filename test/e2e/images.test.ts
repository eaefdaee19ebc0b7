/**
 * Image variants through the whole native stack (issue #18): images uploaded
 * through the origin API, requested through the balancer and from each edge as a
 * storefront would, checked by decoding what comes back (sharp's metadata).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { signImageQuery } from '../../origin/src/images/url-signing';
import { waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

let stack: UpResult;
let stateDir: string;
let token: string;
let signingKey: { id: string; secret: string };

const AVIF = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
const WEBP = 'image/webp,image/apng,image/*,*/*;q=0.8';
const LEGACY = 'image/png,image/*;q=0.8,*/*;q=0.5';

/** A 1600x1200 photo taken with the camera on its side (EXIF orientation 6: shown as 1200x1600), with GPS in its EXIF. */
async function cameraPhoto(): Promise<Buffer> {
  return sharp({ create: { width: 1600, height: 1200, channels: 3, background: { r: 200, g: 40, b: 40 } } })
    .composite([{ input: { create: { width: 400, height: 300, channels: 3, background: { r: 0, g: 0, b: 255 } } }, left: 0, top: 0 }])
    .jpeg({ quality: 90 })
    .withExif({ IFD0: { Make: 'TestCam' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' } })
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

async function upload(key: string, body: Buffer, contentType: string, tags = ''): Promise<Response> {
  return fetch(`${stack.state.origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType, 'Cache-Control': 'public, max-age=3600', ...(tags ? { 'Surrogate-Key': tags } : {}) },
    body,
  });
}

async function image(url: string, accept = AVIF): Promise<{ status: number; headers: Headers; body: Buffer; meta?: sharp.Metadata }> {
  const res = await fetch(url, { headers: { Accept: accept } });
  const body = Buffer.from(await res.arrayBuffer());
  const meta = res.status === 200 ? await sharp(body).metadata() : undefined;
  return { status: res.status, headers: res.headers, body, meta };
}

async function originMetric(name: string): Promise<number> {
  const text = await (await fetch(`${stack.state.origin}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && !l.startsWith('#'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-images-e2e-'));
  stack = await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const [id, secret] = fs.readFileSync(path.join(stateDir, 'url-signing-keys'), 'utf8').trim().split(',')[0].split(':');
  signingKey = { id, secret };
  expect((await upload('products/photo.jpg', await cameraPhoto(), 'image/jpeg', 'product-7 shoes')).status).toBe(201);
}, 90000);

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('image variants through the balancer', () => {
  test('no parameters: the original bytes, EXIF and all', async () => {
    const original = await image(`${stack.state.balancer}/products/photo.jpg`);
    expect(original.status).toBe(200);
    expect(original.headers.get('content-type')).toBe('image/jpeg');
    expect(original.meta).toMatchObject({ width: 1600, height: 1200, orientation: 6 });
    expect(original.headers.get('vary')).toBeNull();
  });

  test('?w= gives the snapped width in the best format the browser takes, upright, without EXIF, and Vary: Accept', async () => {
    const avif = await image(`${stack.state.balancer}/products/photo.jpg?w=300`, AVIF);
    expect(avif.status).toBe(200);
    expect(avif.headers.get('content-type')).toBe('image/avif');
    expect(avif.meta).toMatchObject({ format: 'heif', width: 384, height: 512 });
    expect(avif.headers.get('vary')).toMatch(/accept/i);
    expect(avif.headers.get('surrogate-key')).toBeNull();
    const webp = await image(`${stack.state.balancer}/products/photo.jpg?w=300`, WEBP);
    expect(webp.headers.get('content-type')).toBe('image/webp');
    expect(webp.meta).toMatchObject({ format: 'webp', width: 384, height: 512 });
    const jpeg = await image(`${stack.state.balancer}/products/photo.jpg?w=300`, LEGACY);
    expect(jpeg.headers.get('content-type')).toBe('image/jpeg');
    expect(jpeg.meta).toMatchObject({ format: 'jpeg', width: 384, height: 512, isProgressive: true });
    for (const v of [avif, webp, jpeg]) {
      // GPS and the camera's EXIF never leave; orientation is applied, not carried
      expect(v.meta!.exif).toBeUndefined();
      expect(v.meta!.orientation).toBeUndefined();
    }
    // the sRGB profile is kept
    expect(jpeg.meta!.icc).toBeDefined();
    // the pixels were rotated: the blue corner (top left of the sensor) is now top right
    const { data, info } = await sharp(jpeg.body).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3));
    expect(px(info.width - 5, 5)[2]).toBeGreaterThan(200);
    expect(px(5, 5)[0]).toBeGreaterThan(150);
    // the three are three cache entries, each a HIT the second time
    for (const accept of [AVIF, WEBP, LEGACY]) {
      const again = await image(`${stack.state.balancer}/products/photo.jpg?w=300`, accept);
      expect(again.headers.get('cache-status')).toMatch(/; hit/);
    }
  });

  test('unknown parameters and parameter order never make a new cache entry; dpr multiplies', async () => {
    await image(`${stack.state.balancer}/products/photo.jpg?w=640`);
    for (const q of ['w=600', 'w=640&utm_source=news&ref=home', 'q=75&w=640&fmt=auto', 'w=320&dpr=2', 'foo=1&w=641']) {
      const r = await image(`${stack.state.balancer}/products/photo.jpg?${q}`);
      expect({ q, width: r.meta?.width }).toEqual({ q, width: q.includes('641') ? 750 : 640 });
      if (!q.includes('641')) expect(r.headers.get('cache-status')).toMatch(/; hit/);
    }
  });

  test('bad parameters get 400 and a reason; sizes outside the set need a signature (403 when it fails)', async () => {
    const bad = await fetch(`${stack.state.balancer}/products/photo.jpg?w=abc`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/w and h must be whole numbers/);
    const signed = signImageQuery('/products/photo.jpg', { w: 333, fmt: 'webp' }, signingKey);
    const exact = await image(`${stack.state.balancer}/products/photo.jpg?${signed}`);
    expect(exact.status).toBe(200);
    expect(exact.meta).toMatchObject({ format: 'webp', width: 333 });
    const tampered = await fetch(`${stack.state.balancer}/products/photo.jpg?${signed.replace('w=333', 'w=334')}`);
    expect(tampered.status).toBe(403);
    expect(tampered.headers.get('cache-control')).toBe('no-store');
    const expired = await fetch(`${stack.state.balancer}/products/photo.jpg?${signImageQuery('/products/photo.jpg', { w: 333 }, signingKey, Date.now() / 1000 - 60)}`);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/expired/);
  });

  test('the asset API reports the intrinsic size and a ready srcset', async () => {
    const res = await fetch(`${stack.state.origin}/v1/assets/products/photo.jpg`, { headers: { Authorization: `Bearer ${token}` } });
    const details = (await res.json()) as { image: { width: number; height: number; srcset: string; widths: number[] } };
    expect(details.image).toMatchObject({ width: 1200, height: 1600 });
    expect(details.image.widths).toEqual([16, 32, 48, 64, 96, 128, 256, 384, 640, 750, 828, 1080, 1200]);
    expect(details.image.srcset).toContain(`${stack.state.balancer}/products/photo.jpg?w=640 640w`);
    expect(details.image.srcset.endsWith('?w=1200 1200w')).toBe(true);
  });

  test('a variant is made once for the fleet: other edges read it from the reserve', async () => {
    await image(`${stack.state.balancer}/products/photo.jpg?w=828`, WEBP);
    // (the variant reaches the reserve just after its first answer)
    await new Promise((r) => setTimeout(r, 300));
    const transforms = await originMetric('cdn_origin_image_transforms_total');
    const hits = await originMetric('cdn_origin_image_reserve_hits_total');
    // every edge, asked directly (most are not the object's home edge), misses once
    for (const edge of stack.state.edges) {
      const r = await image(`${edge.url}/products/photo.jpg?w=828`, WEBP);
      expect(r.meta).toMatchObject({ format: 'webp', width: 828 });
    }
    expect(await originMetric('cdn_origin_image_transforms_total')).toBe(transforms);
    expect(await originMetric('cdn_origin_image_reserve_hits_total')).toBeGreaterThanOrEqual(hits + stack.state.edges.length - 1);
  });

  test('overwriting the source purges its variants on every edge; a tag purge reaches variants', async () => {
    for (const edge of stack.state.edges) await image(`${edge.url}/products/photo.jpg?w=256`);
    const square = await sharp({ create: { width: 800, height: 800, channels: 4, background: { r: 0, g: 128, b: 0, alpha: 0.5 } } }).png().toBuffer();
    expect((await upload('products/photo.jpg', square, 'image/png', 'product-7')).status).toBe(200);
    const elapsed = await Promise.all(
      stack.state.edges.map((e) => waitFor(async () => (await image(`${e.url}/products/photo.jpg?w=256`)).meta?.height === 256, 2000)),
    );
    for (const ms of elapsed) expect(ms).toBeGreaterThanOrEqual(0);
    // transparency is kept in AVIF
    expect((await image(`${stack.state.balancer}/products/photo.jpg?w=256`)).meta).toMatchObject({ hasAlpha: true });

    for (const e of stack.state.edges) expect((await image(`${e.url}/products/photo.jpg?w=256`)).headers.get('cache-status')).toMatch(/; hit/);
    const purge = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: ['product-7'] }) });
    expect(purge.status).toBe(202);
    const refetched = await Promise.all(
      stack.state.edges.map((e) => waitFor(async () => !(await image(`${e.url}/products/photo.jpg?w=256`)).headers.get('cache-status')!.includes('; hit'), 2000)),
    );
    for (const ms of refetched) expect(ms).toBeGreaterThanOrEqual(0);
  });

  test('a decompression bomb is refused with 422 from its header, fast', async () => {
    const bomb = await sharp({ create: { width: 10000, height: 10000, channels: 3, background: { r: 0, g: 0, b: 0 } }, limitInputPixels: false }).png({ compressionLevel: 9 }).toBuffer();
    expect(bomb.length).toBeLessThan(2_000_000);
    expect((await upload('products/bomb.png', bomb, 'image/png')).status).toBe(201);
    const started = Date.now();
    const r = await fetch(`${stack.state.balancer}/products/bomb.png?w=640`, { headers: { Accept: AVIF } });
    expect(r.status).toBe(422);
    expect(await r.text()).toMatch(/CDN_ERR_IMAGE_TOO_LARGE/);
    expect(Date.now() - started).toBeLessThan(1000);
    // the original bytes are still served as uploaded
    expect((await fetch(`${stack.state.balancer}/products/bomb.png`)).status).toBe(200);
  });

  test('parameters on something that is not an image are ignored: the original bytes', async () => {
    await fetch(`${stack.state.origin}/v1/assets/docs/manual.txt`, { method: 'PUT', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain' }, body: 'manual' });
    const r = await fetch(`${stack.state.balancer}/docs/manual.txt?w=640`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('manual');
  });
});
