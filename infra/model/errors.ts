/**
 * The one catalogue of coded errors, shared by the origin (which answers a request
 * with one) and the CLI and the origin's start-up (which exit with one). Modelled on
 * fastify's lib/errors.js: every error the product raises on purpose has a code and a
 * message template here, an HTTP status where a request can end in it, and the exit
 * code of a process it stops.
 */

export interface CdnErrorDefinition {
  readonly code: string;
  readonly message: string;
  /** The HTTP status of a request that ends in this error; absent: never meant for HTTP (a 500 if it gets there). */
  readonly httpStatus?: number;
  /** The exit code of a process this error stops (the CLI, the origin at start-up). */
  readonly exitCode: number;
}

export class CdnError extends Error {
  readonly code: string;
  readonly httpStatus?: number;
  readonly exitCode: number;
  readonly details?: Record<string, unknown>;

  constructor(def: CdnErrorDefinition, detail?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(detail ? `${def.message}: ${detail}` : def.message, options?.cause ? { cause: options.cause } : undefined);
    this.name = 'CdnError';
    this.code = def.code;
    this.httpStatus = def.httpStatus;
    this.exitCode = def.exitCode;
    this.details = options?.details;
  }
}

/** An error that stops a command (or the origin's start): its exit code, no HTTP status. */
function exit(code: string, message: string, exitCode: number): CdnErrorDefinition {
  return { code, message, exitCode };
}

/** An error a request ends in: its HTTP status; a process it stops exits with 1. */
function http(code: string, message: string, httpStatus: number): CdnErrorDefinition {
  return { code, message, httpStatus, exitCode: 1 };
}

export const Errors = {
  /** Spec and configuration */
  CDN_ERR_SPEC_INVALID: exit('CDN_ERR_SPEC_INVALID', 'Invalid CDN spec', 2),
  CDN_ERR_FLAG_INVALID: exit('CDN_ERR_FLAG_INVALID', 'Invalid command-line flag', 2),
  CDN_ERR_CONFIG_INVALID: exit('CDN_ERR_CONFIG_INVALID', 'Invalid configuration', 2),

  /** Native target */
  CDN_ERR_MISSING_PACKAGES: exit('CDN_ERR_MISSING_PACKAGES', 'Missing system packages', 3),
  CDN_ERR_PORT_IN_USE: exit('CDN_ERR_PORT_IN_USE', 'Port already in use', 3),
  CDN_ERR_SERVICE_FAILED: exit('CDN_ERR_SERVICE_FAILED', 'A service failed to start', 4),
  CDN_ERR_STACK_RUNNING: exit('CDN_ERR_STACK_RUNNING', 'A stack is already running in this state directory', 5),
  CDN_ERR_STACK_NOT_RUNNING: exit('CDN_ERR_STACK_NOT_RUNNING', 'No stack is running in this state directory', 6),
  CDN_ERR_SYNC_FAILED: exit('CDN_ERR_SYNC_FAILED', 'The asset sync did not complete', 7),

  /** Asset API */
  CDN_ERR_UNAUTHORIZED: http('CDN_ERR_UNAUTHORIZED', 'Missing or invalid bearer token', 401),
  CDN_ERR_FORBIDDEN: http('CDN_ERR_FORBIDDEN', 'Token lacks the required scope', 403),
  CDN_ERR_KEY_INVALID: http('CDN_ERR_KEY_INVALID', 'Invalid asset key', 400),
  CDN_ERR_BODY_INVALID: http('CDN_ERR_BODY_INVALID', 'Invalid request body', 400),
  CDN_ERR_HEADER_INVALID: http('CDN_ERR_HEADER_INVALID', 'Invalid request header', 400),
  CDN_ERR_BODY_TOO_LARGE: http('CDN_ERR_BODY_TOO_LARGE', 'Request body is too large', 413),
  CDN_ERR_ASSET_NOT_FOUND: http('CDN_ERR_ASSET_NOT_FOUND', 'Asset not found', 404),
  CDN_ERR_PURGE_INVALID: http('CDN_ERR_PURGE_INVALID', 'Invalid purge request', 400),

  /** Dependencies */
  CDN_ERR_STORAGE_UNAVAILABLE: http('CDN_ERR_STORAGE_UNAVAILABLE', 'Storage is unavailable', 503),
  CDN_ERR_BUS_UNAVAILABLE: http('CDN_ERR_BUS_UNAVAILABLE', 'Invalidation bus (Redis) is unavailable', 503),

  /** HTTP framework (origin) */
  CDN_ERR_ROUTE_NOT_FOUND: http('CDN_ERR_ROUTE_NOT_FOUND', 'No such route', 404),
  CDN_ERR_REQUEST_INVALID: http('CDN_ERR_REQUEST_INVALID', 'Invalid request', 400),
  CDN_ERR_INTERNAL: http('CDN_ERR_INTERNAL', 'Internal server error', 500),

  /** Origin: asset integrity, delivery and purge control (issue #3) */
  CDN_ERR_CHECKSUM_MISMATCH: http('CDN_ERR_CHECKSUM_MISMATCH', 'The body does not match its declared checksum; nothing was stored', 400),
  CDN_ERR_CONTENT_TYPE_MISMATCH: http('CDN_ERR_CONTENT_TYPE_MISMATCH', 'The bytes do not match the declared Content-Type; nothing was stored', 400),
  CDN_ERR_QUERY_INVALID: http('CDN_ERR_QUERY_INVALID', 'Invalid query parameter', 400),
  CDN_ERR_RANGE_NOT_SATISFIABLE: http('CDN_ERR_RANGE_NOT_SATISFIABLE', 'Range not satisfiable', 416),
  CDN_ERR_PURGE_NOT_FOUND: http('CDN_ERR_PURGE_NOT_FOUND', 'Unknown or expired purge id', 404),
  CDN_ERR_RATE_LIMITED: http('CDN_ERR_RATE_LIMITED', 'Too many requests', 429),

  /** Image variants (issue #18) */
  CDN_ERR_IMAGE_PARAMS_INVALID: http('CDN_ERR_IMAGE_PARAMS_INVALID', 'Invalid image parameters', 400),
  CDN_ERR_IMAGE_SIGNATURE_INVALID: http('CDN_ERR_IMAGE_SIGNATURE_INVALID', 'Invalid or expired image URL signature', 403),
  CDN_ERR_IMAGE_TOO_LARGE: http('CDN_ERR_IMAGE_TOO_LARGE', 'The image is too large to transform', 422),
  CDN_ERR_IMAGE_UNSUPPORTED: http('CDN_ERR_IMAGE_UNSUPPORTED', 'The image cannot be transformed', 422),
  CDN_ERR_IMAGE_BUSY: http('CDN_ERR_IMAGE_BUSY', 'Too many image transforms in progress; retry shortly', 503),
  CDN_ERR_IMAGE_TIMEOUT: http('CDN_ERR_IMAGE_TIMEOUT', 'The image transform took too long', 503),

  /** Scheduled launches (issue #19) */
  CDN_ERR_WARM_NOT_FOUND: http('CDN_ERR_WARM_NOT_FOUND', 'Unknown or expired warming job', 404),
  CDN_ERR_NOT_CONFIGURED: http('CDN_ERR_NOT_CONFIGURED', 'This origin is not configured for that', 503),
  CDN_ERR_LAUNCH_INVALID: http('CDN_ERR_LAUNCH_INVALID', 'Invalid launch', 400),
  CDN_ERR_LAUNCH_NOT_FOUND: http('CDN_ERR_LAUNCH_NOT_FOUND', 'Unknown or expired launch id', 404),
  CDN_ERR_LAUNCH_NOT_CANCELLABLE: http('CDN_ERR_LAUNCH_NOT_CANCELLABLE', 'The launch can no longer be cancelled', 409),
} as const;

export type ErrorCode = keyof typeof Errors;

export function cdnError(code: ErrorCode, detail?: string, options?: { cause?: unknown; details?: Record<string, unknown> }): CdnError {
  return new CdnError(Errors[code], detail, options);
}
