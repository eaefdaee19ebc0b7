import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { cdnError } from '../../../infra/model/errors';

/**
 * Request bodies are never parsed by Fastify: one content-type parser for every type
 * hands the raw stream to the handler, which decides how to consume it (uploads stream
 * to disk, the purge API reads bounded JSON). Nothing buffers a whole upload.
 */
export function registerStreamingBodyParser(fastify: FastifyInstance): void {
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_request, payload, done) => {
    done(null, payload);
  });
}

/** The body stream of a request; an empty stream when Fastify saw no body at all. */
export function bodyStream(request: FastifyRequest): Readable {
  const body = request.body;
  if (body instanceof Readable) {
    return body;
  }
  return request.raw;
}

/**
 * Consumes up to `limit` bytes of the body and parses them as JSON. Past the limit 413
 * is raised and the rest is left unread: the error response closes the connection.
 */
export async function readJsonBody(request: FastifyRequest, limit: number): Promise<unknown> {
  const contentType = String(request.headers['content-type'] ?? '');
  if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(contentType)) {
    throw cdnError('CDN_ERR_BODY_INVALID', 'Content-Type must be application/json');
  }
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${limit} bytes`);
  }

  const source = bodyStream(request);
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        source.pause();
        reject(cdnError('CDN_ERR_BODY_TOO_LARGE', `the limit is ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(cdnError('CDN_ERR_BODY_INVALID', 'the request body could not be read', { cause: err }));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onError);
  });

  if (text.trim() === '') {
    throw cdnError('CDN_ERR_BODY_INVALID', 'the body is empty; a JSON object is expected');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw cdnError('CDN_ERR_BODY_INVALID', 'the body is not valid JSON');
  }
}
