import { expect } from 'vitest';
import type { ErrorBody } from '../../src/platform/errors/index.ts';

/** Resolves with the rejection of `promise`; fails the test if it resolves instead. */
export async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value: unknown) => {
      throw new Error(`Expected a failure, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

/** The `cause` of an error, which must be an Error. */
export function causeOf(error: unknown): unknown {
  expect(error).toBeInstanceOf(Error);
  return error instanceof Error ? error.cause : undefined;
}

/** The error body's `error` object, as the application defines it. */
export type ErrorJson = ErrorBody['error'];

const ERROR_KEYS = new Set(['type', 'message', 'statusCode', 'code', 'requestId', 'field', 'details']);

/** What a driver, SQL or a stack trace looks like; none of it may reach a client. */
export const LEAK =
  /\b(select|insert|update|delete)\b.*\b(from|into|set)\b|violates|constraint|terminating connection|ECONNREFUSED|ECONNRESET|Connection terminated|timeout exceeded|canceling statement|pg_|relation "|SQLSTATE|\bat .+\.(ts|js):\d+/i;

/** A response as `app.inject` returns it (`statusCode`, `body`) or as a real HTTP client sees it (`status`, `text` or raw `body`). */
export type AnyResponse = { readonly headers: Readonly<Record<string, string | string[] | number | undefined>> } & (
  | { readonly statusCode: number; readonly body: string }
  | { readonly status: number; readonly text: string }
  | { readonly status: number; readonly body: string }
);

/**
 * Asserts the contract's one error shape: a JSON body `{ error: { type, message, statusCode, code,
 * requestId, field?, details? } }` and nothing else, whose statusCode is the HTTP status, whose
 * requestId is the `x-request-id` header, with `field`/`details` only where they mean something,
 * and, for a 5xx, the fixed message and nothing from the driver. `expected` narrows status, type,
 * code (one of several) and field.
 */
export function expectError(
  response: AnyResponse,
  expected: { statusCode?: number; type?: string; code?: string | readonly string[]; field?: string } = {},
): ErrorJson {
  const status = 'statusCode' in response ? response.statusCode : response.status;
  const text = 'statusCode' in response ? response.body : 'text' in response ? response.text : response.body;
  const context = `HTTP ${status}: ${text.slice(0, 500)}`;
  if (expected.statusCode !== undefined) expect(status, context).toBe(expected.statusCode);
  expect(status, context).toBeGreaterThanOrEqual(400);
  expect(String(response.headers['content-type']), context).toMatch(/^application\/json/);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    throw new Error(`the error body is not JSON: ${context}`);
  }
  expect(parsed, context).toBeTypeOf('object');
  expect(Object.keys(parsed as object), context).toEqual(['error']);
  const error = (parsed as { error: ErrorJson }).error;
  for (const key of Object.keys(error))
    expect(ERROR_KEYS.has(key), `unexpected error key ${key} in ${context}`).toBe(true);
  expect(error, context).toMatchObject({
    type: expected.type ?? expect.any(String),
    message: expect.any(String),
    statusCode: status,
    code: expect.any(String),
    requestId: expect.any(String),
  });
  expect(error.message, context).not.toBe('');
  expect(error.requestId, context).not.toBe('');
  expect(error.requestId, context).toBe(response.headers['x-request-id']);
  if (expected.code !== undefined) {
    expect(typeof expected.code === 'string' ? [expected.code] : expected.code, context).toContain(error.code);
  }
  if (expected.field !== undefined) expect(error.field, context).toBe(expected.field);
  // A field names a property of the request (a hostile client's key may be any non-empty string).
  if ('field' in error) expect(error.field, `field is present but names nothing: ${context}`).toMatch(/./su);
  if ('details' in error) {
    expect(Array.isArray(error.details), context).toBe(true);
    for (const detail of error.details ?? [])
      expect(detail, context).toEqual({ path: expect.any(String), message: expect.any(String) });
  }
  if (status >= 500) {
    expect(error.message, context).toBe(status === 503 ? 'Service unavailable' : 'Internal server error');
    expect(text, context).not.toMatch(LEAK);
  }
  return error;
}
