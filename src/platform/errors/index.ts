/**
 * The one error family. Every failure that reaches a client is an {@link AppError}; its
 * {@link AppError.toJSON} is the error body of the API contract:
 *
 * ```json
 * { "error": { "type", "message", "statusCode", "code", "requestId", "field"?, "details"? } }
 * ```
 *
 * The original error (a `pg` error, a JWT failure, …) is kept as `cause` for the logs and is
 * never serialised. Codes, their statuses and types come from the one registry, `ERROR_CODES`.
 */

import { ERROR_CODES, type CodeOf, type ErrorCode, type ErrorType } from './codes.ts';

export { ERROR_CODE_LIST, ERROR_CODES, type ErrorCode, type ErrorType } from './codes.ts';

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
    readonly type: ErrorType;
    readonly message: string;
    readonly statusCode: number;
    readonly code: ErrorCode;
    readonly requestId: string;
    readonly field?: string;
    readonly details?: readonly ErrorDetail[];
  };
}

export abstract class AppError extends Error {
  /** The class of the family the contract names for {@link code} (see `ERROR_CODES`). */
  readonly type: ErrorType;
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly field: string | undefined;
  readonly details: readonly ErrorDetail[] | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly #publicDetails: boolean;
  /** Server errors (5xx) never expose their message; see {@link publicMessage}. */
  get expose(): boolean {
    return this.statusCode < 500;
  }

  protected constructor(message: string, code: ErrorCode, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.type = ERROR_CODES[code].type;
    this.statusCode = ERROR_CODES[code].status;
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
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'VALIDATION_FAILED', options);
  }
}

/** (v2) An email-verification or password-reset token, (v3) an email-change link, that is unknown, used, superseded or expired. */
export class InvalidTokenError extends AppError {
  constructor(message = 'The token is invalid or has expired', options: AppErrorOptions = {}) {
    super(message, 'INVALID_OR_EXPIRED_TOKEN', options);
  }
}

export type AuthenticationCode = CodeOf<'AuthenticationError'>;

export class AuthenticationError extends AppError {
  constructor(message: string, code: AuthenticationCode = 'INVALID_TOKEN', options: AppErrorOptions = {}) {
    super(message, code, options);
  }
}

export type AuthorizationCode = CodeOf<'AuthorizationError'>;

export class AuthorizationError extends AppError {
  constructor(
    message = 'You are not allowed to do this',
    code: AuthorizationCode = 'FORBIDDEN',
    options: AppErrorOptions = {},
  ) {
    super(message, code, options);
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'Not found', options: AppErrorOptions = {}) {
    super(message, 'NOT_FOUND', options);
  }
}

/** The request (headers or body) did not arrive within the server's request timeout. */
export class RequestTimeoutError extends AppError {
  constructor(message = 'The request took too long to arrive', options: AppErrorOptions = {}) {
    super(message, 'REQUEST_TIMEOUT', options);
  }
}

export class UniqueConstraintError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'UNIQUE_VIOLATION', options);
  }
}

export type ConflictCode = CodeOf<'ConflictError'>;

/** A referential or concurrency conflict that retries could not resolve, or a change the state forbids. */
export class ConflictError extends AppError {
  constructor(message: string, code: ConflictCode = 'CONFLICT', options: AppErrorOptions = {}) {
    super(message, code, options);
  }
}

/**
 * A foreign key violation: the row refers to something that does not exist (or is still referred
 * to). Its `type` is the contract's `ConflictError`; the subclass exists for `instanceof`.
 */
export class ForeignKeyError extends ConflictError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super(message, 'FOREIGN_KEY_VIOLATION', options);
  }
}

/**
 * A serialization failure or deadlock. The outermost unit of work retries these; one that
 * escapes the retries reaches the client as a 409 `ConflictError`.
 */
export class SerializationError extends ConflictError {
  constructor(message = 'The operation conflicted with a concurrent one; please retry', options: AppErrorOptions = {}) {
    super(message, 'SERIALIZATION_FAILURE', options);
  }
}

/** An `Expect` header the server cannot meet (only `100-continue` is understood). */
export class ExpectationFailedError extends AppError {
  constructor(message = 'Unsupported Expect header; only 100-continue is supported', options: AppErrorOptions = {}) {
    super(message, 'EXPECTATION_FAILED', options);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message = 'Request body is too large', options: AppErrorOptions = {}) {
    super(message, 'PAYLOAD_TOO_LARGE', options);
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(message = 'Unsupported content type; send application/json', options: AppErrorOptions = {}) {
    super(message, 'UNSUPPORTED_MEDIA_TYPE', options);
  }
}

export class RateLimitError extends AppError {
  constructor(message = 'Too many attempts; try again later', options: AppErrorOptions = {}) {
    super(message, 'RATE_LIMITED', options);
  }
}

/** Request headers over the size Node's HTTP parser accepts (written straight to the socket). */
export class RequestHeadersTooLargeError extends AppError {
  constructor(message = 'Request headers are too large', options: AppErrorOptions = {}) {
    super(message, 'REQUEST_HEADERS_TOO_LARGE', options);
  }
}

export type UnavailableCode = CodeOf<'ServiceUnavailableError'>;

export class ServiceUnavailableError extends AppError {
  constructor(message: string, code: UnavailableCode, options: AppErrorOptions = {}) {
    super(message, code, { retryAfterSeconds: 1, ...options });
  }
}

export class InternalError extends AppError {
  constructor(message = 'Internal server error', options: AppErrorOptions = {}) {
    super(message, 'INTERNAL', options);
  }
}

/** A database failure that fits no other category; a 500 `InternalError` whose cause is the driver error. */
export class DatabaseError extends InternalError {
  constructor(message = 'Unexpected database error', options: AppErrorOptions = {}) {
    super(message, options);
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
