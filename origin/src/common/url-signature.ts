import { createHmac } from 'node:crypto';

/**
 * A signed URL's query: `fields` plus `sig`, the hex HMAC-SHA256 under `secret` of
 * `<prefix><path>?<name>=<value>&...` over every field, names sorted. The edge
 * rebuilds the same message (edge/lua/cdn/edge/signature.lua, verify_fields).
 */
export function signedQuery(prefix: string, path: string, fields: Record<string, string>, secret: string): string {
  const message = `${prefix}${path}?${Object.keys(fields)
    .sort()
    .map((name) => `${name}=${fields[name]}`)
    .join('&')}`;
  const sig = createHmac('sha256', secret).update(message).digest('hex');
  return new URLSearchParams({ ...fields, sig }).toString();
}
