import { signedQuery } from '../common/url-signature';

/** What a download token says (docs/downloads.md). */
export interface DownloadClaims {
  /** Unix seconds after which the token is refused. */
  readonly exp: number;
  /** Unix seconds it was issued: a revocation by key refuses tokens issued until then. */
  readonly iat: number;
  /** The token's id, for revocation and use counting. */
  readonly tid: string;
  /** Downloads allowed (bytes served up to uses x the object's size, fleet-wide). */
  readonly uses?: number;
  /** The only client address it works from. */
  readonly ip?: string;
}

/**
 * The query of a signed download URL: the claims, `kid` and `sig`, the hex
 * HMAC-SHA256 under the key of `dl\n<path>?<claims and kid, names sorted>`. The "dl"
 * line keeps a download signature from ever passing as a signed image URL (whose
 * message is the path alone). The edge (edge/lua/cdn/edge/downloads.lua) rebuilds it.
 */
export function signDownloadQuery(path: string, claims: DownloadClaims, key: { id: string; secret: string }): string {
  const fields: Record<string, string> = { exp: String(claims.exp), iat: String(claims.iat), kid: key.id, tid: claims.tid };
  if (claims.uses !== undefined) fields.uses = String(claims.uses);
  if (claims.ip !== undefined) fields.ip = claims.ip;
  return signedQuery('dl\n', path, fields, key.secret);
}
