import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiToken, Scope } from '../config/origin-config';

/**
 * Constant-time bearer token lookup. Every configured token is compared, always, on
 * sha256 digests (equal lengths), so neither the duration nor an early exit says which
 * token, or how much of one, matched.
 */
export class BearerTokenVerifier {
  readonly #entries: readonly { readonly digest: Buffer; readonly token: ApiToken }[];

  constructor(tokens: readonly ApiToken[]) {
    this.#entries = tokens.map((token) => ({ digest: digest(token.token.reveal()), token }));
  }

  /** `authorization` is the raw header value, e.g. "Bearer abc". Null when nothing matches. */
  identify(authorization: string | undefined): ApiToken | null {
    if (authorization === undefined) {
      return null;
    }
    const match = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(authorization);
    if (match === null) {
      return null;
    }
    const presented = digest(match[1]);
    let found: ApiToken | null = null;
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.digest)) {
        found = entry.token;
      }
    }
    return found;
  }
}

/** `admin` holds every scope. */
export function hasScope(token: ApiToken, scope: Scope): boolean {
  return token.scopes.includes('admin') || token.scopes.includes(scope);
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
