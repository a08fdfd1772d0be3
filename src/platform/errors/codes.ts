/**
 * The one registry of error codes: every `code` a client can receive, with its HTTP status, the
 * `type` (the class of the error family the contract names) and what it means. The error
 * classes, the error handler, the raw-socket `clientErrorHandler` and the OpenAPI `Error` schema
 * (whose `code` is an enum of these keys) all read it, so a code cannot exist in one place only.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: {
    status: 400,
    type: 'ValidationError',
    meaning: 'The body, query or params fail the schema; `details` lists each failure with its path',
  },
  INVALID_OR_EXPIRED_TOKEN: {
    status: 400,
    type: 'InvalidTokenError',
    meaning:
      'An email-verification, password-reset, email-change, MFA challenge token, passkey challenge, provider sign-in state or exchange code that is unknown, used, superseded or expired (a provider response that does not validate, too)',
  },
  INVALID_CREDENTIALS: { status: 401, type: 'AuthenticationError', meaning: 'Wrong email or password' },
  INVALID_TOKEN: {
    status: 401,
    type: 'AuthenticationError',
    meaning: 'A missing, malformed, wrongly signed or revoked token, or an ended session',
  },
  TOKEN_EXPIRED: { status: 401, type: 'AuthenticationError', meaning: 'The token was valid but has expired' },
  INVALID_MFA_CODE: {
    status: 401,
    type: 'AuthenticationError',
    meaning: 'A wrong, reused or expired TOTP code, recovery code or passkey assertion in a second-factor step',
  },
  FORBIDDEN: { status: 403, type: 'AuthorizationError', meaning: 'Authenticated, but not allowed to do this' },
  EMAIL_NOT_VERIFIED: {
    status: 403,
    type: 'AuthorizationError',
    meaning: 'Login of an account whose email is not verified, when verification is required',
  },
  MFA_REQUIRED: {
    status: 403,
    type: 'AuthorizationError',
    meaning:
      'The action needs a session verified with a second factor (aal2: POST /auth/mfa/step-up), or the role must enrol one first',
  },
  NOT_FOUND: { status: 404, type: 'NotFoundError', meaning: 'Unknown resource or route' },
  REQUEST_TIMEOUT: {
    status: 408,
    type: 'RequestTimeoutError',
    meaning: 'The request (headers or body) did not arrive in time',
  },
  EXPECTATION_FAILED: {
    status: 417,
    type: 'ExpectationFailedError',
    meaning: 'An `Expect` header the server cannot meet (only `100-continue` is understood)',
  },
  UNIQUE_VIOLATION: {
    status: 409,
    type: 'UniqueConstraintError',
    meaning: 'A unique value is already taken; `field` names it',
  },
  FOREIGN_KEY_VIOLATION: {
    status: 409,
    type: 'ConflictError',
    meaning: 'The row refers to something that does not exist, or is still referred to',
  },
  SERIALIZATION_FAILURE: {
    status: 409,
    type: 'ConflictError',
    meaning: 'A concurrency conflict (serialization failure, deadlock) that retries could not resolve',
  },
  CONFLICT: { status: 409, type: 'ConflictError', meaning: 'The change conflicts with the current state' },
  LAST_ADMIN: { status: 409, type: 'ConflictError', meaning: 'The change would leave no active admin' },
  LAST_SIGN_IN_METHOD: {
    status: 409,
    type: 'ConflictError',
    meaning: "Removing the account's last way to sign in (no password, no other passkey or linked identity)",
  },
  IDENTITY_IN_USE: {
    status: 409,
    type: 'ConflictError',
    meaning: 'The identity at the provider is already linked to another account',
  },
  ACCOUNT_EXISTS: {
    status: 409,
    type: 'ConflictError',
    meaning:
      'A provider sign-in whose email belongs to an account it may not be linked to automatically (either email unverified): sign in, then link',
  },
  PAYLOAD_TOO_LARGE: { status: 413, type: 'PayloadTooLargeError', meaning: 'The body is over the limit' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    type: 'UnsupportedMediaTypeError',
    meaning: 'A body that is not application/json',
  },
  RATE_LIMITED: { status: 429, type: 'RateLimitError', meaning: 'Too many attempts; `retry-after` says when to retry' },
  REQUEST_HEADERS_TOO_LARGE: {
    status: 431,
    type: 'RequestHeadersTooLargeError',
    meaning: 'The request headers are over the size Node accepts',
  },
  INTERNAL: { status: 500, type: 'InternalError', meaning: 'Anything else; the cause is logged, never sent' },
  DATABASE_UNAVAILABLE: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning: 'The database cannot be reached',
  },
  POOL_EXHAUSTED: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning: 'No pooled connection became free within DB_CONNECTION_TIMEOUT_MS',
  },
  QUERY_TIMEOUT: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning: 'A statement ran past DB_STATEMENT_TIMEOUT_MS',
  },
  OVERLOADED: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning: 'The password-hashing queue is full',
  },
  PROVIDER_UNAVAILABLE: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning: 'The identity provider cannot be reached, or did not answer within OIDC_HTTP_TIMEOUT_MS',
  },
  RATE_LIMIT_UNAVAILABLE: {
    status: 503,
    type: 'ServiceUnavailableError',
    meaning:
      'The rate-limit store cannot count the request (Redis does not answer, or the in-memory counters are at THROTTLE_MEMORY_MAX_KEYS); it is refused, not let through uncounted',
  },
} as const satisfies Record<string, { status: number; type: string; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export type ErrorType = (typeof ERROR_CODES)[ErrorCode]['type'];

/** The codes whose `type` is `T`: what an error class may be constructed with. */
export type CodeOf<T extends ErrorType> = {
  [C in ErrorCode]: (typeof ERROR_CODES)[C]['type'] extends T ? C : never;
}[ErrorCode];

/** Every code, in registry order (the OpenAPI enum). */
export const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as ErrorCode[];
