import { createHash } from 'node:crypto';
import { cdnError } from '../../../infra/model/errors';
import { MAX_IMAGE_SIDE } from '../../contract/images';
import type { Accepts, Fit, RequestedFormat } from './transform';

/**
 * The image query of a delivery request, as the edges send it: already canonical
 * (edge/lua/cdn/edge/images.lua snaps sizes, folds `dpr` into the width, drops every
 * other parameter and checks signatures). The edge is the policy point; here only
 * the hard limits are enforced, so a request that reaches the delivery listener by
 * another way still cannot ask for more than MAX_IMAGE_SIDE or an unknown format.
 */
export interface ImageQuery {
  readonly width?: number;
  readonly height?: number;
  readonly fit: Fit;
  readonly quality: number;
  readonly format: RequestedFormat;
}

const FORMATS: ReadonlySet<string> = new Set(['auto', 'avif', 'webp', 'jpeg', 'png']);
const FITS: ReadonlySet<string> = new Set(['cover', 'contain', 'inside']);
const GRAMMAR = ['w', 'h', 'fit', 'q', 'fmt', 'dpr'] as const;

function invalid(reason: string): never {
  throw cdnError('CDN_ERR_IMAGE_PARAMS_INVALID', reason);
}

function whole(value: string, name: string, lo: number, hi: number): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < lo || Number(value) > hi) invalid(`${name} must be a whole number from ${lo} to ${hi}`);
  return Number(value);
}

/** The image query of a raw URL query string, or null when it asks for the original bytes. */
export function parseImageQuery(rawQuery: string, defaultQuality: number): ImageQuery | null {
  const params = new URLSearchParams(rawQuery);
  const given: Partial<Record<(typeof GRAMMAR)[number], string>> = {};
  for (const name of GRAMMAR) {
    const all = params.getAll(name);
    if (all.length > 1) invalid(`${name} must be given once`);
    if (all.length === 1) given[name] = all[0];
  }
  if (given.w === undefined && given.h === undefined && given.q === undefined && given.fmt === undefined) return null;
  const dpr = given.dpr === undefined ? 1 : Number(given.dpr);
  if (!(dpr >= 1 && dpr <= 3)) invalid('dpr must be a number from 1 to 3');
  const side = (value: string | undefined, name: string) => (value === undefined ? undefined : Math.min(MAX_IMAGE_SIDE, Math.ceil(whole(value, name, 1, MAX_IMAGE_SIDE) * dpr)));
  const format = given.fmt ?? 'auto';
  if (!FORMATS.has(format)) invalid('fmt must be auto, avif, webp, jpeg or png');
  const fit = given.fit ?? 'cover';
  if (!FITS.has(fit)) invalid('fit must be cover, contain or inside');
  return {
    width: side(given.w, 'w'),
    height: side(given.h, 'h'),
    fit: fit as Fit,
    quality: given.q === undefined ? defaultQuality : whole(given.q, 'q', 1, 100),
    format: format as RequestedFormat,
  };
}

/** What a browser takes, from the request's Accept (the edge reduces it to one of three values). */
export function acceptsOf(accept: string | undefined): Accepts {
  const avif = accept?.includes('image/avif') ?? false;
  // every browser that takes AVIF takes WebP (the fallback for variants too large to encode as AVIF quickly)
  return { avif, webp: avif || (accept?.includes('image/webp') ?? false) };
}

/**
 * The variant's name: everything that decides its bytes, given the source. With
 * fmt=auto the Accept class is part of it (an AVIF and a JPEG answer to one URL).
 */
export function variantName(query: ImageQuery, accepts: Accepts): string {
  const format = query.format === 'auto' ? `auto-${accepts.avif ? 'avif' : accepts.webp ? 'webp' : 'any'}` : query.format;
  const fit = query.width !== undefined && query.height !== undefined ? `-${query.fit}` : '';
  return `${query.width ?? ''}x${query.height ?? ''}${fit}-q${query.quality}-${format}`;
}

/** A variant's strong ETag: the source's sha256 and the variant's name, hashed (a source change changes it). */
export function variantEtag(sourceSha256: string, name: string): string {
  return `"${createHash('sha256').update(`${sourceSha256}/${name}`).digest('hex').slice(0, 40)}"`;
}
