import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time bearer token check. Both sides are hashed first so that the comparison
 * runs on equal-length buffers and its duration says nothing about the token's length.
 */
export class BearerTokenVerifier {
  readonly #expected: Buffer;

  constructor(token: string) {
    this.#expected = digest(token);
  }

  /** `authorization` is the raw header value, e.g. "Bearer abc". */
  verify(authorization: string | undefined): boolean {
    if (authorization === undefined) {
      return false;
    }
    const match = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(authorization);
    if (match === null) {
      return false;
    }
    return timingSafeEqual(digest(match[1]), this.#expected);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
