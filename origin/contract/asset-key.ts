/**
 * Asset keys. A key is the URL path of an asset without its leading slash, exactly as
 * sent on the wire: it is taken from the raw request URL, never from a decoded route
 * parameter, so percent-encoded tricks ("%2e%2e", "%2f", "%00") cannot smuggle a
 * traversal past the check; "%" is simply not a key character.
 */

export const MAX_KEY_LENGTH = 1024;

const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9/_.-]{0,1023}$/;
const KEY_CHAR = /[A-Za-z0-9/_.-]/;

/** First segments and whole keys that belong to the origin's own routes (the edges get them too, see edge/render.ts). */
export const RESERVED_FIRST_SEGMENTS: ReadonlySet<string> = new Set(['v1']);
export const RESERVED_KEYS: ReadonlySet<string> = new Set([
  'healthz',
  'readyz',
  'metrics',
  'docs',
  'docs/openapi.json',
  'docs/swagger-ui.css',
  'docs/swagger-ui-bundle.js',
]);

export type KeyCheck =
  | { readonly ok: true; readonly key: string }
  | { readonly ok: false; readonly reason: string; readonly reserved: boolean };

export function checkAssetKey(key: string): KeyCheck {
  const bad = (reason: string, reserved = false): KeyCheck => ({ ok: false, reason, reserved });

  if (key.length === 0) {
    return bad('the key is empty');
  }
  if (key.length > MAX_KEY_LENGTH) {
    return bad(`the key is longer than ${MAX_KEY_LENGTH} characters (${key.length})`);
  }
  for (let i = 0; i < key.length; i++) {
    const char = key[i];
    if (!KEY_CHAR.test(char)) {
      const hint = char === '%' ? '; percent-encoding is not accepted in keys' : '';
      return bad(`character ${describeChar(char)} at position ${i} is not allowed (allowed: A-Z a-z 0-9 / _ . -${hint})`);
    }
  }
  if (!/^[A-Za-z0-9]/.test(key)) {
    return bad('the key must start with a letter or a digit');
  }
  if (key.endsWith('/')) {
    return bad("the key must not end with '/'");
  }
  const segments = key.split('/');
  if (segments.includes('')) {
    return bad("the key contains an empty path segment ('//')");
  }
  if (segments.some((segment) => segment === '.' || segment === '..')) {
    return bad("the key contains a '.' or '..' path segment");
  }
  if (RESERVED_FIRST_SEGMENTS.has(segments[0]) || RESERVED_KEYS.has(key)) {
    return bad("the key is reserved for the origin's own routes", true);
  }
  // Belt and braces: the rules above imply the documented pattern.
  if (!KEY_PATTERN.test(key)) {
    return bad('the key does not match ^[A-Za-z0-9][A-Za-z0-9/_.-]{0,1023}$');
  }
  return { ok: true, key };
}

/**
 * The raw key of a request: the undecoded URL path after `prefix`, without the query.
 * Returns null when the path does not start with the prefix (e.g. an absolute-form URL).
 */
export function rawKeyFromUrl(rawUrl: string, prefix: string): string | null {
  const end = rawUrl.search(/[?#]/);
  const path = end === -1 ? rawUrl : rawUrl.slice(0, end);
  if (!path.startsWith(prefix)) {
    return null;
  }
  return path.slice(prefix.length);
}

function describeChar(char: string): string {
  const code = char.codePointAt(0) ?? 0;
  const hex = `0x${code.toString(16).toUpperCase().padStart(2, '0')}`;
  return code >= 0x21 && code <= 0x7e ? `'${char}' (${hex})` : hex;
}
