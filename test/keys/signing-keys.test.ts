import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { App } from '../../src/app.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { CLOCK_SKEW_MS } from '../../src/keys/key-states.ts';
import { KEY_RELOAD_INTERVAL_MS } from '../../src/keys/signing-keys.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import {
  AUTH,
  bearer,
  createUser,
  decodeJwt,
  expectUnauthorized,
  login,
  postJson,
  type TokenPairJson,
} from '../helpers/http.ts';

const EDDSA = { JWT_ALGORITHM: 'EdDSA' };
const TTL_SECONDS = 600;
const MAX_AGE_SECONDS = 60;
/** Short lifetimes so a whole rotation fits the test's clock: published, signing, retired. */
const ROTATION_ENV = {
  ...EDDSA,
  ACCESS_TOKEN_TTL_SECONDS: String(TTL_SECONDS),
  JWKS_MAX_AGE_SECONDS: String(MAX_AGE_SECONDS),
};

interface Jwks {
  keys: { kid: string; alg: string; use: string; kty: string; d?: string }[];
}

async function listen(app: App): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/** A separate service's check of an access token: the published JWKS, the algorithm pinned. */
async function verifyAsAnotherService(baseUrl: string, token: string, at = new Date()): Promise<JWTPayload> {
  const jwks = createRemoteJWKSet(new URL(`${baseUrl}/.well-known/jwks.json`));
  const { payload } = await jwtVerify(token, jwks, {
    algorithms: ['EdDSA'],
    issuer: AUTH.jwtIssuer,
    audience: AUTH.jwtAudience,
    currentDate: at,
  });
  return payload;
}

async function publishedKids(app: App): Promise<string[]> {
  const response = await app.inject({ url: '/.well-known/jwks.json' });
  expect(response.statusCode).toBe(200);
  return response.json<Jwks>().keys.map((key) => key.kid);
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;

describe('tokens other services verify (EdDSA keys, /.well-known/jwks.json)', () => {
  test('a separate service verifies a real access token from a listening server with createRemoteJWKSet', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: EDDSA });
    const baseUrl = await listen(app);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);

    const payload = await verifyAsAnotherService(baseUrl, accessToken);

    expect(payload).toMatchObject({ sub: user.id, typ: 'access', aal: 'aal1', amr: ['pwd'] });
    expect(decodeJwt(accessToken).header).toMatchObject({ alg: 'EdDSA', typ: 'JWT' });
    const jwks = await fetch(`${baseUrl}/.well-known/jwks.json`);
    expect(jwks.headers.get('cache-control')).toBe('public, max-age=300');
    const { keys } = (await jwks.json()) as Jwks;
    expect(keys).toEqual([expect.objectContaining({ kid: kidOf(accessToken), alg: 'EdDSA', use: 'sig', kty: 'OKP' })]);
    // Nothing private is ever published.
    expect(keys.every((key) => key.d === undefined)).toBe(true);
  });

  test('refuses a token signed by a key of its own that claims a published kid (the API and the verifier)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: EDDSA });
    const baseUrl = await listen(app);
    const user = await createUser(db);
    const genuine = (await login(app, user.email)).accessToken;
    const { privateKey } = await generateKeyPair('EdDSA');
    const forged = await new SignJWT({ sub: user.id, sid: user.id, role: 'admin', typ: 'access' })
      .setProtectedHeader({ alg: 'EdDSA', kid: kidOf(genuine), typ: 'JWT' })
      .setIssuer(AUTH.jwtIssuer)
      .setAudience(AUTH.jwtAudience)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

    await expect(verifyAsAnotherService(baseUrl, forged)).rejects.toThrow(/signature verification failed/);
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(forged) }));
  });

  test.for([
    ['an unknown kid', { kid: 'not-a-published-key' }],
    ['no kid', {}],
  ] as const)('refuses an EdDSA token with %s', async ([, header], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: EDDSA });
    const user = await createUser(db);
    await login(app, user.email);
    const { privateKey } = await generateKeyPair('EdDSA');
    const token = await new SignJWT({ sub: user.id, sid: user.id, role: 'user', typ: 'access' })
      .setProtectedHeader({ alg: 'EdDSA', ...header })
      .setIssuer(AUTH.jwtIssuer)
      .setAudience(AUTH.jwtAudience)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(token) }));
  });

  test('an ES256 installation publishes P-256 keys and its tokens verify', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { JWT_ALGORITHM: 'ES256' } });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);

    expect(decodeJwt(accessToken).header.alg).toBe('ES256');
    const { keys } = (await app.inject({ url: '/.well-known/jwks.json' })).json<Jwks>();
    expect(keys).toEqual([expect.objectContaining({ alg: 'ES256', kty: 'EC', crv: 'P-256' })]);
    expect((await app.inject({ url: '/auth/me', headers: bearer(accessToken) })).statusCode).toBe(200);
  });

  test('keeps every token verifying across a full rotation on two instances: published first, signing later, retired after expiry', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    let now = new Date();
    const clock = () => now;
    const first = await testApp(db, onTestFinished, { env: ROTATION_ENV, clock });
    const second = await testApp(db, onTestFinished, { env: ROTATION_ENV, clock });
    const verifier = await listen(second);
    const user = await createUser(db);
    const before = (await login(first, user.email)).accessToken;
    const oldKid = kidOf(before);
    expect(await publishedKids(second)).toEqual([oldKid]);

    // npm run keys:rotate does this (test/keys/keys-cli.test.ts runs the command).
    const rotated = await first.signingKeys?.rotate();
    expect(rotated?.state).toBe('next');
    const newKid = rotated?.kid ?? '';
    expect(rotated?.signsFrom.getTime()).toBe(now.getTime() + MAX_AGE_SECONDS * 1000 + KEY_RELOAD_INTERVAL_MS);

    // The other instance learns of the key within its reload interval, before anyone signs with it.
    now = new Date(now.getTime() + KEY_RELOAD_INTERVAL_MS);
    expect(await publishedKids(second)).toEqual([oldKid, newKid]);
    expect(kidOf((await login(second, user.email)).accessToken)).toBe(oldKid);
    expect(kidOf((await login(first, user.email)).accessToken)).toBe(oldKid);

    // Once every verifier's cached JWKS has expired, both instances sign with the new key.
    now = rotated?.signsFrom ?? now;
    const after = (await login(second, user.email)).accessToken;
    expect(kidOf(after)).toBe(newKid);
    expect(kidOf((await login(first, user.email)).accessToken)).toBe(newKid);
    expect(await publishedKids(first)).toEqual([oldKid, newKid]);
    await expect(verifyAsAnotherService(verifier, before, now)).resolves.toMatchObject({ sub: user.id });
    await expect(verifyAsAnotherService(verifier, after, now)).resolves.toMatchObject({ sub: user.id });
    expect((await first.inject({ url: '/auth/me', headers: bearer(before) })).statusCode).toBe(200);

    // The last token the old key signed has expired: the old key leaves JWKS.
    now = new Date((rotated?.signsFrom.getTime() ?? 0) + TTL_SECONDS * 1000 + CLOCK_SKEW_MS + 1);
    expect(await publishedKids(first)).toEqual([newKid]);
    expect(await publishedKids(second)).toEqual([newKid]);
    const states = (await first.signingKeys?.list())?.map((key) => [key.kid, key.state]);
    expect(states).toEqual([
      [oldKid, 'retired'],
      [newKid, 'active'],
    ]);
  });

  test('switches an HS256 installation to EdDSA without logging anyone out, then stops accepting HS256 once those tokens expired', async ({
    db,
    onTestFinished,
  }) => {
    let now = new Date();
    const clock = () => now;
    const hs256 = await testApp(db, onTestFinished, { clock });
    const user = await createUser(db);
    const session = await login(hs256, user.email);
    expect(decodeJwt(session.accessToken).header.alg).toBe('HS256');

    const eddsa = await testApp(db, onTestFinished, { clock, env: EDDSA });
    await eddsa.signingKeys?.ensure();

    const me = await eddsa.inject({ url: '/auth/me', headers: bearer(session.accessToken) });
    expect(me.statusCode, me.body).toBe(200);
    const refreshed = await postJson(eddsa, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    const renewed = refreshed.json<TokenPairJson>();
    expect(decodeJwt(renewed.accessToken).header.alg).toBe('EdDSA');
    expect((await eddsa.inject({ url: '/auth/me', headers: bearer(renewed.accessToken) })).statusCode).toBe(200);

    // Every HS256 token signed before the switch has expired: an HS256 token is refused from now on,
    // even a freshly signed one (whoever still holds JWT_SECRET can no longer mint access).
    now = new Date(now.getTime() + AUTH.accessTokenTtlSeconds * 1000 + CLOCK_SKEW_MS + 1000);
    const late = await postJson(hs256, '/auth/refresh', { refreshToken: renewed.refreshToken });
    expect(late.statusCode, late.body).toBe(200);
    const lateHs256 = late.json<TokenPairJson>().accessToken;
    expect(decodeJwt(lateHs256).header.alg).toBe('HS256');
    expectUnauthorized(await eddsa.inject({ url: '/auth/me', headers: bearer(lateHs256) }));
  });

  test('keeps the session assurance (aal, amr) across refreshes', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: EDDSA });
    const user = await createUser(db);
    const session = await login(app, user.email);
    const renewed = (
      await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })
    ).json<TokenPairJson>();

    expect(decodeJwt(session.accessToken).payload).toMatchObject({ aal: 'aal1', amr: ['pwd'] });
    expect(decodeJwt(renewed.accessToken).payload).toMatchObject({ aal: 'aal1', amr: ['pwd'] });
  });

  test('keeps the private key encrypted in the database, sealed to its own row', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: EDDSA });
    await app.signingKeys?.ensure();
    const rows = await db.selectFrom('signing_keys').selectAll().execute();

    expect(rows).toHaveLength(1);
    const [row] = rows;
    expect(row?.private_jwe.split('.')).toHaveLength(5);
    expect(JSON.stringify(row?.public_jwk)).not.toContain('"d"');
    expect(decodeProtectedHeader(row?.private_jwe ?? '')).toMatchObject({ alg: 'dir', enc: 'A256GCM' });
  });

  test('two instances starting at once on an empty installation create one first key', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const apps = await Promise.all([1, 2, 3].map(() => testApp(db, onTestFinished, { env: EDDSA })));

    await Promise.all(apps.map(async (app) => app.signingKeys?.ensure()));

    expect(await db.selectFrom('signing_keys').select('kid').execute()).toHaveLength(1);
  });
});

describe('signing keys while the database is down', () => {
  test('tokens keep verifying with the keys last read, and the reload is retried a second later, not on every request', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const db = createDatabase({
      url,
      poolMax: 2,
      connectionTimeoutMs: 500,
      idleTimeoutMs: 1000,
      statementTimeoutMs: 0,
      applicationName: 'vitest-keys-outage',
    });
    let now = new Date();
    const app = await testApp(db, onTestFinished, { env: EDDSA, clock: () => now });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);

    await db.destroy();
    now = new Date(now.getTime() + KEY_RELOAD_INTERVAL_MS + 1);

    await expect(app.accessTokens.verify(accessToken)).resolves.toMatchObject({ sub: user.id });
    await expect(app.accessTokens.verify(accessToken)).resolves.toMatchObject({ sub: user.id });
  });
});

describe('tokens verified before (the verified-token cache)', () => {
  test('a token seen before still expires on time', async ({ db, onTestFinished }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { env: EDDSA, clock: () => now });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    expect((await app.inject({ url: '/auth/me', headers: bearer(accessToken) })).statusCode).toBe(200);

    now = new Date(now.getTime() + AUTH.accessTokenTtlSeconds * 1000);

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(accessToken) }), 'TOKEN_EXPIRED');
  });

  test('a token seen before is refused once its key is withdrawn from the database (an emergency removal)', async ({
    db,
    onTestFinished,
  }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { env: EDDSA, clock: () => now });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    expect((await app.inject({ url: '/auth/me', headers: bearer(accessToken) })).statusCode).toBe(200);

    await db
      .deleteFrom('signing_keys')
      .where('kid', '=', kidOf(accessToken) ?? '')
      .execute();
    now = new Date(now.getTime() + KEY_RELOAD_INTERVAL_MS);

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(accessToken) }));
  });

  test('an HS256 token seen before is refused once the HS256 tokens signed before the switch have expired', async ({
    db,
    onTestFinished,
  }) => {
    let now = new Date();
    const clock = () => now;
    const hs256 = await testApp(db, onTestFinished, { clock });
    const eddsa = await testApp(db, onTestFinished, { clock, env: EDDSA });
    await eddsa.signingKeys?.ensure();
    const user = await createUser(db);
    const { accessToken } = await login(hs256, user.email);
    expect((await eddsa.inject({ url: '/auth/me', headers: bearer(accessToken) })).statusCode).toBe(200);

    now = new Date(now.getTime() + CLOCK_SKEW_MS + AUTH.accessTokenTtlSeconds * 1000 - 1000);
    // Still within its own lifetime (signed a moment after the switch), but past the HS256 window.
    const late = (await login(hs256, user.email)).accessToken;
    expect((await eddsa.inject({ url: '/auth/me', headers: bearer(late) })).statusCode).toBe(200);
    now = new Date(now.getTime() + 2000);
    expectUnauthorized(await eddsa.inject({ url: '/auth/me', headers: bearer(late) }));
  });
});

describe('changing JWT_ALGORITHM between asymmetric algorithms', () => {
  test('EdDSA to ES256: the ES256 key is published at once and takes over after the rotation delay', async ({
    db,
    onTestFinished,
  }) => {
    let now = new Date();
    const clock = () => now;
    const eddsa = await testApp(db, onTestFinished, { clock, env: ROTATION_ENV });
    const user = await createUser(db);
    const before = (await login(eddsa, user.email)).accessToken;

    const es256 = await testApp(db, onTestFinished, { clock, env: { ...ROTATION_ENV, JWT_ALGORITHM: 'ES256' } });
    await es256.signingKeys?.ensure();
    await es256.signingKeys?.ensure();

    const keys = (await es256.inject({ url: '/.well-known/jwks.json' })).json<Jwks>().keys;
    expect(keys.map((key) => key.alg)).toEqual(['EdDSA', 'ES256']);
    expect(decodeJwt((await login(es256, user.email)).accessToken).header.alg).toBe('EdDSA');
    now = new Date(now.getTime() + MAX_AGE_SECONDS * 1000 + KEY_RELOAD_INTERVAL_MS);
    expect(decodeJwt((await login(es256, user.email)).accessToken).header.alg).toBe('ES256');
    expect((await es256.inject({ url: '/auth/me', headers: bearer(before) })).statusCode).toBe(200);
  });
});
