/**
 * The one catalogue of coded errors, shared by the origin (HTTP status) and the CLI
 * (message + non-zero exit). Modelled on fastify's lib/errors.js: every error the
 * product can raise on purpose has a code, a message template and a status here.
 */

export interface CdnErrorDefinition {
  readonly code: string;
  readonly message: string;
  readonly status: number;
}

export class CdnError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: Record<string, unknown>;

  constructor(def: CdnErrorDefinition, detail?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(detail ? `${def.message}: ${detail}` : def.message, options?.cause ? { cause: options.cause } : undefined);
    this.name = 'CdnError';
    this.code = def.code;
    this.status = def.status;
    this.details = options?.details;
  }
}

function define(code: string, message: string, status: number): CdnErrorDefinition {
  return { code, message, status };
}

export const Errors = {
  /** Spec and configuration */
  CDN_ERR_SPEC_INVALID: define('CDN_ERR_SPEC_INVALID', 'Invalid CDN spec', 2),
  CDN_ERR_FLAG_INVALID: define('CDN_ERR_FLAG_INVALID', 'Invalid command-line flag', 2),
  CDN_ERR_CONFIG_INVALID: define('CDN_ERR_CONFIG_INVALID', 'Invalid configuration', 2),

  /** Native target */
  CDN_ERR_MISSING_PACKAGES: define('CDN_ERR_MISSING_PACKAGES', 'Missing system packages', 3),
  CDN_ERR_PORT_IN_USE: define('CDN_ERR_PORT_IN_USE', 'Port already in use', 3),
  CDN_ERR_SERVICE_FAILED: define('CDN_ERR_SERVICE_FAILED', 'A service failed to start', 4),
  CDN_ERR_STACK_RUNNING: define('CDN_ERR_STACK_RUNNING', 'A stack is already running in this state directory', 5),
  CDN_ERR_STACK_NOT_RUNNING: define('CDN_ERR_STACK_NOT_RUNNING', 'No stack is running in this state directory', 6),

  /** Asset API */
  CDN_ERR_UNAUTHORIZED: define('CDN_ERR_UNAUTHORIZED', 'Missing or invalid bearer token', 401),
  CDN_ERR_FORBIDDEN: define('CDN_ERR_FORBIDDEN', 'Token lacks the required scope', 403),
  CDN_ERR_KEY_INVALID: define('CDN_ERR_KEY_INVALID', 'Invalid asset key', 400),
  CDN_ERR_BODY_INVALID: define('CDN_ERR_BODY_INVALID', 'Invalid request body', 400),
  CDN_ERR_HEADER_INVALID: define('CDN_ERR_HEADER_INVALID', 'Invalid request header', 400),
  CDN_ERR_BODY_TOO_LARGE: define('CDN_ERR_BODY_TOO_LARGE', 'Request body is too large', 413),
  CDN_ERR_ASSET_NOT_FOUND: define('CDN_ERR_ASSET_NOT_FOUND', 'Asset not found', 404),
  CDN_ERR_PURGE_INVALID: define('CDN_ERR_PURGE_INVALID', 'Invalid purge request', 400),

  /** Dependencies */
  CDN_ERR_STORAGE_UNAVAILABLE: define('CDN_ERR_STORAGE_UNAVAILABLE', 'Storage is unavailable', 503),
  CDN_ERR_BUS_UNAVAILABLE: define('CDN_ERR_BUS_UNAVAILABLE', 'Invalidation bus (Redis) is unavailable', 503),

  /** HTTP framework (origin) */
  CDN_ERR_ROUTE_NOT_FOUND: define('CDN_ERR_ROUTE_NOT_FOUND', 'No such route', 404),
  CDN_ERR_REQUEST_INVALID: define('CDN_ERR_REQUEST_INVALID', 'Invalid request', 400),
  CDN_ERR_INTERNAL: define('CDN_ERR_INTERNAL', 'Internal server error', 500),

  /** Origin: asset integrity, delivery and purge control (issue #3) */
  CDN_ERR_CHECKSUM_MISMATCH: define('CDN_ERR_CHECKSUM_MISMATCH', 'The body does not match its declared checksum; nothing was stored', 400),
  CDN_ERR_CONTENT_TYPE_MISMATCH: define('CDN_ERR_CONTENT_TYPE_MISMATCH', 'The bytes do not match the declared Content-Type; nothing was stored', 400),
  CDN_ERR_QUERY_INVALID: define('CDN_ERR_QUERY_INVALID', 'Invalid query parameter', 400),
  CDN_ERR_RANGE_NOT_SATISFIABLE: define('CDN_ERR_RANGE_NOT_SATISFIABLE', 'Range not satisfiable', 416),
  CDN_ERR_PURGE_NOT_FOUND: define('CDN_ERR_PURGE_NOT_FOUND', 'Unknown or expired purge id', 404),
  CDN_ERR_RATE_LIMITED: define('CDN_ERR_RATE_LIMITED', 'Too many requests', 429),
} as const;

export type ErrorCode = keyof typeof Errors;

export function cdnError(code: ErrorCode, detail?: string, options?: { cause?: unknown; details?: Record<string, unknown> }): CdnError {
  return new CdnError(Errors[code], detail, options);
}
