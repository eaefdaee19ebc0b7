import { createHmac } from 'node:crypto';

/** The image parameters a signature covers, and the two it adds. */
const SIGNED_NAMES: ReadonlySet<string> = new Set(['w', 'h', 'fit', 'q', 'fmt', 'dpr', 'exp', 'kid']);

/**
 * The query of a signed image URL (docs/images.md): `params` plus `kid`, `exp` when
 * given (Unix seconds) and `sig`, the hex HMAC-SHA256 under the key of the message
 * `<path>?<name>=<value>&...` over the image parameters, `kid` and `exp`, names
 * sorted. The edge (edge/lua/cdn/edge/images.lua) rebuilds the same message.
 */
export function signImageQuery(path: string, params: Record<string, string | number>, key: { id: string; secret: string }, expiresAt?: number): string {
  const all: Record<string, string> = { kid: key.id };
  for (const [name, value] of Object.entries(params)) all[name] = String(value);
  if (expiresAt !== undefined) all.exp = String(Math.floor(expiresAt));
  const message = `${path}?${Object.keys(all)
    .filter((name) => SIGNED_NAMES.has(name))
    .sort()
    .map((name) => `${name}=${all[name]}`)
    .join('&')}`;
  const sig = createHmac('sha256', key.secret).update(message).digest('hex');
  return new URLSearchParams({ ...all, sig }).toString();
}
