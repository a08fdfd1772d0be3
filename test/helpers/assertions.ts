import { expect } from 'vitest';

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
