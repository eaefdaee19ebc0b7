/**
 * The origin's environment variables: the one list of their names. The renderer
 * writes them for every target (origin/render.ts) and the origin reads them
 * (origin/src/config/origin-config.ts); both sides are typed against this list, so a
 * name cannot differ between them. What each one means: origin/README.md.
 */
export const ORIGIN_ENVIRONMENT = [
  'CDN_ORIGIN_HOST',
  'CDN_ORIGIN_PORT',
  'CDN_ORIGIN_API_PORT',
  'CDN_STORAGE_KIND',
  'CDN_STORAGE_PATH',
  'CDN_S3_ENDPOINT',
  'CDN_S3_BUCKET',
  'CDN_S3_REGION',
  'CDN_S3_ACCESS_KEY_FILE',
  'CDN_S3_SECRET_KEY_FILE',
  'CDN_S3_PART_SIZE',
  'CDN_REDIS_URL',
  'CDN_REDIS_PASSWORD_FILE',
  'CDN_ADMIN_TOKEN',
  'CDN_ADMIN_TOKEN_FILE',
  'CDN_DEBUG_TOKEN_FILE',
  'CDN_TOKENS_FILE',
  'CDN_PUBLIC_BASE_URL',
  'CDN_PURGE_STREAM',
  'CDN_PURGE_STREAM_MAXLEN',
  'CDN_EDGE_IDS',
  'CDN_PURGE_STATUS_TTL_SECONDS',
  'CDN_PURGE_DEDUP_WINDOW_MS',
  'CDN_PURGE_RATE_LIMIT',
  'CDN_PROTECTED_TAGS',
  'CDN_MAX_UPLOAD_BYTES',
  'CDN_REQUEST_TIMEOUT_SECONDS',
  'CDN_DEFAULT_CACHE_CONTROL',
  'CDN_CACHE_CONTROL_BY_TYPE',
  'CDN_LOG_LEVEL',
  'CDN_IMAGES',
  'CDN_URL_SIGNING_KEYS_FILE',
  'CDN_DOWNLOAD_PREFIXES',
  'CDN_DOWNLOAD_MAX_TTL_SECONDS',
  'CDN_BALANCER_INTERNAL_URL',
  'CDN_WARM_CONCURRENCY',
  'CDN_WARM_RATE_PER_SECOND',
] as const;

export type OriginEnvName = (typeof ORIGIN_ENVIRONMENT)[number];

/** What a target sets: any of the names, each a string. */
export type OriginEnvironment = Partial<Record<OriginEnvName, string>>;
