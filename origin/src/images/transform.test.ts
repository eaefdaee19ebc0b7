/**
 * The image transformation against real sharp/libvips: sizes, format negotiation, EXIF
 * orientation, metadata stripping, colour profile, alpha, animation, and the refusals
 * (pixel bombs, corrupt bytes, SVG, oversized output, timeouts). Every test image is
 * made here with sharp itself, so the bytes under test are exactly what the test says.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, test } from '@jest/globals';
import sharp from 'sharp';
import { CdnError } from '../../../infra/model/errors';
import {
  AVIF_MAX_AUTO_PIXELS,
  chooseFormat,
  probeImage,
  transformImage,
  type Accepts,
  type SourceInfo,
  type TransformLimits,
  type TransformRequest,
} from './transform';

const LIMITS: TransformLimits = {
  maxInputPixels: 50_000_000,
  maxOutputBytes: 20 * 1024 * 1024,
  timeoutSeconds: 10,
  allowSvg: false,
};
const NONE: Accepts = { avif: false, webp: false };
const WEBP: Accepts = { avif: false, webp: true };
const ALL: Accepts = { avif: true, webp: true };

function req(overrides: Partial<TransformRequest> = {}): TransformRequest {
  return { fit: 'cover', quality: 75, format: 'auto', accepts: NONE, ...overrides };
}

/** The CdnError a promise rejects with (fails the test if it resolves or throws anything else). */
async function rejection(promise: Promise<unknown>): Promise<CdnError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CdnError);
    return err as CdnError;
  }
  throw new Error('expected a rejection');
}

/** The error a synchronous call throws (for chooseFormat). */
function thrown(fn: () => unknown): CdnError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CdnError);
    return err as CdnError;
  }
  throw new Error('expected a throw');
}

/** One pixel's channel values of an image, after decoding it to raw RGBA. */
async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(image).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * 4;
  return [data[at], data[at + 1], data[at + 2], data[at + 3]];
}

/** Printable text of an ICC profile (its description is UTF-16, so the zero bytes go). */
function iccText(icc: Buffer | undefined): string {
  return icc === undefined ? '' : icc.toString('latin1').replace(/[^\x20-\x7e]/g, '');
}

/** 400x200 opaque JPEG: landscape, 2:1. */
let landscapeJpeg: Buffer;
/** 300x200 PNG, red at 50% alpha. */
let translucentPng: Buffer;
/** 3 frames of 64x48, 100 ms each. */
let animatedGif: Buffer;
/** 20000x20000 single-colour PNG: ~1 MB compressed, 1.2 GB decoded. */
let bombPng: Buffer;

beforeAll(async () => {
  landscapeJpeg = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#3060c0' } })
    .jpeg()
    .toBuffer();
  translucentPng = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } })
    .png()
    .toBuffer();
  const frames = await Promise.all(
    ['#ff0000', '#00ff00', '#0000ff'].map((background) =>
      sharp({ create: { width: 64, height: 48, channels: 4, background } }).png().toBuffer(),
    ),
  );
  animatedGif = await sharp(frames, { join: { animated: true } }).gif({ delay: [100, 100, 100] }).toBuffer();
  // The one slow fixture (~5 s on 2 cores): libvips has to filter and deflate 400 M
  // pixels once. limitInputPixels: false because sharp's own default limit (~268 MP)
  // also applies to a created image.
  bombPng = await sharp({ create: { width: 20000, height: 20000, channels: 3, background: 'white' }, limitInputPixels: false })
    .png()
    .toBuffer();
});

describe('dimensions', () => {
  test('width only keeps the aspect ratio', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 100 }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 50]);
    const meta = await sharp(out.data).metadata();
    expect([meta.width, meta.height]).toEqual([100, 50]);
  });

  test('height only keeps the aspect ratio', async () => {
    const out = await transformImage(landscapeJpeg, req({ height: 50 }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 50]);
  });

  test('no size: the source size', async () => {
    const out = await transformImage(landscapeJpeg, req(), LIMITS);
    expect([out.width, out.height]).toEqual([400, 200]);
  });

  test('cover fills the box and crops', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 100, height: 100, fit: 'cover' }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 100]);
    // Cropped, not padded: the corner is the image's blue, not white.
    const [r, g, b] = await pixel(out.data, 0, 0);
    expect(b).toBeGreaterThan(150);
    expect(r).toBeLessThan(100);
    expect(g).toBeLessThan(150);
  });

  test('contain fits inside the box and pads it with white when the output has no alpha', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 100, height: 100, fit: 'contain' }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 100]);
    expect(out.format).toBe('jpeg');
    const [r, g, b] = await pixel(out.data, 50, 2); // the bar above the 100x50 image
    expect(Math.min(r, g, b)).toBeGreaterThan(240);
    const [, , centreBlue] = await pixel(out.data, 50, 50);
    const [centreRed] = await pixel(out.data, 50, 50);
    expect(centreBlue).toBeGreaterThan(150);
    expect(centreRed).toBeLessThan(100);
  });

  test('contain pads with transparency when the output has alpha', async () => {
    const out = await transformImage(translucentPng, req({ width: 100, height: 100, fit: 'contain', format: 'png' }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 100]);
    expect((await pixel(out.data, 50, 2))[3]).toBe(0); // the bar above the 100x67 image
    expect((await pixel(out.data, 50, 50))[3]).toBeGreaterThan(100);
  });

  test('inside fits inside the box without padding', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 100, height: 100, fit: 'inside' }), LIMITS);
    expect([out.width, out.height]).toEqual([100, 50]);
  });

  test('never enlarged', async () => {
    const size = async (r: Partial<TransformRequest>): Promise<number[]> => {
      const out = await transformImage(landscapeJpeg, req({ format: 'png', ...r }), LIMITS);
      return [out.width, out.height];
    };
    expect(await size({ width: 800 })).toEqual([400, 200]);
    expect(await size({ height: 1000 })).toEqual([400, 200]);
    expect(await size({ width: 800, height: 800, fit: 'inside' })).toEqual([400, 200]);
    // cover: the box shrinks to what the source has instead of upscaling to fill it.
    expect(await size({ width: 800, height: 100, fit: 'cover' })).toEqual([400, 100]);

    // contain keeps the requested box (a layout asked for it) but the image inside it
    // is not upscaled: trimming the white padding leaves the 400x200 source.
    const out = await transformImage(landscapeJpeg, req({ width: 800, height: 800, fit: 'contain', format: 'png' }), LIMITS);
    expect([out.width, out.height]).toEqual([800, 800]);
    const trimmed = await sharp(out.data).trim().toBuffer({ resolveWithObject: true });
    expect([trimmed.info.width, trimmed.info.height]).toEqual([400, 200]);
  });
});

describe('format', () => {
  test('auto picks avif, then webp, then the source format, and the bytes are that format', async () => {
    const cases: Array<[Buffer, Accepts, string, string]> = [
      [landscapeJpeg, ALL, 'avif', 'heif'],
      [landscapeJpeg, WEBP, 'webp', 'webp'],
      [landscapeJpeg, NONE, 'jpeg', 'jpeg'],
      [translucentPng, NONE, 'png', 'png'],
    ];
    for (const [input, accepts, format, decoder] of cases) {
      const out = await transformImage(input, req({ width: 100, accepts }), LIMITS);
      expect(out.format).toBe(format);
      expect(out.contentType).toBe(`image/${format}`);
      const meta = await sharp(out.data).metadata();
      expect(meta.format).toBe(decoder);
      if (format === 'avif') {
        expect(meta.compression).toBe('av1'); // AVIF, not HEIC
      }
    }
  });

  test('AVIF and TIFF sources are read and fall back to jpeg, or png with alpha', async () => {
    const avif = await sharp(translucentPng).avif().toBuffer();
    const tiff = await sharp(landscapeJpeg).tiff().toBuffer();
    for (const [input, decoder, format] of [
      [avif, 'heif', 'png'],
      [tiff, 'tiff', 'jpeg'],
    ] as const) {
      expect((await probeImage(input, LIMITS)).format).toBe(decoder);
      const out = await transformImage(input, req({ width: 100 }), LIMITS);
      expect(out.format).toBe(format);
      expect((await sharp(out.data).metadata()).format).toBe(format);
    }
  });

  test('an explicit format wins over Accept', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 100, format: 'png', accepts: ALL }), LIMITS);
    expect(out.format).toBe('png');
    expect((await sharp(out.data).metadata()).format).toBe('png');
    const webp = await transformImage(translucentPng, req({ width: 100, format: 'webp', accepts: NONE }), LIMITS);
    expect((await sharp(webp.data).metadata()).format).toBe('webp');
  });

  test('fallbacks without avif/webp support: webp, tiff and heif sources become png with alpha, jpeg without', () => {
    const source = (format: string, hasAlpha: boolean): SourceInfo => ({ width: 400, height: 300, format, animated: false, hasAlpha });
    expect(chooseFormat(source('webp', true), req())).toBe('png');
    expect(chooseFormat(source('webp', false), req())).toBe('jpeg');
    expect(chooseFormat(source('tiff', false), req())).toBe('jpeg');
    expect(chooseFormat(source('heif', true), req())).toBe('png');
    expect(chooseFormat(source('gif', true), req())).toBe('gif');
    expect(chooseFormat(source('png', false), req())).toBe('png');
    expect(chooseFormat(source('jpeg', false), req({ accepts: { avif: true, webp: false } }))).toBe('avif');
  });

  test('auto skips avif for outputs too big to encode within the timeout; explicit avif is honoured', () => {
    const photo: SourceInfo = { width: 4000, height: 3000, format: 'jpeg', animated: false, hasAlpha: false };
    expect(4000 * 3000).toBeGreaterThan(AVIF_MAX_AUTO_PIXELS);
    expect(chooseFormat(photo, req({ accepts: ALL }))).toBe('webp');
    expect(chooseFormat(photo, req({ accepts: { avif: true, webp: false } }))).toBe('jpeg');
    expect(chooseFormat(photo, req({ accepts: ALL, width: 640 }))).toBe('avif');
    expect(chooseFormat(photo, req({ accepts: ALL, width: 1920, height: 1080, fit: 'cover' }))).toBe('avif');
    expect(chooseFormat(photo, req({ accepts: ALL, width: 4000, height: 4000, fit: 'contain' }))).toBe('webp');
    expect(chooseFormat(photo, req({ accepts: ALL, format: 'avif' }))).toBe('avif');
  });

  test('progressive JPEG', async () => {
    const out = await transformImage(landscapeJpeg, req({ width: 200 }), LIMITS);
    expect(out.format).toBe('jpeg');
    const meta = await sharp(out.data).metadata();
    expect(meta.isProgressive).toBe(true);
  });

  test('png output is not interlaced', async () => {
    const out = await transformImage(translucentPng, req({ width: 100 }), LIMITS);
    expect((await sharp(out.data).metadata()).isProgressive).toBe(false);
  });
});

describe('orientation and metadata', () => {
  /** 200x100 landscape pixels, left half red, right half blue, tagged EXIF orientation 6 (rotate 90° clockwise to show). */
  async function rotatedPhoto(): Promise<Buffer> {
    const red = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#ff0000' } }).png().toBuffer();
    return sharp({ create: { width: 200, height: 100, channels: 3, background: '#0000ff' } })
      .composite([{ input: red, left: 0, top: 0 }])
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
  }

  test('probe reports the size after EXIF orientation', async () => {
    const photo = await rotatedPhoto();
    expect((await sharp(photo).metadata()).orientation).toBe(6);
    const info = await probeImage(photo, LIMITS);
    expect([info.width, info.height]).toEqual([100, 200]);
    expect(info).toMatchObject({ format: 'jpeg', animated: false, hasAlpha: false });
  });

  test('the output is turned upright and carries no orientation tag', async () => {
    const photo = await rotatedPhoto();
    const full = await transformImage(photo, req(), LIMITS);
    expect([full.width, full.height]).toEqual([100, 200]); // portrait
    const scaled = await transformImage(photo, req({ width: 50 }), LIMITS);
    expect([scaled.width, scaled.height]).toEqual([50, 100]);
    const meta = await sharp(scaled.data).metadata();
    expect([meta.width, meta.height]).toEqual([50, 100]);
    expect(meta.orientation).toBeUndefined();
    // Rotated 90° clockwise, the left (red) half is now on top.
    const [topRed, , topBlue] = await pixel(full.data, 50, 20);
    const [bottomRed, , bottomBlue] = await pixel(full.data, 50, 180);
    expect(topRed).toBeGreaterThan(200);
    expect(topBlue).toBeLessThan(60);
    expect(bottomBlue).toBeGreaterThan(200);
    expect(bottomRed).toBeLessThan(60);
  });

  test('EXIF (GPS included) and XMP are stripped in every format', async () => {
    const geotagged = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#808080' } })
      .jpeg()
      .withExif({
        IFD0: { Copyright: 'shop', Make: 'PhoneCo' },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' },
      })
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>')
      .toBuffer();
    const source = await sharp(geotagged).metadata();
    // The fixture really is geotagged: EXIF with the GPS IFD pointer (tag 0x8825, little-endian).
    expect(source.exif).toBeDefined();
    expect(source.exif!.indexOf(Buffer.from([0x25, 0x88]))).toBeGreaterThan(0);
    expect(source.xmp).toBeDefined();

    for (const accepts of [ALL, WEBP, NONE]) {
      const out = await transformImage(geotagged, req({ width: 100, accepts }), LIMITS);
      const meta = await sharp(out.data).metadata();
      expect(meta.exif).toBeUndefined();
      expect(meta.xmp).toBeUndefined();
      expect(meta.iptc).toBeUndefined();
      expect(out.data.includes(Buffer.from('Exif\0\0'))).toBe(false);
      expect(out.data.includes(Buffer.from('PhoneCo'))).toBe(false);
    }
  });

  test('converted to sRGB with an sRGB profile, also from a Display P3 source', async () => {
    const p3 = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#20c040' } })
      .withIccProfile('p3')
      .jpeg()
      .toBuffer();
    expect(iccText((await sharp(p3).metadata()).icc)).toContain('P3');

    for (const accepts of [ALL, WEBP, NONE]) {
      const out = await transformImage(p3, req({ width: 100, accepts }), LIMITS);
      const meta = await sharp(out.data).metadata();
      expect(meta.space).toBe('srgb');
      expect(meta.hasProfile).toBe(true);
      expect(iccText(meta.icc)).toContain('sRGB');
      expect(iccText(meta.icc)).not.toContain('P3');
    }
  });

  test('a CMYK JPEG comes out as sRGB', async () => {
    const cmyk = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#ff8000' } })
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const out = await transformImage(cmyk, req({ width: 50, accepts: WEBP }), LIMITS);
    const meta = await sharp(out.data).metadata();
    expect(meta.space).toBe('srgb');
    expect(meta.channels).toBe(3);
    const [r, g, b] = await pixel(out.data, 25, 25);
    expect(r).toBeGreaterThan(200); // still orange, not inverted or grey
    expect(g).toBeGreaterThan(90);
    expect(g).toBeLessThan(200);
    expect(b).toBeLessThan(60);
  });
});

describe('transparency', () => {
  test('kept for png, webp and avif', async () => {
    for (const format of ['png', 'webp', 'avif'] as const) {
      const out = await transformImage(translucentPng, req({ width: 150, format }), LIMITS);
      const meta = await sharp(out.data).metadata();
      expect(meta.hasAlpha).toBe(true);
      const [r, , , alpha] = await pixel(out.data, 75, 50);
      expect(Math.abs(alpha - 128)).toBeLessThanOrEqual(6);
      expect(r).toBeGreaterThan(200);
    }
  });

  test('flattened onto white for jpeg', async () => {
    const out = await transformImage(translucentPng, req({ width: 150, format: 'jpeg' }), LIMITS);
    const meta = await sharp(out.data).metadata();
    expect(meta.hasAlpha).toBe(false);
    expect(meta.channels).toBe(3);
    // 50% red over white is pink (255, 128, 128), not the dark red a black background gives.
    const [r, g, b] = await pixel(out.data, 75, 50);
    expect(r).toBeGreaterThan(240);
    expect(Math.abs(g - 128)).toBeLessThanOrEqual(8);
    expect(Math.abs(b - 128)).toBeLessThanOrEqual(8);
  });
});

describe('animation', () => {
  test('probe sees the frames', async () => {
    const info = await probeImage(animatedGif, LIMITS);
    expect(info).toMatchObject({ width: 64, height: 48, format: 'gif', animated: true });
  });

  test('stays animated as webp when webp is accepted', async () => {
    const out = await transformImage(animatedGif, req({ width: 32, accepts: ALL }), LIMITS);
    expect(out.format).toBe('webp');
    expect([out.width, out.height]).toEqual([32, 24]); // one frame's size, not the strip's
    const meta = await sharp(out.data).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.pages).toBe(3);
    expect([meta.width, meta.height]).toEqual([32, 24]);
    expect(meta.delay).toEqual([100, 100, 100]);
  });

  test('stays animated as gif without webp support', async () => {
    const out = await transformImage(animatedGif, req({ width: 32, height: 32, fit: 'cover', accepts: NONE }), LIMITS);
    expect(out.format).toBe('gif');
    expect([out.width, out.height]).toEqual([32, 32]);
    const meta = await sharp(out.data).metadata();
    expect(meta.format).toBe('gif');
    expect(meta.pages).toBe(3);
  });

  test('an explicit still format is refused, never the first frame served', async () => {
    for (const format of ['jpeg', 'png', 'avif'] as const) {
      const err = await rejection(transformImage(animatedGif, req({ width: 32, format, accepts: ALL }), LIMITS));
      expect(err.code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
      expect(err.message).toMatch(/animated images are served as webp or gif/);
    }
  });

  test('chooseFormat: auto is webp or gif, explicit webp stays webp, explicit still formats throw', () => {
    const animation: SourceInfo = { width: 64, height: 48, format: 'gif', animated: true, hasAlpha: true };
    expect(chooseFormat(animation, req({ accepts: ALL }))).toBe('webp'); // never avif
    expect(chooseFormat(animation, req({ accepts: NONE }))).toBe('gif');
    expect(chooseFormat({ ...animation, format: 'webp' }, req({ accepts: NONE }))).toBe('gif');
    expect(chooseFormat(animation, req({ format: 'webp', accepts: NONE }))).toBe('webp');
    expect(thrown(() => chooseFormat(animation, req({ format: 'png' }))).code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
  });

  test('the pixel limit counts every frame', async () => {
    // One frame (3072 px) is within the limit, the three together (9216 px) are not.
    const err = await rejection(probeImage(animatedGif, { ...LIMITS, maxInputPixels: 5000 }));
    expect(err.code).toBe('CDN_ERR_IMAGE_TOO_LARGE');
    expect(err.message).toMatch(/3 frames/);
  });
});

describe('refusals', () => {
  test('a 20000x20000 PNG bomb is refused from its header, fast and without decoding', async () => {
    expect(bombPng.length).toBeLessThan(5 * 1024 * 1024);
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const err = await rejection(transformImage(bombPng, req({ width: 100, accepts: ALL }), LIMITS));
    const elapsed = performance.now() - started;
    const grown = process.memoryUsage().rss - rssBefore;
    expect(err.code).toBe('CDN_ERR_IMAGE_TOO_LARGE');
    expect(err.message).toContain('20000x20000');
    expect(elapsed).toBeLessThan(1000);
    expect(grown).toBeLessThan(100 * 1024 * 1024);

    const probed = await rejection(probeImage(bombPng, LIMITS));
    expect(probed.code).toBe('CDN_ERR_IMAGE_TOO_LARGE');
  });

  test('bytes that are no image are unsupported', async () => {
    for (const bytes of [randomBytes(4096), Buffer.from('hello, shoppers'), Buffer.alloc(0), landscapeJpeg.subarray(0, 40)]) {
      const err = await rejection(transformImage(bytes, req({ width: 100 }), LIMITS));
      expect(err.code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
    }
  });

  test('a readable header over corrupt pixel data is unsupported, the sharp error kept as cause', async () => {
    const noisy = await sharp({ create: { width: 300, height: 300, channels: 3, background: 'black', noise: { type: 'gaussian', mean: 128, sigma: 30 } } })
      .png()
      .toBuffer();
    const corrupt = Buffer.from(noisy);
    const idat = corrupt.indexOf(Buffer.from('IDAT'));
    for (let i = idat + 200; i < idat + 400; i++) {
      corrupt[i] ^= 0x55;
    }
    expect((await probeImage(corrupt, LIMITS)).width).toBe(300); // the header still reads
    const err = await rejection(transformImage(corrupt, req({ width: 100 }), LIMITS));
    expect(err.code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
    expect(err.cause).toBeInstanceOf(Error);
    expect(err.message).not.toMatch(/libpng|vips/); // libvips' words stay out of the client's message
  });

  test('SVG is refused unless allowed', async () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50"><rect width="100" height="50" fill="red"/></svg>';
    const disguised = [
      Buffer.from(svg),
      Buffer.from(`\ufeff \n<?xml version="1.0"?>\n${svg}`),
      gzipSync(svg), // SVGZ
      Buffer.from(`junk${svg}`), // libvips still hands this to librsvg
      Buffer.from(`\f${svg}`),
    ];
    for (const bytes of disguised) {
      const err = await rejection(transformImage(bytes, req({ width: 50 }), LIMITS));
      expect(err.code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
      expect((await rejection(probeImage(bytes, LIMITS))).code).toBe('CDN_ERR_IMAGE_UNSUPPORTED');
    }
    expect((await rejection(probeImage(Buffer.from(svg), LIMITS))).message).toMatch(/SVG is not transformed/);
    expect((await rejection(probeImage(gzipSync(svg), LIMITS))).message).toMatch(/SVG is not transformed/);

    const allowed = await transformImage(Buffer.from(svg), req(), { ...LIMITS, allowSvg: true });
    expect(allowed.format).toBe('png'); // rasterised with alpha: an SVG's background is transparent
    expect([allowed.width, allowed.height]).toEqual([100, 50]);
  });

  test('an output over maxOutputBytes is too large', async () => {
    const err = await rejection(transformImage(landscapeJpeg, req({ width: 200 }), { ...LIMITS, maxOutputBytes: 100 }));
    expect(err.code).toBe('CDN_ERR_IMAGE_TOO_LARGE');
    expect(err.message).toMatch(/limit is 100/);
  });

  test('parameters that slipped past the caller are refused before sharp sees them', async () => {
    for (const bad of [{ quality: 0 }, { quality: 101 }, { quality: 7.5 }, { width: 0 }, { height: -1 }, { width: 1.5 }]) {
      const err = await rejection(transformImage(landscapeJpeg, req(bad), LIMITS));
      expect(err.code).toBe('CDN_ERR_IMAGE_PARAMS_INVALID');
    }
  });

  test('a pipeline that runs past the timeout becomes CDN_ERR_IMAGE_TIMEOUT', async () => {
    // 49 MP of noise (under the 50 MP limit) deflated as PNG takes ~2.3 s on one core
    // here; libvips gives up at 1 s. Stored uncompressed, the input is quick to make.
    const side = 7000;
    const noise = await sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const started = performance.now();
    const err = await rejection(transformImage(noise, req({ format: 'png' }), { ...LIMITS, timeoutSeconds: 1 }));
    expect(err.code).toBe('CDN_ERR_IMAGE_TIMEOUT');
    expect(err.cause).toBeInstanceOf(Error);
    expect(performance.now() - started).toBeLessThan(3000); // killed at ~1 s, not run to the end
  });
});
