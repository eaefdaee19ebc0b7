import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { cdnError } from '../../../../infra/model/errors';

import type { ReceivedContent } from './storage-driver';
import { UploadDigest } from './upload-digest';

/**
 * Streams `source` into a new file (created exclusively, fsynced before close) while
 * hashing and counting it. Rejects, after the file is closed, when the source ends early
 * (client gone), errors, or exceeds `maxBytes`; the caller removes the file.
 *
 * The source is never destroyed, because destroying an HTTP request also destroys its
 * socket and the client would never see the error response; on a failure it is left
 * unread, and the error response closes the connection (replyWithError), so a huge
 * or endless body is never drained.
 */
export function receiveToFile(source: Readable, path: string, maxBytes: number, computeMd5 = false): Promise<ReceivedContent> {
  return new Promise<ReceivedContent>((resolve, reject) => {
    const digest = new UploadDigest(computeMd5);
    const out = createWriteStream(path, { flags: 'wx', flush: true });
    let size = 0;
    let sourceEnded = false;
    let failure: unknown;

    const detach = (): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onSourceError);
      source.off('close', onSourceClose);
      out.off('drain', onDrain);
    };

    const fail = (err: unknown): void => {
      if (failure !== undefined) {
        return;
      }
      failure = err;
      detach();
      if (!sourceEnded && !source.destroyed) {
        source.pause();
      }
      if (out.closed) {
        reject(err);
      } else {
        out.destroy();
      }
    };

    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        fail(cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${maxBytes} bytes`));
        return;
      }
      digest.update(chunk);
      if (!out.write(chunk)) {
        source.pause();
      }
    };
    const onDrain = (): void => {
      source.resume();
    };
    const onEnd = (): void => {
      sourceEnded = true;
      detach();
      out.end();
    };
    const onSourceError = (err: Error): void => {
      fail(cdnError('CDN_ERR_BODY_INVALID', 'the upload was interrupted before its end', { cause: err }));
    };
    const onSourceClose = (): void => {
      if (!sourceEnded) {
        fail(cdnError('CDN_ERR_BODY_INVALID', 'the upload was interrupted before its end'));
      }
    };

    out.on('error', (err) => fail(err));
    out.on('drain', onDrain);
    out.once('close', () => {
      if (failure !== undefined) {
        reject(failure);
      } else if (sourceEnded) {
        resolve(digest.result());
      } else {
        reject(new Error('the temporary file closed before the upload ended'));
      }
    });

    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onSourceError);
    source.once('close', onSourceClose);
    source.resume();
  });
}
