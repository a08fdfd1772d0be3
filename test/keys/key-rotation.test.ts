import { keyId } from '../../src/keys/tokens.ts';
import { TEST_JWT_SECRET, testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import {
  accessClaims,
  bearer,
  craftJwt,
  createUser,
  decodeJwt,
  expectUnauthorized,
  login,
  postJson,
  type TokenPairJson,
  type UserJson,
} from '../helpers/http.ts';

const OLD_SECRET = 'the-secret-before-the-rotation-32-bytes!';
const NEW_SECRET = 'the-secret-after-the-rotation-at-least-32';

/** JWT_SECRET signs; JWT_PREVIOUS_SECRETS are still accepted. */
const rotated = { JWT_SECRET: NEW_SECRET, JWT_PREVIOUS_SECRETS: OLD_SECRET };

describe('JWT key rotation (JWT_SECRET, JWT_PREVIOUS_SECRETS, kid)', () => {
  test('names the signing key in the kid header of every access token, the same on every instance', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);

    const { header } = decodeJwt((await login(app, user.email)).accessToken);

    expect(header).toMatchObject({ alg: 'HS256', kid: keyId(TEST_JWT_SECRET) });
    expect(keyId(TEST_JWT_SECRET)).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(keyId(TEST_JWT_SECRET)).not.toBe(keyId(OLD_SECRET));
  });

  test('during the overlap, accepts a token signed with a previous secret and signs new ones with the current one', async ({
    db,
    onTestFinished,
  }) => {
    const before = await testApp(db, onTestFinished, { jwtSecret: OLD_SECRET, env: { JWT_SECRET: OLD_SECRET } });
    const after = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: rotated });
    const user = await createUser(db);
    const issuedBefore = (await login(before, user.email)).accessToken;

    const me = await after.inject({ url: '/auth/me', headers: bearer(issuedBefore) });

    expect(me.statusCode, me.body).toBe(200);
    expect(me.json<{ user: UserJson }>().user.id).toBe(user.id);
    expect(decodeJwt((await login(after, user.email)).accessToken).header.kid).toBe(keyId(NEW_SECRET));
  });

  test('a refresh retried within the reuse interval on an instance across the rotation gets the same successor', async ({
    db,
    onTestFinished,
  }) => {
    const before = await testApp(db, onTestFinished, { jwtSecret: OLD_SECRET, env: { JWT_SECRET: OLD_SECRET } });
    const after = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: rotated });
    const stranger = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: { JWT_SECRET: NEW_SECRET } });
    const user = await createUser(db);
    const { refreshToken } = await login(before, user.email);

    // Rotated on an instance still signing with the old secret; the response is lost, the client retries elsewhere.
    const first = await postJson(before, '/auth/refresh', { refreshToken });
    expect(first.statusCode, first.body).toBe(200);
    const retried = await postJson(after, '/auth/refresh', { refreshToken });
    expect(retried.statusCode, retried.body).toBe(200);
    expect(retried.json<TokenPairJson>().refreshToken).toBe(first.json<TokenPairJson>().refreshToken);

    // An instance that does not know the old secret cannot tell the retry from a replay: it ends the session.
    const second = await login(before, user.email);
    expect((await postJson(before, '/auth/refresh', { refreshToken: second.refreshToken })).statusCode).toBe(200);
    expectUnauthorized(await postJson(stranger, '/auth/refresh', { refreshToken: second.refreshToken }));
  });

  test('rejects a token of a previous secret with 401 once the overlap is over (the secret left JWT_PREVIOUS_SECRETS)', async ({
    db,
    onTestFinished,
  }) => {
    const before = await testApp(db, onTestFinished, { jwtSecret: OLD_SECRET, env: { JWT_SECRET: OLD_SECRET } });
    const done = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: { JWT_SECRET: NEW_SECRET } });
    const user = await createUser(db);
    const issuedBefore = (await login(before, user.email)).accessToken;

    const error = expectUnauthorized(await done.inject({ url: '/auth/me', headers: bearer(issuedBefore) }));
    expect(error.message).toMatch(/unknown key/);
  });

  test('rejects an unknown kid with 401, whatever the signature', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);

    for (const kid of ['not-a-key-of-ours', '', keyId('some other secret that nobody configured')]) {
      expectUnauthorized(
        await app.inject({ url: '/auth/me', headers: bearer(craftJwt(accessClaims(user), { header: { kid } })) }),
      );
    }
  });

  test('rejects a kid that is not a string with 401, never 500', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);

    for (const kid of [42, null, ['a'], { id: 'x' }]) {
      expectUnauthorized(
        await app.inject({ url: '/auth/me', headers: bearer(craftJwt(accessClaims(user), { header: { kid } })) }),
      );
    }
  });

  test('verifies with the key the kid names: a token naming the current key but signed with a previous one is rejected', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: rotated });
    const user = await createUser(db);
    const claims = accessClaims(user);

    const mislabelled = craftJwt(claims, { secret: OLD_SECRET, header: { kid: keyId(NEW_SECRET) } });
    const labelled = craftJwt(claims, { secret: OLD_SECRET, header: { kid: keyId(OLD_SECRET) } });

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(mislabelled) }));
    expect((await app.inject({ url: '/auth/me', headers: bearer(labelled) })).statusCode).toBe(200);
  });

  test('keeps every rule for a previous key: HS256 only, issuer, audience and type checked, expiry enforced', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: rotated });
    const user = await createUser(db);
    const kid = keyId(OLD_SECRET);
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>, options: Parameters<typeof craftJwt>[1] = {}) =>
      craftJwt(claims, { secret: OLD_SECRET, ...options, header: { kid, ...options.header } });

    expectUnauthorized(
      await app.inject({ url: '/auth/me', headers: bearer(sign(accessClaims(user), { alg: 'HS512' })) }),
    );
    expectUnauthorized(
      await app.inject({ url: '/auth/me', headers: bearer(sign({ ...accessClaims(user), iss: 'someone-else' })) }),
    );
    expectUnauthorized(
      await app.inject({ url: '/auth/me', headers: bearer(sign({ ...accessClaims(user), aud: 'another-api' })) }),
    );
    expectUnauthorized(
      await app.inject({ url: '/auth/me', headers: bearer(sign({ ...accessClaims(user), typ: 'refresh' })) }),
    );
    expectUnauthorized(
      await app.inject({
        url: '/auth/me',
        headers: bearer(sign({ ...accessClaims(user), iat: now - 1000, exp: now - 10 })),
      }),
      'TOKEN_EXPIRED',
    );
  });

  test('still accepts a token without kid (issued before key ids) when the current secret signed it, and no other', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { jwtSecret: NEW_SECRET, env: rotated });
    const user = await createUser(db);

    expect(
      (await app.inject({ url: '/auth/me', headers: bearer(craftJwt(accessClaims(user), { secret: NEW_SECRET })) }))
        .statusCode,
    ).toBe(200);
    expectUnauthorized(
      await app.inject({ url: '/auth/me', headers: bearer(craftJwt(accessClaims(user), { secret: OLD_SECRET })) }),
    );
  });
});
