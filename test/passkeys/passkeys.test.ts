import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import { createApiClient } from '../../client/index.ts';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD, postJson } from '../helpers/http.ts';

// The passkey routes over HTTP, without a browser: what the refusals look like for bodies no
// authenticator would send. The ceremonies themselves (and the refusals that need a real
// signature) are in passkeys-browser.test.ts.

const b64 = (bytes: number) => randomBytes(bytes).toString('base64url');

/** An assertion as a browser would shape it, from no authenticator at all. */
function forgedAssertion(credentialId = b64(32)) {
  return {
    id: credentialId,
    rawId: credentialId,
    type: 'public-key',
    clientExtensionResults: {},
    response: { clientDataJSON: b64(120), authenticatorData: b64(37), signature: b64(70) },
  };
}

/** A registration as a browser would shape it, answering `challenge`, from no authenticator at all. */
function forgedRegistration(challenge: string, credentialId = b64(32)) {
  return {
    credential: {
      id: credentialId,
      rawId: credentialId,
      type: 'public-key',
      clientExtensionResults: {},
      response: {
        clientDataJSON: Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge })).toString('base64url'),
        attestationObject: b64(200),
      },
    },
  };
}

async function options(app: App, body: unknown = {}): Promise<{ challengeId: string; options: { challenge: string } }> {
  const response = await postJson(app, '/auth/passkeys/authentication/options', body);
  expect(response.statusCode, response.body).toBe(200);
  return response.json();
}

async function insertPasskey(db: Kysely<DB>, userId: string, name = 'Laptop'): Promise<string> {
  const id = randomUUID();
  await db
    .insertInto('passkey_credentials')
    .values({
      id,
      user_id: userId,
      credential_id: b64(32),
      public_key: randomBytes(77),
      backed_up: false,
      device_type: 'singleDevice',
      name,
      created_at: new Date(),
    })
    .execute();
  return id;
}

describe('passkeys over HTTP', () => {
  test('hands out sign-in options with an opaque challenge id, single use for 5 minutes', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const first = await options(app);
    const second = await options(app);
    expect(first.challengeId).not.toBe(second.challengeId);
    expect(first.options).toMatchObject({ rpId: 'localhost', userVerification: 'required', allowCredentials: [] });
    const row = await db
      .selectFrom('webauthn_challenges')
      .selectAll()
      .where('id', '=', first.challengeId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ ceremony: 'authentication', purpose: 'login', user_id: null, used_at: null });
    expect(row.expires_at.getTime() - row.created_at.getTime()).toBe(300_000);
  });

  test('answers a sign-in alike for any email (no enumeration), binding the challenge to a known account', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    await insertPasskey(db, user.id);
    const known = await options(app, { email: user.email.toUpperCase() });
    const unknown = await options(app, { email: 'nobody@example.com' });
    const shape = (answer: { options: object }) => ({ ...answer.options, challenge: undefined });
    expect(shape(known)).toEqual(shape(unknown));
    expect(shape(known)).toMatchObject({ allowCredentials: [] });
    const bound = await db
      .selectFrom('webauthn_challenges')
      .select(['id', 'user_id'])
      .where('id', 'in', [known.challengeId, unknown.challengeId])
      .execute();
    expect(Object.fromEntries(bound.map((row) => [row.id, row.user_id]))).toEqual({
      [known.challengeId]: user.id,
      [unknown.challengeId]: null,
    });
  });

  test('answers an unknown credential exactly like a wrong password', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const wrongPassword = await postJson(app, '/auth/login', { email: user.email, password: 'not the password' });
    const { challengeId } = await options(app);
    const unknown = await postJson(app, '/auth/passkeys/authentication', {
      challengeId,
      credential: forgedAssertion(),
    });
    const expected = expectError(wrongPassword, { statusCode: 401, code: 'INVALID_CREDENTIALS' });
    const actual = expectError(unknown, { statusCode: 401, code: 'INVALID_CREDENTIALS' });
    expect(actual.message).toBe(expected.message);
  });

  test('refuses an unknown challenge id, and a challenge presented twice', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const unknown = await postJson(app, '/auth/passkeys/authentication', {
      challengeId: randomUUID(),
      credential: forgedAssertion(),
    });
    expectError(unknown, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    const { challengeId } = await options(app);
    await postJson(app, '/auth/passkeys/authentication', { challengeId, credential: forgedAssertion() });
    const again = await postJson(app, '/auth/passkeys/authentication', { challengeId, credential: forgedAssertion() });
    expectError(again, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
  });

  test('verifies on one instance the challenge another handed out (challenges live in the database)', async ({
    db,
    onTestFinished,
  }) => {
    const first = await testApp(db, onTestFinished);
    const second = await testApp(db, onTestFinished);
    const { challengeId } = await options(first);
    // Known to the second instance: the credential is what fails (401), not the challenge (400).
    const elsewhere = await postJson(second, '/auth/passkeys/authentication', {
      challengeId,
      credential: forgedAssertion(),
    });
    expectError(elsewhere, { statusCode: 401, code: 'INVALID_CREDENTIALS' });
    const back = await postJson(first, '/auth/passkeys/authentication', { challengeId, credential: forgedAssertion() });
    expectError(back, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
  });

  test('refuses options for an unknown mfaToken, and for both an email and an mfaToken', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const unknown = await postJson(app, '/auth/passkeys/authentication/options', { mfaToken: b64(32) });
    expectError(unknown, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    const both = await postJson(app, '/auth/passkeys/authentication/options', {
      email: 'a@example.com',
      mfaToken: b64(32),
    });
    expectError(both, { statusCode: 400, code: 'VALIDATION_FAILED' });
  });

  test('throttles failed passkey sign-ins per credential and client address like passwords', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const credential = forgedAssertion();
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 7; attempt++) {
      const { challengeId } = await options(app);
      statuses.push((await postJson(app, '/auth/passkeys/authentication', { challengeId, credential })).statusCode);
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.at(-1)).toBe(429);
  });

  test.for([
    ['no body', undefined],
    ['an array', []],
    ['no credential', { challengeId: randomUUID() }],
    ['a challenge id that is not a UUID', { challengeId: "1' or '1'='1", credential: forgedAssertion() }],
    ['a credential of the wrong type', { challengeId: randomUUID(), credential: { ...forgedAssertion(), type: 'x' } }],
    [
      'a response that is not base64url',
      {
        challengeId: randomUUID(),
        credential: {
          ...forgedAssertion(),
          response: { clientDataJSON: '<script>', authenticatorData: 'a', signature: 'b' },
        },
      },
    ],
    ['a 2 kB credential id', { challengeId: randomUUID(), credential: forgedAssertion('A'.repeat(2048)) }],
    ['a prototype key', JSON.parse('{"__proto__": {"admin": true}, "challengeId": "x"}') as unknown],
  ])(
    'answers a sign-in with %s in the error shape (400 VALIDATION_FAILED)',
    async ([, body], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const response = await app.inject({
        method: 'POST',
        url: '/auth/passkeys/authentication',
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
      expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' });
    },
  );

  test('refuses a registration whose clientDataJSON names no challenge of the caller', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const clientData = Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: b64(32) })).toString(
      'base64url',
    );
    const credentialId = b64(32);
    const response = await postJson(
      app,
      '/auth/passkeys/registration',
      {
        credential: {
          id: credentialId,
          rawId: credentialId,
          type: 'public-key',
          clientExtensionResults: {},
          response: { clientDataJSON: clientData, attestationObject: b64(200) },
        },
      },
      bearer(accessToken),
    );
    expectError(response, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    // Another user's registration challenge is not the caller's either.
    const other = await createUser(db);
    const { accessToken: otherToken } = await login(app, other.email);
    const theirs = await app.inject({
      method: 'POST',
      url: '/auth/passkeys/registration/options',
      headers: bearer(otherToken),
    });
    const challenge = theirs.json<{ challenge: string }>().challenge;
    const stolen = await postJson(
      app,
      '/auth/passkeys/registration',
      forgedRegistration(challenge, credentialId),
      bearer(accessToken),
    );
    expectError(stolen, { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
  });

  test('needs a signed-in caller to register, and aal2 once the account has a factor', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const anonymous = await app.inject({ method: 'POST', url: '/auth/passkeys/registration/options' });
    expectError(anonymous, { statusCode: 401, code: 'INVALID_TOKEN' });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    await db.updateTable('users').set({ mfa_enabled: true }).where('id', '=', user.id).execute();
    const aal1 = await app.inject({
      method: 'POST',
      url: '/auth/passkeys/registration/options',
      headers: bearer(accessToken),
    });
    expectError(aal1, { statusCode: 403, code: 'MFA_REQUIRED' });
  });

  test('a registration challenge asked for at aal1 before the first factor is refused once the owner enrolled one (403), and stays unused', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const stolen = await login(app, user.email);
    const owner = await login(app, user.email);
    const asked = await app.inject({
      method: 'POST',
      url: '/auth/passkeys/registration/options',
      headers: bearer(stolen.accessToken),
    });
    expect(asked.statusCode, asked.body).toBe(200);
    const { challenge } = asked.json<{ challenge: string }>();
    // The owner turns on a second factor from another session.
    const enrol = await postJson(app, '/auth/mfa/totp', {}, bearer(owner.accessToken));
    const { factor, secret } = enrol.json<{ factor: { id: string }; secret: string }>();
    const code = TOTP.generate({ secret: Secret.fromBase32(secret), period: 30, digits: 6 });
    const verified = await postJson(app, `/auth/mfa/totp/${factor.id}/verify`, { code }, bearer(owner.accessToken));
    expect(verified.statusCode, verified.body).toBe(200);

    const credentialId = b64(32);
    const completed = await postJson(
      app,
      '/auth/passkeys/registration',
      forgedRegistration(challenge, credentialId),
      bearer(stolen.accessToken),
    );
    expectError(completed, { statusCode: 403, code: 'MFA_REQUIRED' });
    const row = await db
      .selectFrom('webauthn_challenges')
      .select('used_at')
      .where('challenge', '=', challenge)
      .executeTakeFirstOrThrow();
    expect(row.used_at).toBeNull();
    expect(await db.selectFrom('passkey_credentials').select('id').where('user_id', '=', user.id).execute()).toEqual(
      [],
    );
  });

  test('refuses a passkey name with a right-to-left override or a control character', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const id = await insertPasskey(db, user.id);
    for (const name of ['\u202Egnp.exe', 'Laptop\u0007']) {
      const response = await app.inject({
        method: 'PATCH',
        url: `/auth/passkeys/${id}`,
        headers: { ...bearer(accessToken), 'content-type': 'application/json' },
        payload: JSON.stringify({ name }),
      });
      expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED', field: 'name' });
    }
    const row = await db
      .selectFrom('passkey_credentials')
      .select('name')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row.name).toBe('Laptop');
  });

  test("renames only the caller's own passkeys", async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const other = await createUser(db);
    const theirs = await insertPasskey(db, other.id);
    const mine = await insertPasskey(db, user.id);
    const { accessToken } = await login(app, user.email);
    const rename = (id: string, name: string) =>
      app.inject({
        method: 'PATCH',
        url: `/auth/passkeys/${id}`,
        headers: { ...bearer(accessToken), 'content-type': 'application/json' },
        payload: JSON.stringify({ name }),
      });
    expectError(await rename(theirs, 'Mine now'), { statusCode: 404, code: 'NOT_FOUND' });
    expectError(await rename(mine, '   '), { statusCode: 400, code: 'VALIDATION_FAILED' });
    const renamed = await rename(mine.toUpperCase(), 'Phone');
    expect(renamed.statusCode, renamed.body).toBe(200);
    expect(renamed.json()).toMatchObject({ passkey: { id: mine, name: 'Phone' } });
  });

  test('refuses to remove the last way to sign in of an account without a password (409 LAST_SIGN_IN_METHOD)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const only = await insertPasskey(db, user.id);
    // An account created without a password (an external provider, later): its passkeys are all it has.
    await db.updateTable('users').set({ password_hash: '' }).where('id', '=', user.id).execute();
    const remove = (id: string) =>
      app.inject({ method: 'DELETE', url: `/auth/passkeys/${id}`, headers: bearer(accessToken) });
    expectError(await remove(only), { statusCode: 409, type: 'ConflictError', code: 'LAST_SIGN_IN_METHOD' });
    const spare = await insertPasskey(db, user.id, 'Spare');
    expect((await remove(only)).statusCode).toBe(204);
    expectError(await remove(spare), { statusCode: 409, code: 'LAST_SIGN_IN_METHOD' });
    expectError(await remove(randomUUID()), { statusCode: 404, code: 'NOT_FOUND' });
  });

  test('the typed client asks for options and signs in with a passkey (here refused like a wrong password)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const api = createApiClient({ baseUrl: await app.listen({ host: '127.0.0.1', port: 0 }) });
    const { data } = await api.POST('/auth/passkeys/authentication/options', { body: {} });
    if (data === undefined) throw new Error('no options');
    expect(data.options).toMatchObject({ rpId: 'localhost', userVerification: 'required' });
    const result = await api.signInWithPasskey({
      challengeId: data.challengeId,
      credential: { ...forgedAssertion(), type: 'public-key' },
    });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('INVALID_CREDENTIALS');
    expect(api.tokens).toBeUndefined();
  });

  test('removing the TOTP factor while a passkey remains keeps the second factor, now a passkey', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const enrolled = await postJson(app, '/auth/mfa/totp', { name: 'phone' }, bearer(accessToken));
    const { factor, secret } = enrolled.json<{ factor: { id: string }; secret: string }>();
    const code = TOTP.generate({ secret: Secret.fromBase32(secret), period: 30, digits: 6 });
    const verified = await postJson(app, `/auth/mfa/totp/${factor.id}/verify`, { code }, bearer(accessToken));
    expect(verified.statusCode, verified.body).toBe(200);
    await insertPasskey(db, user.id);
    const both = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });
    expect(both.json()).toMatchObject({ mfaRequired: true, methods: ['totp', 'recovery_code', 'passkey'] });

    const aal2 = verified.json<{ accessToken: string }>().accessToken;
    const removed = await app.inject({
      method: 'DELETE',
      url: `/auth/mfa/factors/${factor.id}`,
      headers: bearer(aal2),
    });
    expect(removed.statusCode, removed.body).toBe(204);
    const passkeyOnly = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });
    expect(passkeyOnly.json()).toMatchObject({ mfaRequired: true, methods: ['passkey'] });
  });

  test('takes exactly one of code, recoveryCode and passkey as a second factor', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/login/mfa', {
      mfaToken: b64(32),
      code: '123456',
      passkey: { challengeId: randomUUID(), credential: forgedAssertion() },
    });
    expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' });
  });
});
