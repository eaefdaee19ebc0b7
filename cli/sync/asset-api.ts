/**
 * The client side of the origin's asset API that `cdn assets sync` needs: list a prefix
 * (every page), PUT an asset from a stream, DELETE one. Each call is retried on what is
 * worth retrying (a 5xx, a 429, a dropped or refused connection, a stalled socket) with
 * backoff; a 4xx fails at once with the origin's own message.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { Transform, type Readable } from 'node:stream';

/** What GET /v1/assets lists per asset (the fields the sync compares). */
export interface RemoteAsset {
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  readonly cacheControl: string | null;
  readonly tags: readonly string[];
}

export interface PutRequest {
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly contentType: string;
  readonly cacheControl?: string;
  readonly tags: readonly string[];
  /** A fresh stream of the body; called again for every attempt. */
  readonly body: () => Readable;
}

export interface RetryPolicy {
  /** Retries after the first attempt. */
  readonly retries: number;
  /** Backoff before retry n (0-based) is baseDelayMs * 4^n, plus up to 50% jitter. */
  readonly baseDelayMs: number;
  /** A socket with no traffic for this long is given up (and retried). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 2, baseDelayMs: 250, idleTimeoutMs: 60000 };

/** A request that failed for good: the origin's answer, or why there was none. */
export class AssetApiError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly code: string | null,
    readonly attempts: number,
  ) {
    super(message);
    this.name = 'AssetApiError';
  }
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
}

/** Network errors worth another attempt (the request may never have reached the origin). */
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);
/** A listing page of 1000 assets is well under 1 MiB; anything this large is not an answer of the asset API. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
const MAX_RETRY_AFTER_MS = 10000;

export class AssetApi {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly retry: RetryPolicy;

  constructor(
    origin: string,
    private readonly token: string,
    options: { maxSockets: number; retry?: RetryPolicy },
  ) {
    this.base = new URL(origin.endsWith('/') ? origin : `${origin}/`);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') {
      throw new Error(`the origin must be an http:// or https:// URL, got ${origin}`);
    }
    this.transport = this.base.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: options.maxSockets });
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  get origin(): string {
    return this.base.href.replace(/\/$/, '');
  }

  /** Every asset under `prefix`, following nextCursor to the last page. */
  async list(prefix: string): Promise<Map<string, RemoteAsset>> {
    const found = new Map<string, RemoteAsset>();
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ prefix, limit: '1000' });
      if (cursor !== null) query.set('cursor', cursor);
      const answer = await this.call('GET', `v1/assets?${query.toString()}`, {}, undefined, [200]);
      let page: { items: RemoteAsset[]; nextCursor: string | null };
      try {
        page = JSON.parse(answer.text) as typeof page;
      } catch {
        throw new AssetApiError(`the origin's listing is not JSON (HTTP ${answer.status})`, answer.status, null, 1);
      }
      if (!Array.isArray(page.items)) {
        throw new AssetApiError(`the origin's listing has no items (HTTP ${answer.status})`, answer.status, null, 1);
      }
      for (const item of page.items) {
        found.set(item.key, {
          key: item.key,
          size: item.size,
          sha256: item.sha256,
          contentType: item.contentType,
          cacheControl: item.cacheControl ?? null,
          tags: item.tags ?? [],
        });
      }
      cursor = page.nextCursor ?? null;
    } while (cursor !== null);
    return found;
  }

  /** Uploads one asset; the origin checks the body against Content-SHA256 and stores it atomically. */
  async put(request: PutRequest): Promise<{ created: boolean; attempts: number }> {
    const headers: Record<string, string> = {
      'Content-Type': request.contentType,
      'Content-Length': String(request.size),
      'Content-SHA256': request.sha256,
    };
    if (request.cacheControl !== undefined) headers['Cache-Control'] = request.cacheControl;
    if (request.tags.length > 0) headers['Surrogate-Key'] = request.tags.join(' ');
    const body = () => exactly(request.size, request.body());
    const answer = await this.call('PUT', `v1/assets/${request.key}`, headers, body, [200, 201]);
    return { created: answer.status === 201, attempts: answer.attempts };
  }

  /** Deletes one asset; one that is already gone counts as deleted. */
  async delete(key: string): Promise<{ existed: boolean }> {
    const answer = await this.call('DELETE', `v1/assets/${key}`, {}, undefined, [204, 404]);
    return { existed: answer.status === 204 };
  }

  close(): void {
    this.agent.destroy();
  }

  private async call(
    method: string,
    pathAndQuery: string,
    headers: Record<string, string>,
    body: (() => Readable) | undefined,
    ok: readonly number[],
  ): Promise<Answer & { attempts: number }> {
    // Keys are sent exactly as they are: only key characters, nothing to encode.
    const url = new URL(pathAndQuery, this.base);
    for (let attempt = 1; ; attempt++) {
      const last = attempt > this.retry.retries;
      let waitMs = this.retry.baseDelayMs * 4 ** (attempt - 1) * (1 + Math.random() / 2);
      let answer: Answer;
      try {
        answer = await this.once(method, url, headers, body);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? null;
        if (last || code === null || !RETRYABLE_CODES.has(code)) {
          const message = (err as Error).message;
          const detail = code !== null && !message.includes(code) ? ` (${code})` : '';
          throw new AssetApiError(`${message}${detail}${attempt > 1 ? `, after ${attempt} attempts` : ''}`, null, code, attempt);
        }
        await sleep(waitMs);
        continue;
      }
      if (ok.includes(answer.status)) return { ...answer, attempts: attempt };
      const retryable = answer.status >= 500 || answer.status === 429;
      if (last || !retryable) throw refusal(method, answer, attempt);
      waitMs = Math.max(waitMs, retryAfter(answer.headers['retry-after']) ?? 0);
      await sleep(waitMs);
    }
  }

  private once(method: string, url: URL, headers: Record<string, string>, body: (() => Readable) | undefined): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const req = this.transport.request(url, {
        method,
        agent: this.agent,
        headers: { ...headers, Authorization: `Bearer ${this.token}`, Accept: 'application/json' },
      });
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        req.destroy();
        reject(err);
      };
      req.setTimeout(this.retry.idleTimeoutMs, () => {
        fail(Object.assign(new Error(`no answer from the origin for ${this.retry.idleTimeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
      });
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let length = 0;
        res.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > MAX_ANSWER_BYTES) fail(new Error(`the origin's answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', fail);
        res.on('end', () => {
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        });
      });
      if (body === undefined) {
        req.end();
        return;
      }
      const stream = body();
      // A read error (the file went away) ends the request; it is not a network error.
      stream.on('error', (err) => fail(err));
      stream.pipe(req);
    });
  }
}

/** The origin's `{"error": code, "message": msg}`, or the status line when there is none. */
function refusal(method: string, answer: Answer, attempts: number): AssetApiError {
  let code: string | null = null;
  let message = `HTTP ${answer.status}`;
  try {
    const body = JSON.parse(answer.text) as { error?: unknown; message?: unknown };
    if (typeof body.error === 'string') code = body.error;
    if (typeof body.message === 'string') message = body.message;
  } catch {
    const text = answer.text.trim().slice(0, 200);
    if (text !== '') message = `HTTP ${answer.status}: ${text}`;
  }
  const label = code === null ? `HTTP ${answer.status}` : `HTTP ${answer.status} ${code}`;
  const tries = attempts > 1 ? `, after ${attempts} attempts` : '';
  return new AssetApiError(`${message} (${method} ${label}${tries})`, answer.status, code, attempts);
}

/**
 * The body as hashed, or an error: a file that grew or shrank since it was hashed would
 * otherwise send more bytes than its Content-Length (garbage for the next request on
 * the connection) or fewer (a request that never ends).
 */
function exactly(size: number, stream: Readable): Readable {
  let seen = 0;
  const changed = () => new Error(`the file changed while it was being synced (it was ${size} bytes when hashed); nothing was stored`);
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > size) callback(changed());
      else callback(null, chunk);
    },
    flush(callback) {
      callback(seen === size ? null : changed());
    },
  });
  stream.on('error', (err) => guard.destroy(err));
  return stream.pipe(guard);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function retryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^[0-9]+$/.test(text.trim())) return undefined;
  return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS);
}
