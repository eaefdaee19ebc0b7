/**
 * Content sniffing of uploads. The CDN transforms images and browsers render HTML, SVG,
 * scripts and styles inline, so for those declared types the bytes must agree: an
 * "image/png" that is really HTML is stored-XSS waiting for a shopper, and a JPEG
 * declared as PNG breaks the image pipeline. Other types (downloads, fonts, PDFs,
 * octet-stream) are stored as declared.
 *
 * Signatures follow the WHATWG MIME Sniffing standard (images, HTML tags) plus AVIF's
 * ISO-BMFF brand; only the first SNIFF_BYTES are looked at.
 */

export type SniffedType =
  | 'image/png'
  | 'image/jpeg'
  | 'image/gif'
  | 'image/webp'
  | 'image/avif'
  | 'image/bmp'
  | 'image/x-icon'
  | 'image/svg+xml'
  | 'text/html'
  | 'application/pdf'
  | 'application/zip'
  | 'application/gzip'
  | 'font/woff'
  | 'font/woff2';

const RASTER_IMAGES: ReadonlySet<string> = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
  'image/x-icon',
  'image/vnd.microsoft.icon',
]);
const SCRIPT_OR_STYLE: ReadonlySet<string> = new Set([
  'text/css',
  'text/javascript',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'text/ecmascript',
  'application/json',
  'application/ld+json',
  'application/manifest+json',
]);
/** Types that are binary containers: a script, style or HTML document is none of these. */
const BINARY_TYPES: ReadonlySet<SniffedType> = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
  'image/x-icon',
  'application/pdf',
  'application/zip',
  'application/gzip',
  'font/woff',
  'font/woff2',
]);

const HTML_TAGS = ['<!doctype html', '<html', '<head', '<script', '<iframe', '<h1', '<div', '<font', '<table', '<a', '<style', '<title', '<b', '<body', '<br', '<p', '<!--'];

export function sniffContentType(head: Buffer): SniffedType | null {
  const starts = (bytes: readonly number[], offset = 0): boolean =>
    head.length >= offset + bytes.length && bytes.every((b, i) => head[offset + i] === b);
  const ascii = (text: string, offset = 0): boolean => starts([...Buffer.from(text, 'latin1')], offset);

  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (starts([0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (ascii('GIF87a') || ascii('GIF89a')) return 'image/gif';
  if (ascii('RIFF') && ascii('WEBPVP', 8)) return 'image/webp';
  if (ascii('ftyp', 4) && (ascii('avif', 8) || ascii('avis', 8))) return 'image/avif';
  if (ascii('BM')) return 'image/bmp';
  if (starts([0x00, 0x00, 0x01, 0x00]) || starts([0x00, 0x00, 0x02, 0x00])) return 'image/x-icon';
  if (ascii('%PDF-')) return 'application/pdf';
  if (starts([0x50, 0x4b, 0x03, 0x04])) return 'application/zip';
  if (starts([0x1f, 0x8b, 0x08])) return 'application/gzip';
  if (ascii('wOFF')) return 'font/woff';
  if (ascii('wOF2')) return 'font/woff2';

  const text = leadingText(head);
  if (/^<svg[\s>]/.test(text) || (/^<\?xml[\s]/.test(text) && /<svg[\s>]/.test(text))) return 'image/svg+xml';
  if (text.startsWith('<!doctype svg')) return 'image/svg+xml';
  for (const tag of HTML_TAGS) {
    if (text.startsWith(tag)) {
      const next = text.charAt(tag.length);
      // WHATWG: the tag must end with a space or ">" ("<br>" yes, "<brand" no).
      if (tag === '<!--' || next === ' ' || next === '>' || next === '\t' || next === '\n' || next === '\r') {
        return 'text/html';
      }
    }
  }
  return null;
}

/**
 * Returns a reason when `declared` (a media type, parameters allowed) must not be
 * stored with these first bytes, or undefined when it may.
 */
export function checkDeclaredType(declared: string, head: Buffer): string | undefined {
  const essence = declared.split(';')[0].trim().toLowerCase();
  const sniffed = sniffContentType(head);
  const found = sniffed === null ? 'no recognisable signature' : sniffed;

  if (RASTER_IMAGES.has(essence)) {
    const expected = essence === 'image/vnd.microsoft.icon' ? 'image/x-icon' : essence;
    if (sniffed !== expected) {
      return `declared ${essence} but the bytes are ${found}`;
    }
    return undefined;
  }
  if (essence === 'image/svg+xml') {
    return sniffed === 'image/svg+xml' ? undefined : `declared image/svg+xml but the bytes are ${found}`;
  }
  if (essence === 'text/html' || essence === 'application/xhtml+xml') {
    // HTML is too free-form to require a signature; a binary file is clearly not HTML.
    return sniffed !== null && BINARY_TYPES.has(sniffed) ? `declared ${essence} but the bytes are ${sniffed}` : undefined;
  }
  if (SCRIPT_OR_STYLE.has(essence)) {
    // Scripts and styles have no signature; markup or a binary is clearly not one.
    return sniffed === null ? undefined : `declared ${essence} but the bytes are ${sniffed}`;
  }
  return undefined;
}

/** The first bytes as lower-case text, after a UTF-8 BOM and whitespace. */
function leadingText(head: Buffer): string {
  let start = 0;
  if (head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) {
    start = 3;
  }
  while (start < head.length && (head[start] === 0x20 || head[start] === 0x09 || head[start] === 0x0a || head[start] === 0x0c || head[start] === 0x0d)) {
    start++;
  }
  return head.subarray(start).toString('latin1').toLowerCase();
}
