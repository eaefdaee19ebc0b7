import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { cdnError } from '../../../infra/errors';
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

/** One member per storage kind; an S3/MinIO member joins this union later. */
export type StorageConfig = FilesystemStorageConfig;

export interface OriginConfig {
  readonly host: string;
  readonly port: number;
  /** Base of the public URLs returned to clients (the balancer), without trailing slash. */
  readonly publicBaseUrl: string;
  readonly storage: StorageConfig;
  readonly redis: { readonly url: Secret };
  readonly adminToken: Secret;
  readonly purge: { readonly stream: string; readonly maxLen: number };
  readonly maxUploadBytes: number;
  readonly defaultCacheControl: string;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'must be a positive integer')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(max, `must be at most ${max}`));

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

const envSchema = z.object({
  CDN_ORIGIN_HOST: z.string().regex(/^[A-Za-z0-9.:_-]+$/, 'must be a host name or IP address').default('127.0.0.1'),
  CDN_ORIGIN_PORT: positiveInt(65535).default(3000),
  CDN_STORAGE_KIND: z
    .enum(['filesystem'], { error: 'must be "filesystem" (the only storage kind implemented so far)' })
    .default('filesystem'),
  CDN_STORAGE_PATH: z.string({ error: 'is required (the directory that holds the assets)' }),
  CDN_REDIS_URL: redisUrl,
  CDN_ADMIN_TOKEN: z.string().optional(),
  CDN_ADMIN_TOKEN_FILE: z.string().optional(),
  CDN_PUBLIC_BASE_URL: httpUrl.optional(),
  CDN_PURGE_STREAM: z
    .string()
    .regex(/^[\x21-\x7e]{1,256}$/, 'must be 1-256 printable ASCII characters without spaces')
    .default('cdn:purges'),
  CDN_PURGE_STREAM_MAXLEN: positiveInt(1_000_000_000).default(100_000),
  CDN_MAX_UPLOAD_BYTES: positiveInt(Number.MAX_SAFE_INTEGER).default(104_857_600),
  CDN_DEFAULT_CACHE_CONTROL: z
    .string()
    .max(1024)
    .regex(PRINTABLE_ASCII, 'must be printable ASCII')
    .default('public, max-age=3600'),
});

type EnvVar = keyof typeof envSchema.shape;

const SECRET_VARS: ReadonlySet<string> = new Set(['CDN_ADMIN_TOKEN', 'CDN_REDIS_URL']);

function invalid(variable: string, problem: string): never {
  throw cdnError('CDN_ERR_CONFIG_INVALID', `${variable} ${problem}`, { details: { variable } });
}

/**
 * Reads and checks the configuration. `env` defaults to process.env; empty strings count
 * as unset. `cwd` resolves a relative CDN_STORAGE_PATH.
 */
export function loadOriginConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): OriginConfig {
  const input: Partial<Record<EnvVar, string>> = {};
  for (const name of Object.keys(envSchema.shape) as EnvVar[]) {
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
    const value = input[variable as EnvVar];
    // Echo the offending value, except for variables that may carry credentials.
    const echo = value !== undefined && !SECRET_VARS.has(variable) ? ` (got ${JSON.stringify(value)})` : '';
    invalid(variable, `${issue.message}${echo}`);
  }
  const env_ = parsed.data;

  const storagePath = isAbsolute(env_.CDN_STORAGE_PATH) ? env_.CDN_STORAGE_PATH : resolve(cwd, env_.CDN_STORAGE_PATH);
  const host = env_.CDN_ORIGIN_HOST;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;

  return {
    host,
    port: env_.CDN_ORIGIN_PORT,
    publicBaseUrl: env_.CDN_PUBLIC_BASE_URL ?? `http://${hostInUrl}:${env_.CDN_ORIGIN_PORT}`,
    storage: { kind: env_.CDN_STORAGE_KIND, path: storagePath },
    redis: { url: new Secret(env_.CDN_REDIS_URL) },
    adminToken: readAdminToken(env_.CDN_ADMIN_TOKEN, env_.CDN_ADMIN_TOKEN_FILE),
    purge: { stream: env_.CDN_PURGE_STREAM, maxLen: env_.CDN_PURGE_STREAM_MAXLEN },
    maxUploadBytes: env_.CDN_MAX_UPLOAD_BYTES,
    defaultCacheControl: env_.CDN_DEFAULT_CACHE_CONTROL,
  };
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
