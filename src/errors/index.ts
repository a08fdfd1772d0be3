/**
 * The one error family. Every failure that reaches a client is an {@link AppError}; its
 * {@link AppError.toJSON} is the error body of the API contract:
 *
 * ```json
 * { "error": { "type", "message", "statusCode", "code", "requestId", "field"?, "details"? } }
 * ```
 *
 * The original error (a `pg` error, a JWT failure, …) is kept as `cause` for the logs and is
 * never serialised.
 */

/** One failed check of a validation error, e.g. `{ path: '/email', message: 'must match format "email"' }`. */
export interface ErrorDetail {
  readonly path: string;
  readonly message: string;
}

export interface AppErrorOptions {
  readonly field?: string | undefined;
  readonly details?: readonly ErrorDetail[] | undefined;
  readonly cause?: unknown;
  /** Seconds a client should wait before retrying (sent as `retry-after`). */
  readonly retryAfterSeconds?: number | undefined;
  /**
   * Send `details` even on a 5xx. Only for details the application wrote itself (a readiness
   * check's name), never anything from a driver.
   */
  readonly publicDetails?: boolean | undefined;
}

export interface ErrorBody {
  readonly error: {
    readonly type: string;
    readonly message: string;
    readonly statusCode: number;
    readonly code: string;
    readonly requestId: string;
    readonly field?: string;
    readonly details?: readonly ErrorDetail[];
  };
}

export abstract class AppError extends Error {
  abstract readonly type: string;
  readonly code: string;
  readonly statusCode: number;
  readonly field: string | undefined;
  readonly details: readonly ErrorDetail[] | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly #publicDetails: boolean;
  /** Server errors (5xx) never expose their message; see {@link publicMessage}. */
  get expose(): boolean {
    return this.statusCode < 500;
  }

  protected constructor(message: string, code: string, statusCode: number, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.statusCode = statusCode;
    this.field = options.field;
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.#publicDetails = options.publicDetails ?? false;
  }

  /** The message a client may read: the real one for 4xx, a fixed phrase for 5xx. */
  get publicMessage(): string {
    if (this.expose) return this.message;
    return this.statusCode === 503 ? 'Service unavailable' : 'Internal server error';
  }

  /**
   * The contract's error body.
   *
   * @example
   * ```ts
   * new NotFoundError('User not found').toJSON('req-1');
   * // { error: { type: 'NotFoundError', message: 'User not found', statusCode: 404, code: 'NOT_FOUND', requestId: 'req-1' } }
   * ```
   */
  toJSON(requestId = ''): ErrorBody {
    return {
      error: {
        type: this.type,
        message: this.publicMessage,
        statusCode: this.statusCode,
        code: this.code,
        requestId,
        ...(this.expose && this.field !== undefined ? { field: this.field } : {}),
        ...((this.expose || this.#publicDetails) && this.details !== undefined ? { details: this.details } : {}),
      },
    };
  }
}

export class ValidationError extends AppError {
  readonly type = 'ValidationError';
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'VALIDATION_FAILED', 400, options);
  }
}

export type AuthenticationCode = 'INVALID_CREDENTIALS' | 'INVALID_TOKEN' | 'TOKEN_EXPIRED';

export class AuthenticationError extends AppError {
  readonly type = 'AuthenticationError';
  constructor(message: string, code: AuthenticationCode = 'INVALID_TOKEN', options: AppErrorOptions = {}) {
    super(message, code, 401, options);
  }
}

export class AuthorizationError extends AppError {
  readonly type = 'AuthorizationError';
  constructor(message = 'You are not allowed to do this', options: AppErrorOptions = {}) {
    super(message, 'FORBIDDEN', 403, options);
  }
}

export class NotFoundError extends AppError {
  readonly type = 'NotFoundError';
  constructor(message = 'Not found', options: AppErrorOptions = {}) {
    super(message, 'NOT_FOUND', 404, options);
  }
}

export class UniqueConstraintError extends AppError {
  readonly type = 'UniqueConstraintError';
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'UNIQUE_VIOLATION', 409, options);
  }
}

export type ConflictCode = 'FOREIGN_KEY_VIOLATION' | 'SERIALIZATION_FAILURE' | 'CONFLICT' | 'LAST_ADMIN';

/** A referential or concurrency conflict that retries could not resolve. */
export class ConflictError extends AppError {
  readonly type = 'ConflictError';
  constructor(message: string, code: ConflictCode = 'CONFLICT', options: AppErrorOptions = {}) {
    super(message, code, 409, options);
  }
}

/** A foreign key violation: the row refers to something that does not exist (or is still referred to). */
export class ForeignKeyError extends ConflictError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'FOREIGN_KEY_VIOLATION', options);
  }
}

/**
 * A serialization failure or deadlock. The outermost unit of work retries these; one that
 * escapes the retries reaches the client as a 409.
 */
export class SerializationError extends ConflictError {
  constructor(message = 'The operation conflicted with a concurrent one; please retry', options: AppErrorOptions = {}) {
    super(message, 'SERIALIZATION_FAILURE', options);
  }
}

export class PayloadTooLargeError extends AppError {
  readonly type = 'PayloadTooLargeError';
  constructor(message = 'Request body is too large', options: AppErrorOptions = {}) {
    super(message, 'PAYLOAD_TOO_LARGE', 413, options);
  }
}

export class UnsupportedMediaTypeError extends AppError {
  readonly type = 'UnsupportedMediaTypeError';
  constructor(message = 'Unsupported content type; send application/json', options: AppErrorOptions = {}) {
    super(message, 'UNSUPPORTED_MEDIA_TYPE', 415, options);
  }
}

export class RateLimitError extends AppError {
  readonly type = 'RateLimitError';
  constructor(message = 'Too many attempts; try again later', options: AppErrorOptions = {}) {
    super(message, 'RATE_LIMITED', 429, options);
  }
}

export type UnavailableCode =
  | 'DATABASE_UNAVAILABLE'
  | 'POOL_EXHAUSTED'
  | 'QUERY_TIMEOUT'
  | 'OVERLOADED'
  /** The shared rate-limit store (Redis) does not answer: attempts are refused rather than let through uncounted. */
  | 'RATE_LIMIT_UNAVAILABLE';

export class ServiceUnavailableError extends AppError {
  readonly type = 'ServiceUnavailableError';
  constructor(message: string, code: UnavailableCode, options: AppErrorOptions = {}) {
    super(message, code, 503, { retryAfterSeconds: 1, ...options });
  }
}

export class InternalError extends AppError {
  readonly type: string = 'InternalError';
  constructor(message = 'Internal server error', options: AppErrorOptions = {}) {
    super(message, 'INTERNAL', 500, options);
  }
}

/** A database failure that fits no other category; a 500 whose cause is the driver error. */
export class DatabaseError extends InternalError {
  override readonly type = 'InternalError';
  constructor(message = 'Unexpected database error', options: AppErrorOptions = {}) {
    super(message, options);
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
