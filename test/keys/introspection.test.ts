import { generateKeyPair, SignJWT } from 'jose';
import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import { UserChangeFeed } from '../../src/platform/db/user-changes.ts';
import type { AuthenticatedUser } from '../../src/auth/service.ts';
import { AppMetrics } from '../../src/platform/metrics/metrics.ts';
import { PrincipalCache } from '../../src/sessions/principal-cache.ts';
import type { LiveSession } from '../../src/sessions/service.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL, type TestDatabase } from '../helpers/database.ts';
import { AUTH, bearer, createUser, expectError, expectUnauthorized, login, postJson } from '../helpers/http.ts';

const INTROSPECTION_TOKEN = 'an-introspection-secret-of-at-least-32-bytes';
const NEXT_INTROSPECTION_TOKEN = 'the-next-introspection-secret-32-bytes-long';
const ENV = { JWT_ALGORITHM: 'EdDSA', INTROSPECTION_TOKEN: `${INTROSPECTION_TOKEN},${NEXT_INTROSPECTION_TOKEN}` };

async function introspect(app: App, token: unknown, secret = INTROSPECTION_TOKEN) {
  return postJson(app, '/auth/introspect', { token }, bearer(secret));
}

/** An instance as server.ts wires it: its caches of principals and live sessions kept fresh by LISTEN. */
async function cachedInstance(database: TestDatabase, onFinished: (fn: () => Promise<void>) => void) {
  const feed: UserChangeFeed = new UserChangeFeed(
    { url: database.url, applicationName: 'vitest-introspection', reconnect: { minDelayMs: 20, maxDelayMs: 100 } },
    {
      onChange: (id) => {
        principals.invalidate(id);
      },
      onSessionEnded: (sid) => {
        sessions.invalidate(sid);
      },
      onReset: () => {
        principals.clear();
        sessions.clear();
      },
    },
  );
  const principals = new PrincipalCache<AuthenticatedUser>({ ttlMs: 60_000, maxEntries: 100, isLive: () => feed.live });
  const sessions = new PrincipalCache<LiveSession>({ ttlMs: 60_000, maxEntries: 100, isLive: () => feed.live });
  await feed.start();
  onFinished(async () => {
    await feed.close();
  });
  const metrics = new AppMetrics();
  const app = await testApp(database.db, onFinished, { env: ENV, principals, liveSessions: sessions, metrics });
  const queries = async () =>
    (await metrics.queryDuration.get()).values
      .filter((value) => value.metricName === 'db_query_duration_seconds_count')
      .reduce((sum, value) => sum + value.value, 0);
  return { app, queries };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function signedIn(app: App, db: Kysely<DB>) {
  const user = await createUser(db);
  return { ...(await login(app, user.email)), user };
}

describe('POST /auth/introspect (RFC 7662)', () => {
  test('answers active with the token claims for a live session, not cacheable', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const { user, accessToken } = await signedIn(app, db);

    const response = await introspect(app, accessToken);

    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['cache-control']).toBe('no-store');
    const body = response.json<Record<string, unknown>>();
    expect(body).toMatchObject({
      active: true,
      sub: user.id,
      aal: 'aal1',
      amr: ['pwd'],
      iss: AUTH.jwtIssuer,
      aud: AUTH.jwtAudience,
      token_type: 'Bearer',
    });
    expect(body['exp']).toBe((body['iat'] as number) + AUTH.accessTokenTtlSeconds);
    expect(body['sid']).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('accepts every configured introspection token (rotation) and an RFC 7662 form body', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const { accessToken } = await signedIn(app, db);

    expect((await introspect(app, accessToken, NEXT_INTROSPECTION_TOKEN)).json()).toMatchObject({ active: true });
    const form = await app.inject({
      method: 'POST',
      url: '/auth/introspect',
      headers: { ...bearer(INTROSPECTION_TOKEN), 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ token: accessToken, token_type_hint: 'access_token' }).toString(),
    });
    expect(form.statusCode, form.body).toBe(200);
    expect(form.json()).toMatchObject({ active: true });
  });

  test('answers inactive, and nothing else, for an expired token', async ({ db, onTestFinished }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { env: ENV, clock: () => now });
    const { accessToken } = await signedIn(app, db);
    now = new Date(now.getTime() + (AUTH.accessTokenTtlSeconds + 1) * 1000);

    const response = await introspect(app, accessToken);

    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ active: false });
  });

  test.for([
    ['garbage', () => 'not.a.jwt'],
    ['a token with its payload changed', (token: string) => token.replace(/\.[^.]+\./, '.e30.')],
  ] as const)('answers inactive for a forged token: %s', async ([, forge], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const { accessToken } = await signedIn(app, db);

    expect((await introspect(app, forge(accessToken))).json()).toEqual({ active: false });
  });

  test('answers inactive for a token signed by a key of its own', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const { user } = await signedIn(app, db);
    const { privateKey } = await generateKeyPair('EdDSA');
    const forged = await new SignJWT({ sub: user.id, sid: user.id, role: 'user', typ: 'access' })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'made-up' })
      .setIssuer(AUTH.jwtIssuer)
      .setAudience(AUTH.jwtAudience)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

    expect((await introspect(app, forged)).json()).toEqual({ active: false });
  });

  test('answers inactive for a disabled user and a deleted user', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const disabled = await signedIn(app, db);
    const deleted = await signedIn(app, db);
    await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', disabled.user.id).execute();
    await db.deleteFrom('users').where('id', '=', deleted.user.id).execute();

    expect((await introspect(app, disabled.accessToken)).json()).toEqual({ active: false });
    expect((await introspect(app, deleted.accessToken)).json()).toEqual({ active: false });
  });

  describe.runIf(TEST_POOL.poolMode !== 'transaction')('with the caches of a running server', () => {
    test('a session ended a moment ago on another instance is inactive, and a live one costs no query', async ({
      onTestFinished,
    }) => {
      const database = await isolatedDatabase(onTestFinished);
      const other = await testApp(database.db, onTestFinished, { env: ENV });
      const { app, queries } = await cachedInstance(database, onTestFinished);
      const { refreshToken, accessToken } = await signedIn(other, database.db);
      expect((await introspect(app, accessToken)).json()).toMatchObject({ active: true });

      const before = await queries();
      expect((await introspect(app, accessToken)).json()).toMatchObject({ active: true });
      expect(await queries()).toBe(before);

      expect((await postJson(other, '/auth/logout', { refreshToken })).statusCode).toBe(204);
      await waitFor(async () => !(await introspect(app, accessToken)).json<{ active: boolean }>().active);
      expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(accessToken) }));
    });
  });

  test.for([
    ['no Authorization header', {}],
    ['a wrong introspection token', bearer('a-wrong-secret-that-is-also-32-bytes-long')],
    ['a user access token instead', null],
    ['Basic credentials', { authorization: `Basic ${Buffer.from(`x:${INTROSPECTION_TOKEN}`).toString('base64')}` }],
  ] as const)('answers 401 in the error shape with %s', async ([, headers], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const { accessToken } = await signedIn(app, db);

    const response = await postJson(app, '/auth/introspect', { token: accessToken }, headers ?? bearer(accessToken));

    expectUnauthorized(response);
  });

  test.for([
    ['no token', {}, 400],
    ['a token that is not a string', { token: 42 }, 400],
    ['an empty token', { token: '' }, 400],
    ['a huge token', { token: 'a'.repeat(20_000) }, 413],
    ['an array body', [], 400],
  ] as const)('rejects a hostile body (%s) in the error shape', async ([, body, status], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });

    const response = await postJson(app, '/auth/introspect', body, bearer(INTROSPECTION_TOKEN));

    expectError(response, { statusCode: status });
  });

  test('rejects a form body with the token twice, and a text body', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: ENV });
    const twice = await app.inject({
      method: 'POST',
      url: '/auth/introspect',
      headers: { ...bearer(INTROSPECTION_TOKEN), 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'token=a&token=b',
    });
    expectError(twice, { statusCode: 400, code: 'VALIDATION_FAILED' });
    const text = await app.inject({
      method: 'POST',
      url: '/auth/introspect',
      headers: { ...bearer(INTROSPECTION_TOKEN), 'content-type': 'text/plain' },
      payload: 'token',
    });
    expectError(text, { statusCode: 415 });
  });

  test('does not exist without INTROSPECTION_TOKEN', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { JWT_ALGORITHM: 'EdDSA' } });

    expectError(await introspect(app, 'x'), { statusCode: 404, code: 'NOT_FOUND' });
  });
});
