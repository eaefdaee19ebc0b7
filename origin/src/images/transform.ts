/**
 * Image variants: the pure transformation of one stored image into one variant, with
 * sharp (libvips). No Nest, no HTTP, no storage: bytes in, bytes out, or a coded error.
 *
 * The order of defence matters. Every source is probed first from its header alone
 * (probeImage), so that a decompression bomb (a 20000x20000 PNG is ~1 MB on the wire
 * and 1.2 GB decoded) is refused before libvips allocates a single row; sharp's own
 * limitInputPixels is a second guard in case a header lies. Nothing sharp throws leaves
 * this module raw: a timeout, a pixel limit and everything else (corrupt or hostile
 * input) become CDN_ERR_IMAGE_TIMEOUT, _TOO_LARGE and _UNSUPPORTED, with the sharp error
 * kept as `cause` for the log and never in the message (which reaches the client).
 */
import { open } from 'node:fs/promises';
import sharp from 'sharp';
import { CdnError, cdnError } from '../../../infra/model/errors';

export type OutputFormat = 'avif' | 'webp' | 'jpeg' | 'png' | 'gif';
export type RequestedFormat = 'auto' | 'avif' | 'webp' | 'jpeg' | 'png';
export type Fit = 'cover' | 'contain' | 'inside';
/** What the browser accepts, from the request's Accept (already reduced by the edge). */
export interface Accepts {
  readonly avif: boolean;
  readonly webp: boolean;
}
export interface TransformRequest {
  readonly width?: number; // target width in px (already snapped/validated by the caller)
  readonly height?: number;
  readonly fit: Fit; // only matters when both width and height are given
  readonly quality: number; // 1-100
  readonly format: RequestedFormat;
  readonly accepts: Accepts;
}
export interface TransformLimits {
  readonly maxInputPixels: number; // e.g. 50_000_000
  readonly maxOutputBytes: number; // e.g. 20 MiB
  readonly timeoutSeconds: number; // libvips timeout for the whole pipeline
  readonly allowSvg: boolean; // default false: SVG is never rasterised
}
export interface SourceInfo {
  readonly width: number;
  readonly height: number;
  readonly format: string;
  readonly animated: boolean;
  readonly hasAlpha: boolean;
}
export interface TransformedImage {
  readonly data: Buffer;
  readonly format: OutputFormat;
  readonly contentType: string; // image/avif, image/webp, image/jpeg, image/png, image/gif
  readonly width: number;
  readonly height: number;
}

/**
 * Above this many output pixels `auto` does not pick AVIF (WebP, or the source's format,
 * instead). sharp's timeout() is checked while libvips computes pixels, but libheif
 * encodes an AVIF only after the last pixel is in, so the timeout never fires during
 * the encode: measured on 2 cores, a 1280x960 AVIF (effort 4) took 2.8 s with a 1 s
 * timeout set, a 1920 one 5.8 s, a 7000x7000 one 281 s; a 640 px variant of a 12 MP
 * photo takes about 1.1 s of CPU as AVIF and 80 ms as WebP (bench/results/images.md).
 * About 1920x1080; an explicit format=avif (a
 * signed URL that asked for it) is still honoured.
 */
export const AVIF_MAX_AUTO_PIXELS = 1920 * 1080;

/** Bytes the format check looks at (looksLikeMarkupOrGzip reads up to 1 KiB). */
const HEAD_BYTES = 4096;

const CONTENT_TYPES: Readonly<Record<OutputFormat, string>> = {
  avif: 'image/avif',
  webp: 'image/webp',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
};

/**
 * The decoders a source may go through (sharp's metadata().format names; `heif` is AVIF).
 * sharp's prebuilt libvips reads exactly these (and SVG) from a buffer; the list is here
 * so that a libvips built with more loaders (PPM, FITS, ImageMagick...) does not widen
 * the parser surface that hostile bytes reach: those are no shop's product images.
 */
const RASTER_SOURCES: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'heif', 'tiff']);
/** Only these formats animate; a multi-page TIFF is served as its first page. */
const ANIMATED_FORMATS: ReadonlySet<string> = new Set(['gif', 'webp']);

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };
const TRANSPARENT = { r: 0, g: 0, b: 0, alpha: 0 };

/** Encoder settings the brief fixed; PNG level 9 costs several times level 6 for a few percent. */
const PNG_COMPRESSION_LEVEL = 6;
const AVIF_EFFORT = 4;

// libvips' operation cache keeps recent operations (and their pixels) to reuse them;
// every variant here is computed once and then cached by the CDN, so it would only hold
// memory the origin budgets itself. Concurrency is left to sharp's default (one libvips
// thread pool sized to the CPUs); TransformQueue bounds how many pipelines run.
sharp.cache(false);

/**
 * Reads only the header (never decodes pixels): dimensions AFTER EXIF orientation (a
 * 90°-rotated photo reports swapped width/height), format, animation, alpha. Throws
 * CDN_ERR_IMAGE_UNSUPPORTED for bytes sharp cannot read or SVG when !allowSvg,
 * CDN_ERR_IMAGE_TOO_LARGE when width*height (one frame; for animated, also
 * frames*pixels) exceeds maxInputPixels.
 */
/** The first bytes of a source: the buffer itself, or the start of the file a path names. */
async function headOf(input: Buffer | string): Promise<Buffer> {
  if (typeof input !== 'string') return input;
  const file = await open(input, 'r');
  try {
    const head = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await file.read(head, 0, HEAD_BYTES, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/**
 * `input` is the source's bytes, or the path of a local file holding them (filesystem
 * storage: libvips then reads the file itself, and no 2 MB copy of a photo passes
 * through the JS heap, whose GC cost the origin a fifth of its CPU in bench:images).
 */
export async function probeImage(input: Buffer | string, limits: TransformLimits): Promise<SourceInfo> {
  // Without SVG, only bytes that start like one of the raster formats reach a libvips
  // loader at all. libvips hands anything with "<svg" in its first kilobyte to librsvg
  // (also "junk<svg...", also gzip-compressed), so checking for SVG is not enough: the
  // XML parser would already have read the attacker's document.
  const head = await headOf(input);
  if (!limits.allowSvg && rasterSignature(head) === undefined) {
    throw looksLikeMarkupOrGzip(head)
      ? cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'SVG is not transformed')
      : cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'the bytes are not an image the origin can read');
  }

  let meta: sharp.Metadata;
  try {
    // limitInputPixels: false so that an oversized image still yields its header and is
    // refused below, with its dimensions and our limit (sharp's default limit, ~268 MP,
    // would otherwise throw a bare "exceeds pixel limit" first). metadata() decodes no pixels.
    meta = await sharp(input, { limitInputPixels: false, failOn: 'error' }).metadata();
  } catch (err) {
    throw cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'the bytes are not an image the origin can read', { cause: err });
  }

  const format = String(meta.format);
  if (format === 'svg' && !limits.allowSvg) {
    throw cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'SVG is not transformed');
  }
  if (!RASTER_SOURCES.has(format) && format !== 'svg') {
    throw cdnError('CDN_ERR_IMAGE_UNSUPPORTED', `${format} images are not transformed`);
  }

  // Without { animated: true } sharp reports one frame's size and the frame count in pages.
  const rawWidth = meta.width;
  const rawHeight = meta.height;
  if (!(rawWidth > 0 && rawHeight > 0)) {
    throw cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'the image has no dimensions');
  }
  const frames = meta.pages !== undefined && meta.pages > 1 ? meta.pages : 1;
  const animated = ANIMATED_FORMATS.has(format) && frames > 1;

  const framePixels = rawWidth * rawHeight;
  if (framePixels > limits.maxInputPixels) {
    throw cdnError(
      'CDN_ERR_IMAGE_TOO_LARGE',
      `${rawWidth}x${rawHeight} is ${framePixels} pixels, the limit is ${limits.maxInputPixels}`,
    );
  }
  // An animation is decoded whole (all frames stacked into one tall image), so the
  // limit covers all of its pixels: 1000 frames of 500x500 are 250 MP.
  if (animated && framePixels * frames > limits.maxInputPixels) {
    throw cdnError(
      'CDN_ERR_IMAGE_TOO_LARGE',
      `${frames} frames of ${rawWidth}x${rawHeight} are ${framePixels * frames} pixels, the limit is ${limits.maxInputPixels}`,
    );
  }

  // autoOrient carries the size after EXIF orientation (5-8 swap width and height).
  const width = meta.autoOrient?.width ?? rawWidth;
  const height = meta.autoOrient?.height ?? rawHeight;
  return { width, height, format, animated, hasAlpha: meta.hasAlpha };
}

/**
 * Picks the output format: auto -> avif if accepts.avif, else webp if accepts.webp, else
 * the source's format (jpeg stays jpeg, png stays png, gif stays gif, webp source with no
 * webp support -> png if alpha else jpeg, anything else (tiff, heif...) -> png if alpha
 * else jpeg). Animated sources: auto -> webp if accepted else gif (stays animated); an
 * explicit avif/jpeg/png for an animated source throws CDN_ERR_IMAGE_UNSUPPORTED
 * ("animated images are served as webp or gif") — never silently take the first frame.
 *
 * One exception to "auto -> avif": an output above AVIF_MAX_AUTO_PIXELS goes on to
 * webp (or the source's format), because the AVIF encode is outside the timeout.
 */
export function chooseFormat(source: SourceInfo, request: TransformRequest): OutputFormat {
  if (source.animated) {
    if (request.format === 'auto') {
      return request.accepts.webp ? 'webp' : 'gif';
    }
    if (request.format === 'webp') {
      return 'webp';
    }
    throw cdnError('CDN_ERR_IMAGE_UNSUPPORTED', `animated images are served as webp or gif, not ${request.format}`);
  }

  if (request.format !== 'auto') {
    return request.format;
  }
  if (request.accepts.avif) {
    const size = plannedSize(source, request);
    if (size.width * size.height <= AVIF_MAX_AUTO_PIXELS) {
      return 'avif';
    }
  }
  if (request.accepts.webp) {
    return 'webp';
  }
  switch (source.format) {
    case 'jpeg':
    case 'png':
    case 'gif':
      return source.format;
    default:
      // webp without webp support, tiff, heif/avif, svg: something every browser shows.
      return source.hasAlpha ? 'png' : 'jpeg';
  }
}

export async function transformImage(input: Buffer | string, request: TransformRequest, limits: TransformLimits): Promise<TransformedImage> {
  checkRequest(request);
  const source = await probeImage(input, limits);
  const format = chooseFormat(source, request);
  // JPEG has no alpha: the source is flattened onto white. A source without alpha gets
  // none either (contain's bars are white, not a new alpha channel on a photo).
  const outputAlpha = source.hasAlpha && format !== 'jpeg';

  let data: Buffer;
  let info: sharp.OutputInfo;
  try {
    let pipeline = sharp(input, {
      failOn: 'error',
      limitInputPixels: limits.maxInputPixels,
      // All frames, else sharp reads the first page only: never for a still image, so a
      // multi-page TIFF is not decoded whole.
      animated: source.animated,
    })
      // libvips checks the clock while it computes pixels (not while libheif encodes an
      // AVIF afterwards: see AVIF_MAX_AUTO_PIXELS); 0 would mean "no timeout".
      .timeout({ seconds: timeoutSeconds(limits.timeoutSeconds) })
      .autoOrient();

    if (request.width !== undefined || request.height !== undefined) {
      pipeline = pipeline.resize({
        width: request.width,
        height: request.height,
        fit: request.fit,
        // Never upscale: a bigger variant is only blurrier and heavier. (contain still
        // pads to the requested box; cover shrinks the box to what the source has.)
        withoutEnlargement: true,
        background: outputAlpha ? TRANSPARENT : WHITE,
      });
    }
    if (source.hasAlpha && format === 'jpeg') {
      pipeline = pipeline.flatten({ background: WHITE });
    }

    // No keep*/withMetadata: sharp writes no EXIF (GPS, camera serials), XMP or IPTC.
    // withIccProfile converts from the source's embedded profile (Display P3, Adobe RGB,
    // CMYK) to sRGB and embeds sRGB, so browsers without colour management and those
    // with it show the same colours. keepIccProfile would keep a P3 profile instead.
    pipeline = pipeline.toColourspace('srgb').withIccProfile('srgb');
    pipeline = encode(pipeline, format, request.quality);

    ({ data, info } = await pipeline.toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw fromSharpError(err, limits);
  }

  if (data.length > limits.maxOutputBytes) {
    throw cdnError('CDN_ERR_IMAGE_TOO_LARGE', `the ${format} variant is ${data.length} bytes, the limit is ${limits.maxOutputBytes}`);
  }
  return {
    data,
    format,
    contentType: CONTENT_TYPES[format],
    width: info.width,
    // An animation comes back as one tall strip of frames: its height is one frame's.
    height: source.animated && info.pageHeight !== undefined ? info.pageHeight : info.height,
  };
}

function encode(pipeline: sharp.Sharp, format: OutputFormat, quality: number): sharp.Sharp {
  switch (format) {
    case 'jpeg':
      // Progressive: the page shows a whole (blurry) image early; mozjpeg's trellis and
      // scan optimisation save ~10% for a few ms at variant sizes.
      return pipeline.jpeg({ quality, progressive: true, mozjpeg: true });
    case 'png':
      // Not interlaced: Adam7 makes PNGs bigger and browsers gain little from it.
      return pipeline.png({ progressive: false, compressionLevel: PNG_COMPRESSION_LEVEL });
    case 'webp':
      return pipeline.webp({ quality });
    case 'avif':
      return pipeline.avif({ quality, effort: AVIF_EFFORT });
    case 'gif':
      return pipeline.gif();
  }
}

/** What sharp throws, as a coded error; the sharp message stays in `cause` (it names libvips internals). */
function fromSharpError(err: unknown, limits: TransformLimits): CdnError {
  if (err instanceof CdnError) {
    return err;
  }
  const message = err instanceof Error ? err.message : String(err);
  // libvips' eval callback in sharp: vips_error("timeout", "%d%% complete").
  if (/^timeout:/m.test(message)) {
    return cdnError('CDN_ERR_IMAGE_TIMEOUT', `longer than ${timeoutSeconds(limits.timeoutSeconds)} s`, { cause: err });
  }
  if (message.includes('exceeds pixel limit')) {
    return cdnError('CDN_ERR_IMAGE_TOO_LARGE', `more than ${limits.maxInputPixels} pixels`, { cause: err });
  }
  return cdnError('CDN_ERR_IMAGE_UNSUPPORTED', 'the image could not be decoded or encoded', { cause: err });
}

/** sharp takes whole seconds, 0-3600, where 0 disables the timeout: round up, at least 1. */
function timeoutSeconds(seconds: number): number {
  return Math.min(3600, Math.max(1, Math.ceil(seconds)));
}

/**
 * The caller validates and snaps the parameters; this only keeps a value that slipped
 * through from reaching sharp, whose argument errors would otherwise look like a bad image.
 */
function checkRequest(request: TransformRequest): void {
  // 16383 is WebP's largest dimension, and far beyond any snapped width.
  const dimension = (name: string, value: number | undefined): void => {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= 0x3fff)) {
      throw cdnError('CDN_ERR_IMAGE_PARAMS_INVALID', `${name} must be an integer from 1 to 16383`);
    }
  };
  dimension('width', request.width);
  dimension('height', request.height);
  if (!(Number.isInteger(request.quality) && request.quality >= 1 && request.quality <= 100)) {
    throw cdnError('CDN_ERR_IMAGE_PARAMS_INVALID', 'quality must be an integer from 1 to 100');
  }
}

/**
 * The variant's size as sharp will make it with withoutEnlargement (checked against
 * sharp 0.35): only used to decide whether AVIF is affordable, so approximate rounding is fine.
 */
function plannedSize(source: SourceInfo, request: TransformRequest): { width: number; height: number } {
  const { width: sw, height: sh } = source;
  const { width: w, height: h } = request;
  if (w !== undefined && h !== undefined) {
    switch (request.fit) {
      case 'contain':
        return { width: w, height: h }; // padded to the box, also when the source is smaller
      case 'cover':
        return { width: Math.min(w, sw), height: Math.min(h, sh) };
      case 'inside': {
        const scale = Math.min(1, w / sw, h / sh);
        return { width: Math.round(sw * scale), height: Math.round(sh * scale) };
      }
    }
  }
  const scale = w !== undefined ? Math.min(1, w / sw) : h !== undefined ? Math.min(1, h / sh) : 1;
  return { width: Math.round(sw * scale), height: Math.round(sh * scale) };
}

/** The raster format the first bytes announce (as RASTER_SOURCES names it), if any. */
function rasterSignature(input: Buffer): string | undefined {
  const starts = (offset: number, ...bytes: number[]): boolean =>
    input.length >= offset + bytes.length && bytes.every((byte, i) => input[offset + i] === byte);
  const ascii = (offset: number, text: string): boolean => starts(offset, ...Buffer.from(text, 'latin1'));
  if (starts(0, 0xff, 0xd8, 0xff)) {
    return 'jpeg';
  }
  if (starts(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) {
    return 'png';
  }
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) {
    return 'gif';
  }
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) {
    return 'webp';
  }
  if (ascii(4, 'ftyp')) {
    return 'heif'; // ISO-BMFF: AVIF (libheif checks the brand)
  }
  // TIFF and BigTIFF, both byte orders.
  if (starts(0, 0x49, 0x49, 0x2a, 0x00) || starts(0, 0x4d, 0x4d, 0x00, 0x2a) || starts(0, 0x49, 0x49, 0x2b, 0x00) || starts(0, 0x4d, 0x4d, 0x00, 0x2b)) {
    return 'tiff';
  }
  return undefined;
}

/** '<' after an optional UTF-8 BOM and whitespace (SVG, XML, HTML), or the gzip magic (SVGZ): for the message only. */
function looksLikeMarkupOrGzip(input: Buffer): boolean {
  if (input.length >= 2 && input[0] === 0x1f && input[1] === 0x8b) {
    return true;
  }
  let i = input.length >= 3 && input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0;
  while (i < input.length && i < 1024 && (input[i] === 0x20 || input[i] === 0x09 || input[i] === 0x0a || input[i] === 0x0d)) {
    i++;
  }
  return input[i] === 0x3c;
}
