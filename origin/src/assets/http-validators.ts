/**
 * Conditional requests and byte ranges (RFC 9110 §13, §14) for public delivery.
 * Pure functions of the request headers and the asset's validators.
 */

export interface Validators {
  /** The strong ETag, quoted: "\"<sha256>\"". */
  readonly etag: string;
  /** Epoch ms of the last change (HTTP dates have whole seconds). */
  readonly lastModifiedMs: number;
}

/**
 * RFC 9110 13.1.2 / 13.1.3: If-None-Match (weak comparison) decides when present, and
 * If-Modified-Since is then ignored.
 */
export function isNotModified(validators: Validators, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined): boolean {
  if (ifNoneMatch !== undefined) {
    const candidates = ifNoneMatch.split(',').map((tag) => tag.trim());
    return candidates.some((tag) => tag === '*' || tag.replace(/^W\//, '') === validators.etag);
  }
  if (ifModifiedSince !== undefined) {
    const since = Date.parse(ifModifiedSince);
    return Number.isFinite(since) && wholeSeconds(validators.lastModifiedMs) <= since;
  }
  return false;
}

export type RangeDecision =
  /** Serve the whole representation (no Range, an ignored one, or several ranges). */
  | { readonly kind: 'full' }
  | { readonly kind: 'partial'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

/**
 * One `bytes` range is served as 206. Several ranges are answered with the whole
 * representation (200), which RFC 9110 14.2 allows and which spares us
 * multipart/byteranges (edges and players ask for one range). A syntactically invalid
 * Range is ignored (200); a valid one past the end is 416.
 */
export function decideRange(range: string | undefined, size: number): RangeDecision {
  if (range === undefined) {
    return { kind: 'full' };
  }
  const match = /^bytes=(.*)$/i.exec(range.trim());
  if (match === null) {
    return { kind: 'full' }; // another unit
  }
  const specs = match[1].split(',').map((spec) => spec.trim());
  if (specs.length !== 1) {
    return { kind: 'full' };
  }
  const spec = /^(\d*)-(\d*)$/.exec(specs[0]);
  if (spec === null || (spec[1] === '' && spec[2] === '')) {
    return { kind: 'full' };
  }
  if (spec[1] === '') {
    const suffix = Number(spec[2]);
    if (suffix === 0 || size === 0) {
      return { kind: 'unsatisfiable' };
    }
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(spec[1]);
  const last = spec[2] === '' ? Infinity : Number(spec[2]);
  if (last < start) {
    return { kind: 'full' }; // invalid: ignored
  }
  if (start >= size) {
    return { kind: 'unsatisfiable' };
  }
  return { kind: 'partial', start, end: Math.min(last, size - 1) };
}

/**
 * If-Range (RFC 9110 13.1.5): the range applies only when the validator still matches
 * (strong comparison for ETags, exact date for Last-Modified); otherwise the whole
 * representation is sent.
 */
export function ifRangeAllows(validators: Validators, ifRange: string | undefined): boolean {
  if (ifRange === undefined) {
    return true;
  }
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    return value === validators.etag;
  }
  const date = Date.parse(value);
  return Number.isFinite(date) && date === wholeSeconds(validators.lastModifiedMs);
}

function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
