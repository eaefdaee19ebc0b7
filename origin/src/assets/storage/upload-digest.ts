import { createHash, type Hash } from 'node:crypto';
import type { ReceivedContent } from './storage-driver';

/** Enough for every signature content-sniffing.ts knows, including SVG after an XML prolog. */
export const SNIFF_BYTES = 4096;

/**
 * Hashes, counts and keeps the first bytes of an upload as it streams through a driver,
 * so verification needs no second pass over the bytes.
 */
export class UploadDigest {
  private readonly sha256 = createHash('sha256');
  private readonly md5: Hash | null;
  private readonly headChunks: Buffer[] = [];
  private headBytes = 0;
  size = 0;

  constructor(computeMd5: boolean) {
    this.md5 = computeMd5 ? createHash('md5') : null;
  }

  update(chunk: Buffer): void {
    this.size += chunk.length;
    this.sha256.update(chunk);
    this.md5?.update(chunk);
    if (this.headBytes < SNIFF_BYTES) {
      const part = chunk.subarray(0, SNIFF_BYTES - this.headBytes);
      this.headChunks.push(Buffer.from(part));
      this.headBytes += part.length;
    }
  }

  result(): ReceivedContent {
    return {
      size: this.size,
      sha256: this.sha256.digest('hex'),
      md5: this.md5 === null ? null : this.md5.digest('base64'),
      head: Buffer.concat(this.headChunks),
    };
  }
}
