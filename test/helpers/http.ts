import { createHmac } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { App } from '../../src/app.ts';
import type { UserRole } from '../../src/users/users.repository.ts';
import { type HashCallers, PasswordHasher } from '../../src/auth/passwords.ts';
import { TEST_ARGON2, TEST_JWT_SECRET, testConfig } from './app.ts';
import { expectError, type ErrorJson } from './assertions.ts';
import { createUser, PASSWORD } from './factories.ts';

// The e2e suites' toolkit: the one error assertion lives with the other shared assertions.
export { expectError, type ErrorJson };
// Users are made by the one user factory (test/helpers/factories.ts).
export { createUser, PASSWORD };

/** What a client receives: the contract's user object. */
export interface UserJson {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly role: 'user' | 'admin';
  readonly status: 'active' | 'disabled';
  readonly emailVerifiedAt: string | null;
  readonly createdAt: string;
  readonly lastLoginAt: string | null;
}

export interface TokenPairJson {
  readonly accessToken: string;
  readonly refreshToken: string;
  readonly tokenType: 'Bearer';
  readonly expiresIn: number;
}

export interface LoginJson extends TokenPairJson {
  readonly user: UserJson;
  /** Sent back with later logins from this device (api.md, "Abuse resistance"). */
  readonly deviceToken: string;
}

/** The error body's `error` object, as the application defines it. */

/** The password every user made by {@link createUser} has. */

export const USER_KEYS = ['createdAt', 'email', 'emailVerifiedAt', 'id', 'lastLoginAt', 'name', 'role', 'status'];
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The auth settings the test app runs with (issuer, audience, lifetimes). */
export const AUTH = testConfig().auth;

/**
 * A hasher with argon2 for real (at the tests' cheap parameters) that counts the argon2 runs it
 * makes, so a test can tell how many verifications a request ran (a dummy one included).
 */
export class CountingHasher extends PasswordHasher {
  verifications = 0;
  hashes = 0;

  constructor() {
    super({ params: TEST_ARGON2, concurrency: 4, queueLimit: 64 });
  }

  protected override argon2Verify(hash: string, password: string, callers: HashCallers): Promise<boolean> {
    this.verifications++;
    return super.argon2Verify(hash, password, callers);
  }

  override async hash(password: string): Promise<string> {
    this.hashes++;
    return super.hash(password);
  }

  reset(): void {
    this.verifications = 0;
    this.hashes = 0;
  }
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

export async function postJson(
  app: App,
  url: string,
  payload: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    payload: JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/** Logs in through the API and expects success. */
export async function login(app: App, email: string, password = PASSWORD): Promise<LoginJson> {
  const response = await postJson(app, '/auth/login', { email, password });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<LoginJson>();
}

export function expectUnauthorized(
  response: LightMyRequestResponse,
  code: string | readonly string[] = 'INVALID_TOKEN',
): ErrorJson {
  return expectError(response, { statusCode: 401, type: 'AuthenticationError', code });
}

/** Asserts a contract user object: exactly its fields, ISO timestamps, no password in any form. */
export function expectUserShape(user: unknown): UserJson {
  expect(user).toBeTypeOf('object');
  expect(Object.keys(user as object).sort()).toEqual(USER_KEYS);
  const typed = user as UserJson;
  expect(typed.id).toMatch(UUID);
  expect(typed.createdAt).toMatch(ISO_UTC);
  if (typed.lastLoginAt !== null) expect(typed.lastLoginAt).toMatch(ISO_UTC);
  if (typed.emailVerifiedAt !== null) expect(typed.emailVerifiedAt).toMatch(ISO_UTC);
  expect(['user', 'admin']).toContain(typed.role);
  expect(['active', 'disabled']).toContain(typed.status);
  return typed;
}

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

export interface CraftOptions {
  /** The `alg` header; also picks the HMAC unless `hmac` says otherwise. */
  readonly alg?: string;
  /** The HMAC actually computed; `null` for an empty signature. */
  readonly hmac?: 'sha256' | 'sha384' | 'sha512' | null;
  readonly secret?: string;
  readonly header?: Record<string, unknown>;
}

/** A JWT built by hand, so every header and claim is under the test's control. */
export function craftJwt(payload: Record<string, unknown>, options: CraftOptions = {}): string {
  const alg = options.alg ?? 'HS256';
  const defaultHmac = alg === 'HS512' ? 'sha512' : alg === 'HS384' ? 'sha384' : 'sha256';
  const hmac = options.hmac === undefined ? defaultHmac : options.hmac;
  const signingInput = `${base64url(JSON.stringify({ alg, typ: 'JWT', ...options.header }))}.${base64url(JSON.stringify(payload))}`;
  const signature =
    hmac === null
      ? ''
      : createHmac(hmac, options.secret ?? TEST_JWT_SECRET)
          .update(signingInput)
          .digest('base64url');
  return `${signingInput}.${signature}`;
}

/**
 * The claims a genuine access token for `user` carries, valid for the next 15 minutes, in the
 * session {@link createUser} opened for them (its id is the user's).
 */
export function accessClaims(user: { id: string; role: UserRole }): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: user.id,
    role: user.role,
    sid: user.id,
    typ: 'access',
    iss: AUTH.jwtIssuer,
    aud: AUTH.jwtAudience,
    iat: now,
    exp: now + 900,
  };
}

/** A valid access token for `user`, signed like the app signs them, without a login. */
export function accessTokenFor(user: { id: string; role: UserRole }): string {
  return craftJwt(accessClaims(user));
}

export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header, payload] = token.split('.');
  const decode = (part: string | undefined): Record<string, unknown> =>
    JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  return { header: decode(header), payload: decode(payload) };
}
