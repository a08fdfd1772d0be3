import { describe, expect, it } from 'vitest';
import * as errors from '../../../src/platform/errors/index.ts';
import { AppError, ERROR_CODE_LIST, ERROR_CODES, type ErrorCode } from '../../../src/platform/errors/index.ts';
import { ErrorSchema } from '../../../src/platform/http/schemas.ts';

/** One instance per code, built the way the application builds it. */
const EXAMPLES: Record<ErrorCode, AppError> = {
  VALIDATION_FAILED: new errors.ValidationError('bad'),
  INVALID_OR_EXPIRED_TOKEN: new errors.InvalidTokenError(),
  INVALID_CREDENTIALS: new errors.AuthenticationError('bad', 'INVALID_CREDENTIALS'),
  INVALID_TOKEN: new errors.AuthenticationError('bad', 'INVALID_TOKEN'),
  TOKEN_EXPIRED: new errors.AuthenticationError('bad', 'TOKEN_EXPIRED'),
  INVALID_MFA_CODE: new errors.AuthenticationError('bad code', 'INVALID_MFA_CODE'),
  MFA_REQUIRED: new errors.AuthorizationError('step up first', 'MFA_REQUIRED'),
  FORBIDDEN: new errors.AuthorizationError(),
  EMAIL_NOT_VERIFIED: new errors.AuthorizationError('verify first', 'EMAIL_NOT_VERIFIED'),
  NOT_FOUND: new errors.NotFoundError(),
  REQUEST_TIMEOUT: new errors.RequestTimeoutError(),
  EXPECTATION_FAILED: new errors.ExpectationFailedError(),
  UNIQUE_VIOLATION: new errors.UniqueConstraintError('taken'),
  FOREIGN_KEY_VIOLATION: new errors.ForeignKeyError('dangling'),
  SERIALIZATION_FAILURE: new errors.SerializationError(),
  CONFLICT: new errors.ConflictError('conflict'),
  LAST_ADMIN: new errors.ConflictError('last admin', 'LAST_ADMIN'),
  LAST_SIGN_IN_METHOD: new errors.ConflictError('last method', 'LAST_SIGN_IN_METHOD'),
  IDENTITY_IN_USE: new errors.ConflictError('linked elsewhere', 'IDENTITY_IN_USE'),
  ACCOUNT_EXISTS: new errors.ConflictError('sign in, then link', 'ACCOUNT_EXISTS'),
  PAYLOAD_TOO_LARGE: new errors.PayloadTooLargeError(),
  UNSUPPORTED_MEDIA_TYPE: new errors.UnsupportedMediaTypeError(),
  RATE_LIMITED: new errors.RateLimitError(),
  REQUEST_HEADERS_TOO_LARGE: new errors.RequestHeadersTooLargeError(),
  INTERNAL: new errors.InternalError(),
  DATABASE_UNAVAILABLE: new errors.ServiceUnavailableError('down', 'DATABASE_UNAVAILABLE'),
  POOL_EXHAUSTED: new errors.ServiceUnavailableError('full', 'POOL_EXHAUSTED'),
  QUERY_TIMEOUT: new errors.ServiceUnavailableError('slow', 'QUERY_TIMEOUT'),
  OVERLOADED: new errors.ServiceUnavailableError('busy', 'OVERLOADED'),
  RATE_LIMIT_UNAVAILABLE: new errors.ServiceUnavailableError('no redis', 'RATE_LIMIT_UNAVAILABLE'),
  PROVIDER_UNAVAILABLE: new errors.ServiceUnavailableError('provider down', 'PROVIDER_UNAVAILABLE'),
};

describe('the error code registry', () => {
  it.each(ERROR_CODE_LIST)('%s: the error carries the status and type the registry gives it', (code) => {
    const error = EXAMPLES[code];
    const body = error.toJSON('req-1').error;
    expect({ code: body.code, statusCode: body.statusCode, type: body.type }).toEqual({
      code,
      statusCode: ERROR_CODES[code].status,
      type: ERROR_CODES[code].type,
    });
    expect(ERROR_CODES[code].meaning.length).toBeGreaterThan(10);
  });

  it("names every error's type after an exported class of the family", () => {
    const classes = new Map(
      Object.entries(errors as Record<string, unknown>).filter(
        (entry): entry is [string, abstract new (...args: never[]) => AppError] =>
          typeof entry[1] === 'function' && entry[1].prototype instanceof AppError,
      ),
    );
    for (const code of ERROR_CODE_LIST) {
      const type = ERROR_CODES[code].type;
      const named = classes.get(type);
      expect(named, `${code}: no class named ${type}`).toBeDefined();
      expect(EXAMPLES[code]).toBeInstanceOf(named);
    }
  });

  it('documents exactly the registry as the enum of the Error schema', () => {
    const code = ErrorSchema.properties.error.properties.code;
    const type = ErrorSchema.properties.error.properties.type;
    expect(code.anyOf.map((literal) => literal.const)).toEqual(ERROR_CODE_LIST);
    expect(new Set(type.anyOf.map((literal) => literal.const))).toEqual(
      new Set(ERROR_CODE_LIST.map((each) => ERROR_CODES[each].type)),
    );
  });
});
