import { UserRepository } from '../../src/users/users.repository.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import {
  accessClaims,
  accessTokenFor,
  AUTH,
  bearer,
  craftJwt,
  createUser,
  decodeJwt,
  expectUnauthorized,
  login,
  postJson,
  type CraftOptions,
  type TokenPairJson,
  type UserJson,
} from '../helpers/http.ts';

describe('POST /auth/refresh', () => {
  test('answers 200 with a new token pair, not cacheable, and the new access token works', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const session = await login(app, created.email);

    const response = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });

    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['cache-control']).toContain('no-store');
    const pair = response.json<TokenPairJson>();
    expect(Object.keys(pair).sort()).toEqual(['accessToken', 'expiresIn', 'refreshToken', 'tokenType']);
    expect(pair).toMatchObject({ tokenType: 'Bearer', expiresIn: 900 });
    expect(pair.refreshToken).not.toBe(session.refreshToken);
    expect(pair.refreshToken).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    const me = await app.inject({ url: '/auth/me', headers: bearer(pair.accessToken) });
    expect(me.statusCode).toBe(200);
    expect(me.json<{ user: UserJson }>().user.id).toBe(created.id);
  });

  test('rotates: the presented refresh token stops working and the new one keeps the absolute expiry', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const session = await login(app, created.email);
    const first = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    const second = await postJson(app, '/auth/refresh', { refreshToken: first.json<TokenPairJson>().refreshToken });

    expect(second.statusCode, second.body).toBe(200);
    const rows = await db.selectFrom('refresh_tokens').selectAll().where('user_id', '=', created.id).execute();
    expect(rows).toHaveLength(3);
    expect(new Set(rows.map((row) => row.family_id)).size).toBe(1);
    expect(new Set(rows.map((row) => row.expires_at.getTime())).size).toBe(1);
    expect(rows.filter((row) => row.rotated_at === null)).toHaveLength(1);
  });

  test('with the reuse interval off, rejects a refresh token that was already rotated and revokes its family', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { REFRESH_REUSE_INTERVAL_SECONDS: '0' } });
    const created = await createUser(db);
    const session = await login(app, created.email);
    const rotated = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    const newest = rotated.json<TokenPairJson>().refreshToken;

    // The thief (or the victim) replays the old token...
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken }));
    // ...and the newest token of that family is dead too.
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: newest }));

    const live = await db
      .selectFrom('refresh_tokens')
      .select('id')
      .where('user_id', '=', created.id)
      .where('revoked_at', 'is', null)
      .execute();
    expect(live).toEqual([]);
  });

  test('leaves other families alone when one is revoked for reuse', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { REFRESH_REUSE_INTERVAL_SECONDS: '0' } });
    const created = await createUser(db);
    const stolen = await login(app, created.email);
    const otherDevice = await login(app, created.email);
    await postJson(app, '/auth/refresh', { refreshToken: stolen.refreshToken });
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: stolen.refreshToken }));

    expect((await postJson(app, '/auth/refresh', { refreshToken: otherDevice.refreshToken })).statusCode).toBe(200);
  });

  test('within the reuse interval, a rotated token presented again gets the same successor and a fresh access token', async ({
    db,
    onTestFinished,
  }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { clock: () => now });
    const created = await createUser(db);
    const session = await login(app, created.email);
    const first = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(first.statusCode, first.body).toBe(200);
    const successor = first.json<TokenPairJson>();

    now = new Date(now.getTime() + 9_000);
    const retried = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(retried.statusCode, retried.body).toBe(200);
    const again = retried.json<TokenPairJson>();
    expect(again.refreshToken).toBe(successor.refreshToken);
    expect((await app.inject({ url: '/auth/me', headers: bearer(again.accessToken) })).statusCode).toBe(200);

    // One successor, live; nothing stored that could give the token back (only hashes).
    const rows = await db.selectFrom('refresh_tokens').selectAll().where('user_id', '=', created.id).execute();
    expect(rows.filter((row) => row.rotated_at === null && row.revoked_at === null)).toHaveLength(1);
    for (const row of rows) {
      expect(JSON.stringify(row)).not.toContain(successor.refreshToken);
      expect(JSON.stringify(row)).not.toContain(session.refreshToken);
    }
    // The successor keeps working as usual.
    expect((await postJson(app, '/auth/refresh', { refreshToken: successor.refreshToken })).statusCode).toBe(200);
  });

  test('after the reuse interval, a rotated token presented again ends its session', async ({ db, onTestFinished }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { clock: () => now });
    const created = await createUser(db);
    const session = await login(app, created.email);
    const successor = (
      await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })
    ).json<TokenPairJson>();

    now = new Date(now.getTime() + AUTH.refreshReuseIntervalSeconds * 1000 + 1);
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken }));
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: successor.refreshToken }));
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(successor.accessToken) }));
    const sid = String(decodeJwt(session.accessToken).payload.sid);
    const ended = await db.selectFrom('sessions').select(['ended_at', 'end_reason']).where('id', '=', sid).execute();
    expect(ended).toEqual([{ ended_at: expect.any(Date), end_reason: 'refresh_reused' }]);
    const events = await db.selectFrom('audit_events').select('type').where('session_id', '=', sid).execute();
    expect(events.map((event) => event.type)).toEqual(expect.arrayContaining(['refresh.reused', 'session.ended']));
  });

  test('within the reuse interval, a token whose successor was already rotated too is reuse', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const session = await login(app, created.email);
    const successor = (
      await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })
    ).json<TokenPairJson>();
    expect((await postJson(app, '/auth/refresh', { refreshToken: successor.refreshToken })).statusCode).toBe(200);
    // The successor moved on: handing it back would give out a dead token; the old one is a replay.
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken }));
  });

  test('rejects a refresh token past its absolute expiry with 401', async ({ db, onTestFinished }) => {
    let now = new Date();
    const app = await testApp(db, onTestFinished, { clock: () => now });
    const created = await createUser(db);
    const session = await login(app, created.email);

    now = new Date(now.getTime() + (AUTH.refreshTokenTtlSeconds + 1) * 1000);

    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken }), [
      'TOKEN_EXPIRED',
      'INVALID_TOKEN',
    ]);
  });

  test('rejects a refresh token it never issued with 401, and a missing one with 400', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: 'A'.repeat(43) }));
    const missing = await postJson(app, '/auth/refresh', {});
    expect(missing.statusCode).toBe(400);
    expect(missing.json<{ error: { type: string } }>().error.type).toBe('ValidationError');
  });

  test('rejects an access token presented as a refresh token', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: accessTokenFor(created) }));
  });
});

describe('access tokens', () => {
  test('a token signed like the app signs them is accepted (the control for every attack below)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const response = await app.inject({ url: '/auth/me', headers: bearer(accessTokenFor(created)) });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<{ user: UserJson }>().user.id).toBe(created.id);
  });

  const withoutClaim = (claim: string) => (claims: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(claims).filter(([name]) => name !== claim));
  const withClaims = (extra: Record<string, unknown>) => (claims: Record<string, unknown>) => ({ ...claims, ...extra });
  const now = () => Math.floor(Date.now() / 1000);

  type Attack = readonly [
    name: string,
    claims: (claims: Record<string, unknown>) => Record<string, unknown>,
    options: CraftOptions,
    code: 'INVALID_TOKEN' | 'TOKEN_EXPIRED',
  ];
  const attacks: Attack[] = [
    ['alg none with no signature', (c) => c, { alg: 'none', hmac: null }, 'INVALID_TOKEN'],
    ['alg "None" with no signature', (c) => c, { alg: 'None', hmac: null }, 'INVALID_TOKEN'],
    ['HS512 signed with the same secret', (c) => c, { alg: 'HS512' }, 'INVALID_TOKEN'],
    ['HS384 signed with the same secret', (c) => c, { alg: 'HS384' }, 'INVALID_TOKEN'],
    ['an RS256 header over an HMAC signature', (c) => c, { alg: 'RS256', hmac: 'sha256' }, 'INVALID_TOKEN'],
    [
      'a signature made with another secret',
      (c) => c,
      { secret: 'another-secret-that-is-also-32-bytes-long!!' },
      'INVALID_TOKEN',
    ],
    ['an expired exp', withClaims({ iat: now() - 3600, exp: now() - 60 }), {}, 'TOKEN_EXPIRED'],
    ['no exp', withoutClaim('exp'), {}, 'INVALID_TOKEN'],
    ['no iat', withoutClaim('iat'), {}, 'INVALID_TOKEN'],
    ['no sub', withoutClaim('sub'), {}, 'INVALID_TOKEN'],
    ['the wrong iss', withClaims({ iss: 'someone-else' }), {}, 'INVALID_TOKEN'],
    ['no iss', withoutClaim('iss'), {}, 'INVALID_TOKEN'],
    ['the wrong aud', withClaims({ aud: 'another-api' }), {}, 'INVALID_TOKEN'],
    ['no aud', withoutClaim('aud'), {}, 'INVALID_TOKEN'],
    ['no typ claim', withoutClaim('typ'), {}, 'INVALID_TOKEN'],
    ['a refresh type claim', withClaims({ typ: 'refresh' }), {}, 'INVALID_TOKEN'],
    ['a not-before in the future', withClaims({ nbf: now() + 3600 }), {}, 'INVALID_TOKEN'],
    ['a subject that is not a user id', withClaims({ sub: 'not-a-uuid' }), {}, 'INVALID_TOKEN'],
  ];

  test.for(attacks)(
    'rejects a token with %s as 401 in the one error shape',
    async ([, claims, options, code], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const created = await createUser(db);
      const token = craftJwt(claims(accessClaims(created)), options);

      const response = await app.inject({ url: '/auth/me', headers: bearer(token) });

      expectUnauthorized(response, code);
    },
  );

  test('rejects a token whose payload was tampered with (role raised to admin) after signing', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const [header, , signature] = accessTokenFor(created).split('.');
    const forged = Buffer.from(JSON.stringify({ ...accessClaims(created), role: 'admin' })).toString('base64url');

    expectUnauthorized(
      await app.inject({ url: '/users', headers: bearer(`${header ?? ''}.${forged}.${signature ?? ''}`) }),
    );
  });

  test('rejects a token whose signature was tampered with', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const token = accessTokenFor(created);
    const last = token.at(-2) === 'A' ? 'B' : 'A';
    const tampered = `${token.slice(0, -2)}${last}${token.slice(-1)}`;

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(tampered) }));
  });

  test('rejects a refresh token used as an access token', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const { refreshToken } = await login(app, created.email);

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(refreshToken) }));
  });

  test('rejects a valid token of a user who was deleted since', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const token = accessTokenFor(created);
    expect(await new UserRepository(db).delete(created.id)).toBe(true);

    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(token) }));
  });

  test('takes the role from the database, not the token: a token claiming admin gets 403 on admin routes', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const token = craftJwt({ ...accessClaims(created), role: 'admin' });

    const response = await app.inject({ url: '/users', headers: bearer(token) });
    expect(response.statusCode).toBe(403);
  });
});
