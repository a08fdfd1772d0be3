/**
 * Compiled by `npm run typecheck`, never run: each `@ts-expect-error` below is a misuse of the
 * generated client that must not compile. If the client's types stopped catching one (the
 * schema loosened, the generator dropped a type), the directive itself becomes the error
 * ("Unused '@ts-expect-error' directive") and the typecheck fails.
 */
import { createApiClient, type ErrorCode } from '../../client/index.ts';

const api = createApiClient({ baseUrl: 'http://127.0.0.1:3000' });

export async function misuses(): Promise<unknown[]> {
  const reads: unknown[] = [];
  // @ts-expect-error a misspelled body field (`passwrd`)
  await api.POST('/auth/login', { body: { email: 'ada@example.com', passwrd: 'x' } });

  // @ts-expect-error a required body field missing (`name`)
  await api.POST('/auth/register', { body: { email: 'ada@example.com', password: 'correct horse battery' } });

  // @ts-expect-error a wrong type in the body (the password is a string)
  await api.POST('/auth/login', { body: { email: 'ada@example.com', password: 12345678 } });

  // @ts-expect-error a route that does not exist
  await api.GET('/auth/whoami');

  // @ts-expect-error a method the route does not have
  await api.DELETE('/auth/login');

  // @ts-expect-error a path parameter missing
  await api.GET('/users/{id}', { params: { path: {} } });

  // @ts-expect-error a query parameter with the wrong type (limit is a number)
  await api.GET('/users', { params: { query: { limit: 'ten' } } });

  const { data, error } = await api.GET('/auth/me');
  // @ts-expect-error a misspelled response field (`emial`)
  reads.push(data?.user.emial);
  // @ts-expect-error the user object has no password field, in any form
  reads.push(data?.user.passwordHash);
  // @ts-expect-error a misspelled field of the error body
  reads.push(error?.error.cod);
  reads.push(error?.error.code satisfies ErrorCode | undefined);
  // @ts-expect-error a code the error registry does not have (the enum is closed)
  reads.push(error?.error.code === 'NOT_A_REAL_CODE');
  // @ts-expect-error a misspelled code is as wrong as an unknown one
  const unknown: ErrorCode = 'INVALID_CREDENTIAL';
  reads.push(unknown);
  return reads;
}
