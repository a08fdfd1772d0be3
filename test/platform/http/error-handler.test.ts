import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../../../src/platform/errors/index.ts';
import { toAppError } from '../../../src/platform/http/error-handler.ts';

const fastifyError = (fields: Record<string, unknown>) => Object.assign(new Error('boom'), fields);

describe('toAppError', () => {
  it('passes an AppError through unchanged', () => {
    const error = new NotFoundError('User not found');
    expect(toAppError(error)).toBe(error);
  });

  it.each([
    ['FST_ERR_CTP_BODY_TOO_LARGE', 413, 'PayloadTooLargeError', 'PAYLOAD_TOO_LARGE'],
    ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 415, 'UnsupportedMediaTypeError', 'UNSUPPORTED_MEDIA_TYPE'],
    ['FST_ERR_CTP_EMPTY_JSON_BODY', 400, 'ValidationError', 'VALIDATION_FAILED'],
    ['FST_ERR_CTP_INVALID_JSON_BODY', 400, 'ValidationError', 'VALIDATION_FAILED'],
    ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 400, 'ValidationError', 'VALIDATION_FAILED'],
  ])('maps Fastify error %s to %i %s', (code, statusCode, type, appCode) => {
    const error = fastifyError({ code, statusCode });
    expect(toAppError(error)).toMatchObject({ statusCode, type, code: appCode, cause: error });
  });

  it.each([
    [400, 'ValidationError', 'VALIDATION_FAILED'],
    [401, 'AuthenticationError', 'INVALID_TOKEN'],
    [403, 'AuthorizationError', 'FORBIDDEN'],
    [404, 'NotFoundError', 'NOT_FOUND'],
    [413, 'PayloadTooLargeError', 'PAYLOAD_TOO_LARGE'],
    [415, 'UnsupportedMediaTypeError', 'UNSUPPORTED_MEDIA_TYPE'],
    [429, 'RateLimitError', 'RATE_LIMITED'],
    [502, 'InternalError', 'INTERNAL'],
  ])('maps any other error with status %i to %s', (statusCode, type, code) => {
    expect(toAppError(fastifyError({ statusCode }))).toMatchObject({
      statusCode: statusCode === 502 ? 500 : statusCode,
      type,
      code,
    });
  });

  it('turns a JSON syntax error into a 400 that says so', () => {
    const error = Object.assign(new SyntaxError('Unexpected token'), { statusCode: 400 });
    expect(toAppError(error)).toMatchObject({ statusCode: 400, message: 'Body is not valid JSON' });
  });

  it('lists every schema failure with its path, and names the field only when there is one', () => {
    const many = toAppError(
      fastifyError({
        validationContext: 'body',
        validation: [
          { instancePath: '', params: { missingProperty: 'email' }, message: "must have required property 'email'" },
          { instancePath: '/password', params: {}, message: 'must be string' },
        ],
      }),
    );
    expect(many).toMatchObject({ statusCode: 400, message: 'Request is invalid', field: undefined });
    expect(many.details).toEqual([
      { path: '/body/email', message: "must have required property 'email'" },
      { path: '/body/password', message: 'must be string' },
    ]);

    const one = toAppError(
      fastifyError({
        validationContext: 'querystring',
        validation: [{ instancePath: '/limit', message: 'must be <= 100' }],
      }),
    );
    expect(one).toMatchObject({ field: 'limit', message: '/querystring/limit must be <= 100' });

    const wholeBody = toAppError(fastifyError({ validation: [{ instancePath: '', message: 'must be object' }] }));
    expect(wholeBody).toMatchObject({ field: undefined, details: [{ path: '/body', message: 'must be object' }] });
  });

  it('makes anything unknown a 500 that hides its message', () => {
    const appError = toAppError(new TypeError('secret internals'));
    expect(appError.statusCode).toBe(500);
    expect(JSON.stringify(appError.toJSON('r'))).not.toContain('secret internals');
  });
});
