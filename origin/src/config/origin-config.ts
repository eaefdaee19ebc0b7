import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_CACHE_CONTROL, DEFAULT_CACHE_CONTROL_BY_TYPE } from '../../contract/cache-policy';
import type { OriginEnvName } from '../../contract/environment';
import { cdnError } from '../../../infra/model/errors';
import { DEFAULT_IMAGES } from '../../contract/images';
import { Secret } from './secret';

/**
 * The origin's whole configuration, read from the environment once at boot and checked
 * with zod. Services receive this typed object (ORIGIN_CONFIG) and never read
 * process.env themselves. A bad variable stops the boot with CDN_ERR_CONFIG_INVALID and
 * a message naming the variable.
 */

export const ORIGIN_CONFIG = Symbol('ORIGIN_CONFIG');

export interface FilesystemStorageConfig {
  readonly kind: 'filesystem';
  /** Absolute path of the storage root (created if missing). */
  readonly path: string;
}

export interface S3StorageConfig {
  readonly kind: 's3';
  /** e.g. http://minio:9000 (path-style addressing, as MinIO expects). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  readonly accessKey: Secret;
  readonly secretKey: Secret;
  /** Uploads are sent in parts of this size; one part is the most an upload buffers. */
  readonly partSize: number;
}

export type StorageConfig = FilesystemStorageConfig | S3StorageConfig;

/**
 * What a token may do: upload assets, purge, sign download URLs (and revoke them), or
 * everything (admin). `debug` grants
 * nothing here: it is the scope of the token the edges accept in X-Cdn-Debug, listed
 * so the origin knows every token there is.
 */
export const SCOPES = ['upload', 'purge', 'sign', 'admin', 'debug'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiToken {
  /** Shown in audit lines and logs instead of the token. */
  readonly name: string;
  readonly token: Secret;
  readonly scopes: readonly Scope[];
}

export interface PurgeConfig {
  readonly stream: string;
  readonly maxLen: number;
  /** Edges that must apply a purge before GET /v1/purge/{id} reports it complete. */
  readonly edgeIds: readonly string[];
  readonly statusTtlSeconds: number;
  /** An identical purge within this window, not yet applied by any edge, is merged. */
  readonly dedupWindowMs: number;
  /** API purges per token and second; more get 429. */
  readonly ratePerSecond: number;
  /** Tags only an admin token may purge, by the API or a launch (CDN_PROTECTED_TAGS, spec purge.protectedTags). */
  readonly protectedTags: readonly string[];
}

export interface OriginConfig {
  readonly host: string;
  /** The delivery listener, which the edges reach: GET and HEAD of assets, nothing else. */
  readonly port: number;
  /** The API listener (asset and purge API, docs, health, metrics): for operators and monitoring only. */
  readonly apiPort: number;
  /** Base of the public URLs returned to clients (the balancer), without trailing slash. */
  readonly publicBaseUrl: string;
  readonly storage: StorageConfig;
  readonly redis: { readonly url: Secret; readonly password: Secret | null };
  readonly adminToken: Secret;
  /** Every accepted token: the admin token (name "admin") first, then CDN_TOKENS_FILE's. */
  readonly tokens: readonly ApiToken[];
  readonly purge: PurgeConfig;
  /** A request (its body included) taking longer is cut off: a slow upload cannot hold a connection forever. */
  readonly requestTimeoutMs: number;
  readonly maxUploadBytes: number;
  readonly defaultCacheControl: string;
  /** Cache-Control by content type ("image/*", "text/html"), first match wins; else the default. */
  readonly cacheControlByType: readonly (readonly [pattern: string, cacheControl: string])[];
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  readonly images: ImagesConfig;
  /** URL signing keys by id, the current (signing) one first; empty when none is configured. */
  readonly urlSigningKeys: readonly { readonly id: string; readonly secret: Secret }[];
  /** Signed downloads (CDN_DOWNLOAD_PREFIXES, CDN_DOWNLOAD_MAX_TTL_SECONDS; docs/downloads.md). */
  readonly downloads: { readonly prefixes: readonly string[]; readonly maxTtlSeconds: number };
  /** Cache warming: where the balancer's /warm/ route is (absent: warming is refused), its bounds, and the regions. */
  readonly warming: { readonly balancerInternalUrl: string | null; readonly concurrency: number; readonly ratePerSecond: number; readonly regions: readonly string[] };
}

/** Image variants (CDN_IMAGES, rendered from the spec's `images`; docs/images.md). */
export interface ImagesConfig {
  readonly enabled: boolean;
  /** Sorted: what the edges snap widths and heights to. */
  readonly widths: readonly number[];
  readonly qualities: readonly number[];
  readonly defaultQuality: number;
  readonly maxInputPixels: number;
  readonly maxInputBytes: number;
  readonly maxOutputBytes: number;
  readonly timeoutSeconds: number;
  readonly concurrency: number;
  readonly queue: number;
  readonly allowSvg: boolean;
}

const imagesSchema = z
  .object({
    enabled: z.boolean(),
    widths: z.array(z.number().int().min(1).max(8192)).min(1),
    qualities: z.array(z.number().int().min(1).max(100)).min(1),
    defaultQuality: z.number().int().min(1).max(100),
    maxInputPixels: z.number().int().min(1),
    maxInputBytes: z.number().int().min(1),
    maxOutputBytes: z.number().int().min(1),
    timeoutSeconds: z.number().positive(),
    concurrency: z.number().int().min(1),
    queue: z.number().int().min(0),
    allowSvg: z.boolean(),
  })
  .strict();

/** S3 refuses parts under 5 MiB (except the last); a single copy is limited to 5 GiB. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_S3_OBJECT = 5 * 1024 * 1024 * 1024;

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;
const MEDIA_RANGE = /^(?:[a-z0-9!#$&^_.+-]+\/(?:\*|[a-z0-9!#$&^_.+-]+))$/;

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a positive integer')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(max, `must be at most ${max}`));

const nonNegativeInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().int().max(max, `must be at most ${max}`));

const httpUrl = z
  .string()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without query or fragment, e.g. http://127.0.0.1:8080')
  .transform((value) => value.replace(/\/+$/, ''));

const redisUrl = z.string({ error: 'is required (e.g. redis://127.0.0.1:6379)' }).refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === 'redis:' || url.protocol === 'rediss:';
  } catch {
    return false;
  }
}, 'must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379');

// Every name of the contract, and no other (checked by `satisfies`).
const envShape = {
  CDN_ORIGIN_HOST: z.string().regex(/^[A-Za-z0-9.:_-]+$/, 'must be a host name or IP address').default('127.0.0.1'),
  CDN_ORIGIN_PORT: positiveInt(65535).default(3000),
  CDN_ORIGIN_API_PORT: positiveInt(65535).default(3001),
  CDN_STORAGE_KIND: z.enum(['filesystem', 's3'], { error: 'must be "filesystem" or "s3"' }).default('filesystem'),
  CDN_STORAGE_PATH: z.string().optional(),
  CDN_S3_ENDPOINT: httpUrl.optional(),
  CDN_S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 of a-z 0-9 . -)')
    .optional(),
  CDN_S3_REGION: z.string().regex(/^[a-z0-9-]{1,64}$/, 'must be a region name such as us-east-1').default('us-east-1'),
  CDN_S3_ACCESS_KEY_FILE: z.string().optional(),
  CDN_S3_SECRET_KEY_FILE: z.string().optional(),
  CDN_S3_PART_SIZE: positiveInt(MAX_S3_OBJECT)
    .pipe(z.number().min(MIN_PART_SIZE, `must be at least ${MIN_PART_SIZE} (S3's smallest part)`))
    .default(8 * 1024 * 1024),
  CDN_REDIS_URL: redisUrl,
  CDN_REDIS_PASSWORD_FILE: z.string().optional(),
  CDN_ADMIN_TOKEN: z.string().optional(),
  CDN_ADMIN_TOKEN_FILE: z.string().optional(),
  CDN_DEBUG_TOKEN_FILE: z.string().optional(),
  CDN_TOKENS_FILE: z.string().optional(),
  CDN_PUBLIC_BASE_URL: httpUrl.optional(),
  CDN_PURGE_STREAM: z
    .string()
    .regex(/^[\x21-\x7e]{1,256}$/, 'must be 1-256 printable ASCII characters without spaces')
    .default('cdn:purges'),
  CDN_PURGE_STREAM_MAXLEN: positiveInt(1_000_000_000).default(100_000),
  CDN_EDGE_IDS: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*$/, 'must be comma-separated edge ids such as eu-1,us-1')
    .optional(),
  CDN_PURGE_STATUS_TTL_SECONDS: positiveInt(30 * 86400).default(86400),
  CDN_PURGE_DEDUP_WINDOW_MS: nonNegativeInt(60_000).default(2000),
  CDN_PURGE_RATE_LIMIT: positiveInt(100_000).default(20),
  // Tags never hold commas (surrogate-keys.ts), so a comma separates them.
  CDN_PROTECTED_TAGS: z
    .string()
    .regex(/^[\x21-\x2b\x2d-\x7e]{1,128}(?:,[\x21-\x2b\x2d-\x7e]{1,128})*$/, 'must be comma-separated tags (printable ASCII, no spaces, at most 128 characters each)')
    .optional(),
  CDN_MAX_UPLOAD_BYTES: positiveInt(Number.MAX_SAFE_INTEGER).default(104_857_600),
  CDN_REQUEST_TIMEOUT_SECONDS: positiveInt(3600).default(300),
  CDN_DEFAULT_CACHE_CONTROL: z
    .string()
    .max(1024)
    .regex(PRINTABLE_ASCII, 'must be printable ASCII')
    .default(DEFAULT_CACHE_CONTROL),
  CDN_CACHE_CONTROL_BY_TYPE: z.string().optional(),
  CDN_IMAGES: z.string().optional(),
  CDN_DOWNLOAD_PREFIXES: z
    .string()
    .regex(/^(\/[A-Za-z0-9._~\/-]*\/)(,\/[A-Za-z0-9._~\/-]*\/)*$/, 'must be path prefixes starting and ending with /, separated by commas')
    .optional(),
  CDN_DOWNLOAD_MAX_TTL_SECONDS: positiveInt(30 * 86400).default(7 * 86400),
  CDN_BALANCER_INTERNAL_URL: httpUrl.optional(),
  CDN_WARM_CONCURRENCY: positiveInt(256).default(4),
  CDN_WARM_RATE_PER_SECOND: positiveInt(10000).default(50),
  CDN_URL_SIGNING_KEYS_FILE: z.string().optional(),
  CDN_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent'], { error: 'must be debug, info, warn, error or silent' }).default('info'),
} satisfies Record<OriginEnvName, z.ZodType>;
const envSchema = z.object(envShape);


const SECRET_VARS: ReadonlySet<string> = new Set(['CDN_ADMIN_TOKEN', 'CDN_REDIS_URL']);

function invalid(variable: string, problem: string): never {
  throw cdnError('CDN_ERR_CONFIG_INVALID', `${variable} ${problem}`, { details: { variable } });
}

/**
 * Reads and checks the configuration. `env` defaults to process.env; empty strings count
 * as unset. `cwd` resolves a relative CDN_STORAGE_PATH.
 */
export function loadOriginConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): OriginConfig {
  const input: Partial<Record<OriginEnvName, string>> = {};
  for (const name of Object.keys(envSchema.shape) as OriginEnvName[]) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') {
      // Tokens are trimmed below; everything else is taken as written, minus stray spaces.
      input[name] = name === 'CDN_ADMIN_TOKEN' ? value : value.trim();
    }
  }

  const parsed = envSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue.path[0] ?? 'environment');
    const value = input[variable as OriginEnvName];
    // Echo the offending value, except for variables that may carry credentials.
    const echo = value !== undefined && !SECRET_VARS.has(variable) ? ` (got ${JSON.stringify(value)})` : '';
    invalid(variable, `${issue.message}${echo}`);
  }
  const env_ = parsed.data;

  const host = env_.CDN_ORIGIN_HOST;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  const storage = readStorage(env_, cwd);
  if (storage.kind === 's3' && env_.CDN_MAX_UPLOAD_BYTES > MAX_S3_OBJECT) {
    invalid('CDN_MAX_UPLOAD_BYTES', `must be at most ${MAX_S3_OBJECT} with S3 storage (a single server-side copy commits an upload)`);
  }
  if (env_.CDN_ORIGIN_API_PORT === env_.CDN_ORIGIN_PORT) {
    invalid('CDN_ORIGIN_API_PORT', `must differ from CDN_ORIGIN_PORT (${env_.CDN_ORIGIN_PORT}): the API is never served where the edges reach`);
  }
  const adminToken = readAdminToken(env_.CDN_ADMIN_TOKEN, env_.CDN_ADMIN_TOKEN_FILE);
  const fileTokens = env_.CDN_TOKENS_FILE === undefined ? [] : readTokensFile(env_.CDN_TOKENS_FILE);

  return {
    host,
    port: env_.CDN_ORIGIN_PORT,
    apiPort: env_.CDN_ORIGIN_API_PORT,
    publicBaseUrl: env_.CDN_PUBLIC_BASE_URL ?? `http://${hostInUrl}:${env_.CDN_ORIGIN_PORT}`,
    storage,
    redis: {
      url: new Secret(env_.CDN_REDIS_URL),
      password: env_.CDN_REDIS_PASSWORD_FILE === undefined ? null : readSecretFile('CDN_REDIS_PASSWORD_FILE', env_.CDN_REDIS_PASSWORD_FILE),
    },
    adminToken,
    tokens: [
      { name: 'admin', token: adminToken, scopes: ['admin'] },
      ...(env_.CDN_DEBUG_TOKEN_FILE === undefined ? [] : [{ name: 'debug', token: readSecretFile('CDN_DEBUG_TOKEN_FILE', env_.CDN_DEBUG_TOKEN_FILE), scopes: ['debug'] as Scope[] }]),
      ...fileTokens,
    ],
    purge: {
      stream: env_.CDN_PURGE_STREAM,
      maxLen: env_.CDN_PURGE_STREAM_MAXLEN,
      edgeIds: env_.CDN_EDGE_IDS === undefined ? [] : [...new Set(env_.CDN_EDGE_IDS.split(','))],
      statusTtlSeconds: env_.CDN_PURGE_STATUS_TTL_SECONDS,
      dedupWindowMs: env_.CDN_PURGE_DEDUP_WINDOW_MS,
      ratePerSecond: env_.CDN_PURGE_RATE_LIMIT,
      protectedTags: env_.CDN_PROTECTED_TAGS === undefined ? [] : [...new Set(env_.CDN_PROTECTED_TAGS.split(','))],
    },
    maxUploadBytes: env_.CDN_MAX_UPLOAD_BYTES,
    requestTimeoutMs: env_.CDN_REQUEST_TIMEOUT_SECONDS * 1000,
    defaultCacheControl: env_.CDN_DEFAULT_CACHE_CONTROL,
    cacheControlByType:
      env_.CDN_CACHE_CONTROL_BY_TYPE === undefined ? DEFAULT_CACHE_CONTROL_BY_TYPE : parseCacheControlByType(env_.CDN_CACHE_CONTROL_BY_TYPE),
    logLevel: env_.CDN_LOG_LEVEL,
    images: env_.CDN_IMAGES === undefined ? { ...DEFAULT_IMAGES } : readImages(env_.CDN_IMAGES),
    urlSigningKeys: env_.CDN_URL_SIGNING_KEYS_FILE === undefined ? [] : readSigningKeys(env_.CDN_URL_SIGNING_KEYS_FILE),
    warming: {
      balancerInternalUrl: env_.CDN_BALANCER_INTERNAL_URL ?? null,
      concurrency: env_.CDN_WARM_CONCURRENCY,
      ratePerSecond: env_.CDN_WARM_RATE_PER_SECOND,
      // edge ids are <region>-<n>
      regions: [...new Set((env_.CDN_EDGE_IDS ?? '').split(',').filter(Boolean).map((id) => id.replace(/-\d+$/, '')))],
    },
    downloads: { prefixes: env_.CDN_DOWNLOAD_PREFIXES === undefined ? [] : env_.CDN_DOWNLOAD_PREFIXES.split(','), maxTtlSeconds: env_.CDN_DOWNLOAD_MAX_TTL_SECONDS },
  };
}

function readImages(json: string): ImagesConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    invalid('CDN_IMAGES', 'must be JSON (rendered from the spec\'s images section)');
  }
  const result = imagesSchema.safeParse(parsed);
  if (!result.success) {
    invalid('CDN_IMAGES', result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  }
  const images = result.data;
  return { ...images, widths: [...images.widths].sort((a, b) => a - b), qualities: [...images.qualities].sort((a, b) => a - b) };
}

/** `<id>:<secret>,<id>:<secret>`, the first one current. */
function readSigningKeys(file: string): { id: string; secret: Secret }[] {
  const text = readSecretFile('CDN_URL_SIGNING_KEYS_FILE', file).reveal();
  return text.split(/[,\s]+/).filter(Boolean).map((pair) => {
    const m = /^([A-Za-z0-9_-]+):(.+)$/.exec(pair);
    if (!m) invalid('CDN_URL_SIGNING_KEYS_FILE', 'must hold <id>:<secret> pairs separated by commas');
    return { id: m[1], secret: new Secret(m[2]) };
  });
}

function readStorage(env_: z.infer<typeof envSchema>, cwd: string): StorageConfig {
  if (env_.CDN_STORAGE_KIND === 'filesystem') {
    if (env_.CDN_STORAGE_PATH === undefined) {
      invalid('CDN_STORAGE_PATH', 'is required (the directory that holds the assets)');
    }
    const path = isAbsolute(env_.CDN_STORAGE_PATH) ? env_.CDN_STORAGE_PATH : resolve(cwd, env_.CDN_STORAGE_PATH);
    return { kind: 'filesystem', path };
  }
  if (env_.CDN_S3_ENDPOINT === undefined) {
    invalid('CDN_S3_ENDPOINT', 'is required with CDN_STORAGE_KIND=s3 (e.g. http://minio:9000)');
  }
  if (env_.CDN_S3_BUCKET === undefined) {
    invalid('CDN_S3_BUCKET', 'is required with CDN_STORAGE_KIND=s3');
  }
  if (env_.CDN_S3_ACCESS_KEY_FILE === undefined) {
    invalid('CDN_S3_ACCESS_KEY_FILE', 'is required with CDN_STORAGE_KIND=s3 (a file holding the access key)');
  }
  if (env_.CDN_S3_SECRET_KEY_FILE === undefined) {
    invalid('CDN_S3_SECRET_KEY_FILE', 'is required with CDN_STORAGE_KIND=s3 (a file holding the secret key)');
  }
  return {
    kind: 's3',
    endpoint: env_.CDN_S3_ENDPOINT,
    bucket: env_.CDN_S3_BUCKET,
    region: env_.CDN_S3_REGION,
    accessKey: readSecretFile('CDN_S3_ACCESS_KEY_FILE', env_.CDN_S3_ACCESS_KEY_FILE),
    secretKey: readSecretFile('CDN_S3_SECRET_KEY_FILE', env_.CDN_S3_SECRET_KEY_FILE),
    partSize: env_.CDN_S3_PART_SIZE,
  };
}

/** A file holding one secret (trimmed). Its content never appears in an error. */
function readSecretFile(variable: string, file: string): Secret {
  let value: string;
  try {
    value = readFileSync(file, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    invalid(variable, `names a file that cannot be read (${file}: ${code})`);
  }
  if (value.length === 0) {
    invalid(variable, `names an empty file (${file})`);
  }
  return new Secret(value);
}

/** The token itself never appears in an error message. */
function readAdminToken(inline: string | undefined, file: string | undefined): Secret {
  if (inline !== undefined && file !== undefined) {
    invalid('CDN_ADMIN_TOKEN', 'and CDN_ADMIN_TOKEN_FILE are both set; set only one');
  }
  let token: string;
  let variable: string;
  if (inline !== undefined) {
    token = inline.trim();
    variable = 'CDN_ADMIN_TOKEN';
  } else if (file !== undefined) {
    variable = 'CDN_ADMIN_TOKEN_FILE';
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      invalid(variable, `names a file that cannot be read (${file}: ${code})`);
    }
  } else {
    invalid('CDN_ADMIN_TOKEN', 'or CDN_ADMIN_TOKEN_FILE is required (the bearer token of the admin API)');
  }
  if (token.length === 0) {
    invalid(variable, 'gives an empty token');
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    invalid(variable, 'gives a token with spaces or non-printable characters');
  }
  return new Secret(token);
}

const tokensFileSchema = z.array(
  z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ . -'),
    token: z.string().regex(/^[\x21-\x7e]{16,512}$/, 'must be 16-512 printable ASCII characters without spaces'),
    scopes: z.array(z.enum(SCOPES, { error: 'must be "upload", "purge", "sign", "admin" or "debug"' })).min(1, 'must name at least one scope'),
  }),
  { error: 'must be a JSON array of {name, token, scopes}' },
);

/**
 * CDN_TOKENS_FILE: `[{"name": "catalogue", "token": "...", "scopes": ["upload"]}, ...]`.
 * Errors name the entry and field, never a token value.
 */
function readTokensFile(file: string): ApiToken[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    invalid('CDN_TOKENS_FILE', `names a file that cannot be read (${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    invalid('CDN_TOKENS_FILE', `is not valid JSON (${file})`);
  }
  const parsed = tokensFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    invalid('CDN_TOKENS_FILE', `${where === '' ? '' : `${where} `}${issue.message}`);
  }
  const names = new Set<string>(['admin']);
  const tokens = new Set<string>();
  for (const entry of parsed.data) {
    if (names.has(entry.name)) {
      invalid('CDN_TOKENS_FILE', `uses the name ${JSON.stringify(entry.name)} twice ("admin" is the admin token's)`);
    }
    if (tokens.has(entry.token)) {
      invalid('CDN_TOKENS_FILE', `gives entry ${JSON.stringify(entry.name)} a token another entry already has`);
    }
    names.add(entry.name);
    tokens.add(entry.token);
  }
  return parsed.data.map((entry) => ({ name: entry.name, token: new Secret(entry.token), scopes: [...new Set(entry.scopes)] }));
}

/** `{"image/*": "public, max-age=86400", "text/html": "public, max-age=60"}`, in that order. */
function parseCacheControlByType(text: string): (readonly [string, string])[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    invalid('CDN_CACHE_CONTROL_BY_TYPE', 'is not valid JSON (expected {"image/*": "public, max-age=86400", ...})');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    invalid('CDN_CACHE_CONTROL_BY_TYPE', 'must be a JSON object of media range -> Cache-Control');
  }
  return Object.entries(json).map(([pattern, value]) => {
    if (!MEDIA_RANGE.test(pattern)) {
      invalid('CDN_CACHE_CONTROL_BY_TYPE', `has a key ${JSON.stringify(pattern)} that is not a lower-case media type or range like image/*`);
    }
    if (typeof value !== 'string' || value.length > 1024 || !PRINTABLE_ASCII.test(value)) {
      invalid('CDN_CACHE_CONTROL_BY_TYPE', `gives ${JSON.stringify(pattern)} a value that is not printable ASCII (at most 1024 characters)`);
    }
    return [pattern, value] as const;
  });
}
