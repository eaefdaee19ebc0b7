import { z } from 'zod';
import { cdnError } from '../../../infra/model/errors';
import { checkTag } from '../common/surrogate-keys';

/**
 * The body of POST /v1/purge, checked and normalised:
 * `{"urls": [...], "prefixes": [...], "tags": [...], "soft": false}`, every list optional, at least one
 * entry in all, at most MAX_PURGE_ENTRIES. URLs become paths ("https://shop/a.png" and
 * "/a.png" both give "/a.png").
 */

export const MAX_PURGE_ENTRIES = 1000;
const MAX_PATH_LENGTH = 2048;
/** What a purge of everything (prefix "/") must say in `confirm`: one more deliberate step than a scope. */
export const PURGE_EVERYTHING_CONFIRMATION = 'purge everything';

const stringList = () => z.array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings' }).optional();

/**
 * The one declaration of the body: it validates it (parsePurgeRequest), documents it
 * (purge.dto.ts derives the OpenAPI request body from it) and types it (PurgeRequestBody,
 * PurgeRequest). What a schema cannot say (the entry count, the URL, prefix and tag
 * rules) parsePurgeRequest checks after it.
 */
export const purgeRequestSchema = z
  .strictObject(
    {
      urls: stringList().meta({
        description: 'Full URLs or paths; no query or fragment',
        examples: [['/products/shoe.jpg', 'https://shop.example/cart.css']],
      }),
      prefixes: stringList().meta({ description: 'Path prefixes, starting and ending with /', examples: [['/banners/']] }),
      tags: stringList().meta({ description: 'Surrogate keys (tags)', examples: [['product-42']] }),
      soft: z
        .boolean({ error: 'must be true or false' })
        .default(false)
        .meta({ description: 'Mark stale instead of evicting (edges may serve stale while revalidating)' }),
      confirm: z
        .literal(PURGE_EVERYTHING_CONFIRMATION, { error: `must be exactly "${PURGE_EVERYTHING_CONFIRMATION}"` })
        .optional()
        .meta({ description: `Required with the prefix "/" (everything, admin scope only): "${PURGE_EVERYTHING_CONFIRMATION}"` }),
    },
    { error: 'the body must be a JSON object' },
  )
  .meta({ description: `At least one entry in urls, prefixes and tags together, at most ${MAX_PURGE_ENTRIES}` });

/** The body as the schema outputs it: lists optional, `soft` defaulted to false. */
export type PurgeRequestBody = z.output<typeof purgeRequestSchema>;

type PurgeLists = Required<Pick<PurgeRequestBody, 'urls' | 'prefixes' | 'tags'>>;

/**
 * A checked purge: the three lists always present (normalised, deduplicated). `soft` is
 * optional because publishers other than the API (asset writes) leave it out: absent is hard.
 */
export type PurgeRequest = { readonly [K in keyof PurgeLists]: Readonly<PurgeLists[K]> } & {
  /** Mark stale instead of evicting: edges may serve the old copy while they revalidate. */
  readonly soft?: PurgeRequestBody['soft'];
  /** Download tokens to revoke (POST /v1/signed-urls/revoke publishes these on the purge stream). */
  readonly revoke?: { readonly tokens: readonly string[]; readonly keys: readonly string[] };
  /** The body said `"confirm": "purge everything"` (only the API's bodies can). */
  readonly confirmed?: true;
};

/** What is wrong with a purge body: the reason, and the field to blame when there is one. */
export class PurgeBodyProblem {
  constructor(
    readonly reason: string,
    readonly field?: string,
  ) {}
}

function invalid(detail: string, field?: string): never {
  throw new PurgeBodyProblem(detail, field);
}

/** POST /v1/purge's body checked: 400 CDN_ERR_PURGE_INVALID naming the field, or the request. */
export function parsePurgeRequest(body: unknown): PurgeRequest {
  const checked = checkPurgeRequest(body);
  if (checked instanceof PurgeBodyProblem) {
    throw cdnError('CDN_ERR_PURGE_INVALID', checked.reason, { details: checked.field ? { field: checked.field } : undefined });
  }
  return checked;
}

/** The same check, answering the problem instead of throwing it (a launch names it under "purge."). */
export function checkPurgeRequest(body: unknown): PurgeRequest | PurgeBodyProblem {
  try {
    return checkedPurgeRequest(body);
  } catch (err) {
    if (err instanceof PurgeBodyProblem) {
      return err;
    }
    throw err;
  }
}

function checkedPurgeRequest(body: unknown): PurgeRequest {
  const parsed = purgeRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    if (issue.code === 'unrecognized_keys') {
      const names = issue.keys.map((key) => JSON.stringify(key)).join(', ');
      invalid(`unknown field ${names} (expected urls, prefixes, tags, soft, confirm)`, issue.keys[0]);
    }
    const field = formatPath(issue.path);
    invalid(field ? `${field}: ${issue.message}` : issue.message, field || undefined);
  }

  const raw = { urls: parsed.data.urls ?? [], prefixes: parsed.data.prefixes ?? [], tags: parsed.data.tags ?? [] };
  const total = raw.urls.length + raw.prefixes.length + raw.tags.length;
  if (total === 0) {
    invalid('at least one of urls, prefixes, tags must be a non-empty list');
  }
  if (total > MAX_PURGE_ENTRIES) {
    invalid(`at most ${MAX_PURGE_ENTRIES} entries in all (urls + prefixes + tags), got ${total}`);
  }

  const urls = raw.urls.map((value, i) => {
    const result = normalisePurgeUrl(value);
    return 'path' in result ? result.path : invalid(`urls[${i}]: ${result.reason}`, `urls[${i}]`);
  });
  const prefixes = raw.prefixes.map((value, i) => {
    const reason = checkPrefix(value);
    return reason === undefined ? value : invalid(`prefixes[${i}]: ${reason}`, `prefixes[${i}]`);
  });
  const tags = raw.tags.map((value, i) => {
    const reason = checkTag(value);
    return reason === undefined ? value : invalid(`tags[${i}]: ${reason}`, `tags[${i}]`);
  });

  return {
    urls: unique(urls),
    prefixes: unique(prefixes),
    tags: unique(tags),
    soft: parsed.data.soft,
    ...(parsed.data.confirm !== undefined ? { confirmed: true as const } : {}),
  };
}

/** Why a purge may not go out for a token: the status to answer, the field to name, the reason. */
export interface PurgeGuardProblem {
  readonly kind: 'forbidden' | 'invalid';
  readonly field: string;
  readonly reason: string;
  readonly tag?: string;
}

/**
 * The rules an API purge (POST /v1/purge, and a launch's purge) passes on top of its
 * scope, because one request can empty every edge's cache: the prefix "/" needs the
 * admin scope and `"confirm": "purge everything"` (a scope alone is one copied token
 * away from an accident); a protected tag (CDN_PROTECTED_TAGS) needs the admin scope.
 * Asset writes' own purges are not checked: they follow a storage change.
 */
export function purgeGuardProblem(request: PurgeRequest, admin: boolean, protectedTags: readonly string[]): PurgeGuardProblem | undefined {
  if (request.prefixes.includes('/')) {
    if (!admin) {
      return { kind: 'forbidden', field: 'prefixes', reason: 'purging everything (prefix "/") needs the admin scope' };
    }
    if (request.confirmed !== true) {
      return { kind: 'invalid', field: 'confirm', reason: `purging everything (prefix "/") needs "confirm": "${PURGE_EVERYTHING_CONFIRMATION}" in the body` };
    }
  }
  if (!admin) {
    const tag = request.tags.find((t) => protectedTags.includes(t));
    if (tag !== undefined) {
      return { kind: 'forbidden', field: 'tags', tag, reason: `the tag "${tag}" is protected (purge.protectedTags): only an admin token purges it` };
    }
  }
  return undefined;
}

/**
 * "http(s)://host/path" or "/path" -> "/path", normalised as the WHATWG URL parser does
 * (dot segments resolved, unsafe characters percent-encoded). A query or fragment is
 * refused rather than silently dropped: edges key on paths, and dropping "?v=2" would
 * purge something else than the caller meant.
 */
export function normalisePurgeUrl(value: string): { path: string } | { reason: string } {
  if (value.length === 0) {
    return { reason: 'is empty' };
  }
  if (value.length > MAX_PATH_LENGTH) {
    return { reason: `is longer than ${MAX_PATH_LENGTH} characters` };
  }
  let url: URL;
  if (/^https?:\/\//i.test(value)) {
    try {
      url = new URL(value);
    } catch {
      return { reason: 'is not a valid URL' };
    }
  } else if (value.startsWith('/') && !value.startsWith('//')) {
    if (/[\x00-\x20\x7f\\]/.test(value)) {
      return { reason: 'contains spaces, control characters or backslashes' };
    }
    url = new URL(value, 'http://origin.invalid');
  } else {
    return { reason: 'must be a full http(s) URL or a path starting with "/"' };
  }
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(value)) {
    return { reason: 'must not have a query string or fragment (purge the path, or a prefix)' };
  }
  return { path: url.pathname };
}

function checkPrefix(value: string): string | undefined {
  if (!value.startsWith('/') || !value.endsWith('/')) {
    return 'must start and end with "/"';
  }
  if (value.length > MAX_PATH_LENGTH) {
    return `is longer than ${MAX_PATH_LENGTH} characters`;
  }
  if (!/^[\x21-\x7e]+$/.test(value) || /[?#\\]/.test(value)) {
    return 'must be printable ASCII without spaces, "?", "#" or "\\"';
  }
  return undefined;
}

/** A zod issue's path as the errors name fields: `urls[1]`, `warm.regions[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}
