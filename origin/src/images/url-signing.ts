import { signedQuery } from '../common/url-signature';

/** The image parameters a signature covers, and the two it adds. */
const SIGNED_NAMES: ReadonlySet<string> = new Set(['w', 'h', 'fit', 'q', 'fmt', 'dpr', 'exp', 'kid']);

/**
 * The query of a signed image URL (docs/images.md): `params` plus `kid`, `exp` when
 * given (Unix seconds) and `sig`, the hex HMAC-SHA256 under the key of the message
 * `<path>?<name>=<value>&...` over the image parameters, `kid` and `exp`, names
 * sorted. The edge (edge/lua/cdn/edge/images.lua) rebuilds the same message.
 */
export function signImageQuery(path: string, params: Record<string, string | number>, key: { id: string; secret: string }, expiresAt?: number): string {
  const fields: Record<string, string> = { kid: key.id };
  const unsigned: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) (SIGNED_NAMES.has(name) ? fields : unsigned)[name] = String(value);
  if (expiresAt !== undefined) fields.exp = String(Math.floor(expiresAt));
  const extra = new URLSearchParams(unsigned).toString();
  return signedQuery('', path, fields, key.secret) + (extra ? `&${extra}` : '');
}
