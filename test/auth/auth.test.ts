import { UserRepository } from '../../src/users/users.repository.ts';
import { testApp } from '../helpers/app.ts';
import { createRefreshToken } from '../helpers/factories.ts';
import { describe, expect, test } from '../helpers/database.ts';
import {
  accessTokenFor,
  AUTH,
  bearer,
  CountingHasher,
  createUser,
  decodeJwt,
  expectError,
  expectUnauthorized,
  expectUserShape,
  login,
  PASSWORD,
  postJson,
  type LoginJson,
  type UserJson,
} from '../helpers/http.ts';

describe('POST /auth/register', () => {
  test('creates a user and answers 201 with the user object and nothing secret', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/register', {
      email: 'ada@example.com',
      password: PASSWORD,
      name: 'Ada',
    });

    expect(response.statusCode, response.body).toBe(201);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const { user } = response.json<{ user: UserJson }>();
    expectUserShape(user);
    expect(user).toMatchObject({ email: 'ada@example.com', name: 'Ada', role: 'user', lastLoginAt: null });
    expect(response.body).not.toContain(PASSWORD);
    expect(response.body).not.toContain('argon2');

    const row = await new UserRepository(db).findById(user.id);
    expect(row?.email).toBe('ada@example.com');
    expect(row?.password_hash).toMatch(/^\$argon2id\$/);
    expect(row?.created_at.toISOString()).toBe(user.createdAt);
  });

  test('stores the email trimmed, NFKC-normalised and lower-cased, and the name trimmed', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    // Fullwidth "Ａｄａ" is NFKC-equivalent to "Ada".
    const response = await postJson(app, '/auth/register', {
      email: '  \uFF21\uFF44\uFF41@Example.COM \t',
      password: PASSWORD,
      name: '  Ada Lovelace  ',
    });

    expect(response.statusCode, response.body).toBe(201);
    const { user } = response.json<{ user: UserJson }>();
    expect(user.email).toBe('ada@example.com');
    expect(user.name).toBe('Ada Lovelace');
    expect((await new UserRepository(db).findById(user.id))?.email).toBe('ada@example.com');
  });

  test('takes the password exactly as typed: never trimmed, counted in code points', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    // 8 code points only with its spaces: trimming would make it too short.
    const padded = '  pass1  ';
    expect(
      (await postJson(app, '/auth/register', { email: 'pad@example.com', password: padded, name: 'Pad' })).statusCode,
    ).toBe(201);
    // 8 emoji are 16 UTF-16 units but 8 code points: long enough. 7 are not.
    const emoji = '\u{1F512}';
    const ok = await postJson(app, '/auth/register', {
      email: 'emoji@example.com',
      password: emoji.repeat(8),
      name: 'E',
    });
    expect(ok.statusCode, ok.body).toBe(201);
    const short = await postJson(app, '/auth/register', {
      email: 'short@example.com',
      password: emoji.repeat(7),
      name: 'E',
    });
    expectError(short, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });

    expectError(await postJson(app, '/auth/login', { email: 'pad@example.com', password: padded.trim() }), {
      statusCode: 401,
      type: 'AuthenticationError',
      code: 'INVALID_CREDENTIALS',
    });
    expectError(await postJson(app, '/auth/login', { email: 'pad@example.com', password: padded.toUpperCase() }), {
      statusCode: 401,
      type: 'AuthenticationError',
      code: 'INVALID_CREDENTIALS',
    });
    expect((await login(app, 'pad@example.com', padded)).user.email).toBe('pad@example.com');
  });

  test('accepts a password of 256 code points and refuses 257', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const long = await postJson(app, '/auth/register', {
      email: 'long@example.com',
      password: '\u00e9'.repeat(256),
      name: 'L',
    });
    expect(long.statusCode, long.body).toBe(201);
    const tooLong = await postJson(app, '/auth/register', {
      email: 'toolong@example.com',
      password: 'x'.repeat(257),
      name: 'L',
    });
    expectError(tooLong, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    expect(await new UserRepository(db).findByEmail('toolong@example.com')).toBeUndefined();
  });

  test('answers 409 UniqueConstraintError on field email for a taken email, compared case-insensitively after trim and NFKC', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    await createUser(db, { email: 'grace@example.com' });

    for (const email of ['grace@example.com', 'GRACE@Example.com', '  grace@example.com ', '\uFF27race@example.com']) {
      const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Grace' });
      expectError(response, {
        statusCode: 409,
        type: 'UniqueConstraintError',
        code: 'UNIQUE_VIOLATION',
        field: 'email',
      });
    }
    const page = await new UserRepository(db).list(10);
    expect(page.map((row) => row.email)).toEqual(['grace@example.com']);
  });

  test('answers 400 with a detail for each schema failure, each naming its path', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/register', { email: 42, password: 'short' });

    const error = expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    const paths = (error.details ?? []).map((detail) => detail.path);
    expect(paths).toEqual(expect.arrayContaining(['/body/email', '/body/password', '/body/name']));
    for (const detail of error.details ?? []) expect(detail.message).not.toBe('');
    expect(await new UserRepository(db).list(10)).toEqual([]);
  });

  test.for([
    ['an email that is not an address', { email: 'not-an-email', name: 'X' }, 'email'],
    ['an email of 255 characters', { email: `${'a'.repeat(243)}@example.com`, name: 'X' }, 'email'],
    ['a name that is only whitespace', { email: 'blank@example.com', name: '   ' }, 'name'],
    ['a name of 101 characters', { email: 'longname@example.com', name: 'n'.repeat(101) }, 'name'],
    ['an email that is not a string', { email: ['a@example.com'], name: 'X' }, 'email'],
  ] as const)('refuses %s with 400 naming the field', async ([, fields, field], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/register', { password: PASSWORD, ...fields });
    const error = expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    const named = error.field === field || (error.details ?? []).some((detail) => detail.path === `/body/${field}`);
    expect(named, JSON.stringify(error)).toBe(true);
    expect(await new UserRepository(db).list(10)).toEqual([]);
  });

  test('accepts an email of exactly 254 characters and a name of 100 characters after trimming', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const email = `${'a'.repeat(242)}@example.com`;
    expect(email).toHaveLength(254);
    const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: ` ${'n'.repeat(100)} ` });
    expect(response.statusCode, response.body).toBe(201);
    expect(response.json<{ user: UserJson }>().user.name).toBe('n'.repeat(100));
  });

  test('never stores unknown body properties: a role in the body does not make an admin', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/register', {
      email: 'mallory@example.com',
      password: PASSWORD,
      name: 'Mallory',
      role: 'admin',
      password_hash: '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g',
    });

    const row = await new UserRepository(db).findByEmail('mallory@example.com');
    if (response.statusCode === 201) {
      expect(response.json<{ user: UserJson }>().user.role).toBe('user');
      expect(row?.role).toBe('user');
      expect(row?.password_hash).not.toContain('c2FsdHNhbHQ');
    } else {
      expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
      expect(row).toBeUndefined();
    }
  });
});

describe('POST /auth/login', () => {
  test('answers 200 with the user, a bearer access token, a refresh token and expiresIn, not cacheable', async ({
    db,
    onTestFinished,
  }) => {
    const now = new Date('2031-05-06T07:08:09.123Z');
    const app = await testApp(db, onTestFinished, { clock: () => now });
    const created = await createUser(db, { email: 'ada@example.com', name: 'Ada' });

    const response = await postJson(app, '/auth/login', { email: 'ada@example.com', password: PASSWORD });

    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['cache-control']).toContain('no-store');
    const body = response.json<LoginJson>();
    expect(Object.keys(body).sort()).toEqual([
      'accessToken',
      'deviceToken',
      'expiresIn',
      'refreshToken',
      'tokenType',
      'user',
    ]);
    expectUserShape(body.user);
    expect(body.user).toMatchObject({ id: created.id, email: 'ada@example.com', name: 'Ada', role: 'user' });
    expect(body.user.lastLoginAt).toBe(now.toISOString());
    expect(body.tokenType).toBe('Bearer');
    expect(body.expiresIn).toBe(900);
    expect(body.accessToken.split('.')).toHaveLength(3);
    // ≥ 128 bits of randomness, in a URL-safe alphabet.
    expect(body.refreshToken).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    // Opaque, URL-safe, bound to this account (test/auth/owner-not-locked-out.test.ts).
    expect(body.deviceToken).toMatch(/^[A-Za-z0-9_.-]{60,256}$/);
    expect(response.body).not.toContain(PASSWORD);

    expect((await new UserRepository(db).findById(created.id))?.last_login_at).toEqual(now);
  });

  test('issues an HS256 access token with exp, iat, sub, iss, aud and an access type claim, lasting 15 minutes', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const before = Math.floor(Date.now() / 1000);
    const { accessToken } = await login(app, created.email);

    const { header, payload } = decodeJwt(accessToken);
    expect(header.alg).toBe('HS256');
    expect(payload).toMatchObject({ sub: created.id, iss: AUTH.jwtIssuer, aud: AUTH.jwtAudience, typ: 'access' });
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(Number(payload.exp) - Number(payload.iat)).toBe(900);
    expect(JSON.stringify(payload)).not.toContain(PASSWORD);
  });

  test('stores the refresh token only as a hash', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const { refreshToken } = await login(app, created.email);

    const rows = await db.selectFrom('refresh_tokens').selectAll().where('user_id', '=', created.id).execute();
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(refreshToken);
    expect(rows[0]?.token_hash).toMatch(/^[0-9a-f]{64}$/);
    // Absolute expiry: 30 days by default.
    const lifetime = (rows[0]?.expires_at.getTime() ?? 0) - Date.now();
    expect(lifetime).toBeGreaterThan(29.9 * 86_400_000);
    expect(lifetime).toBeLessThanOrEqual(30 * 86_400_000);
  });

  test('finds the account whatever the case and surrounding spaces of the email', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db, { email: 'grace@example.com' });
    expect((await login(app, '  GRACE@Example.Com ')).user.id).toBe(created.id);
  });

  test('answers unknown email, wrong password and an account without a password with byte-identical 401 bodies, after exactly one argon2 run each', async ({
    db,
    onTestFinished,
  }) => {
    const hasher = new CountingHasher();
    const app = await testApp(db, onTestFinished, { hasher });
    await createUser(db, { email: 'ada@example.com' });
    // Signs in only through a provider or a passkey: its login must cost what a wrong password
    // costs, or timing tells which accounts have no password.
    const passwordless = await createUser(db, { email: 'sso@example.com' });
    await db.updateTable('users').set({ password_hash: '' }).where('id', '=', passwordless.id).execute();
    const headers = { 'x-request-id': 'same-request-id' };

    const attempts = [
      { email: 'ada@example.com', password: 'wrong password' },
      { email: 'nobody@example.com', password: 'wrong password' },
      { email: 'not-an-address', password: 'wrong password' },
      { email: 'sso@example.com', password: 'wrong password' },
    ];
    const responses = [];
    for (const attempt of attempts) {
      hasher.reset();
      const response = await postJson(app, '/auth/login', attempt, headers);
      expect(hasher.verifications, `verifications for ${attempt.email}`).toBe(1);
      responses.push(response);
    }

    const [wrongPassword, ...others] = responses;
    if (wrongPassword === undefined) throw new Error('no response');
    const error = expectError(wrongPassword, {
      statusCode: 401,
      type: 'AuthenticationError',
      code: 'INVALID_CREDENTIALS',
    });
    expect(error.requestId).toBe('same-request-id');
    expect(error.field).toBeUndefined();
    for (const other of others) {
      expect(other.statusCode).toBe(401);
      expect(other.body).toBe(wrongPassword.body);
      expect(other.headers['content-type']).toBe(wrongPassword.headers['content-type']);
      expect(other.headers['content-length']).toBe(wrongPassword.headers['content-length']);
    }
  });

  test('does not update last_login_at or issue a refresh token on a failed login', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    expectUnauthorized(
      await postJson(app, '/auth/login', { email: created.email, password: 'wrong password' }),
      'INVALID_CREDENTIALS',
    );
    expect((await new UserRepository(db).findById(created.id))?.last_login_at).toBeNull();
    expect(await db.selectFrom('refresh_tokens').selectAll().execute()).toEqual([]);
  });

  test('answers 400 with details when email or password is missing', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const error = expectError(await postJson(app, '/auth/login', {}), {
      statusCode: 400,
      type: 'ValidationError',
      code: 'VALIDATION_FAILED',
    });
    expect((error.details ?? []).map((detail) => detail.path)).toEqual(
      expect.arrayContaining(['/body/email', '/body/password']),
    );
  });
});

describe('POST /auth/logout', () => {
  test('answers 204 and the refresh token then stops working', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const { refreshToken } = await login(app, created.email);

    const response = await postJson(app, '/auth/logout', { refreshToken });
    expect(response.statusCode, response.body).toBe(204);
    expect(response.body).toBe('');

    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken }), ['INVALID_TOKEN', 'TOKEN_EXPIRED']);
    expectUnauthorized(await postJson(app, '/auth/logout', { refreshToken }));
  });

  test("revokes the token's whole family and leaves the user's other sessions alone", async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const first = await login(app, created.email);
    const other = await login(app, created.email);
    const rotated = await postJson(app, '/auth/refresh', { refreshToken: first.refreshToken });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const latest = rotated.json<LoginJson>().refreshToken;

    expect((await postJson(app, '/auth/logout', { refreshToken: latest })).statusCode).toBe(204);

    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: latest }));
    const live = await db
      .selectFrom('refresh_tokens')
      .select('token_hash')
      .where('user_id', '=', created.id)
      .where('revoked_at', 'is', null)
      .execute();
    expect(live).toHaveLength(1);
    expect((await postJson(app, '/auth/refresh', { refreshToken: other.refreshToken })).statusCode).toBe(200);
  });

  test('answers 401 for a refresh token it never issued, and 400 without one', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    expectUnauthorized(await postJson(app, '/auth/logout', { refreshToken: 'never-issued-token-aaaaaaaaaaaaaaaaaaa' }));
    expectError(await postJson(app, '/auth/logout', {}), {
      statusCode: 400,
      type: 'ValidationError',
      code: 'VALIDATION_FAILED',
    });
  });
});

describe('GET /auth/me', () => {
  test('answers 200 with the user the access token belongs to', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db, { email: 'ada@example.com', name: 'Ada' });
    const { accessToken } = await login(app, created.email);

    const response = await app.inject({ url: '/auth/me', headers: bearer(accessToken) });

    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<{ user: UserJson }>();
    expect(Object.keys(body)).toEqual(['user']);
    expectUserShape(body.user);
    expect(body.user).toMatchObject({ id: created.id, email: 'ada@example.com', name: 'Ada', role: 'user' });
    expect(body.user.lastLoginAt).not.toBeNull();
  });

  test.for([
    ['no authorization header', {}],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['another scheme', { authorization: 'Basic YWRhOnNlY3JldA==' }],
    ['a bearer that is not a JWT', { authorization: 'Bearer not-a-jwt' }],
  ] as const)('answers 401 with %s', async ([, headers], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    expectUnauthorized(await app.inject({ url: '/auth/me', headers }));
  });
});

describe('POST /auth/password', () => {
  test('answers 204, ends every other session of the user (not the one that asked), and only the new password logs in', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const session = await login(app, created.email);
    const otherSession = await login(app, created.email);
    const bystander = await createUser(db);
    await createRefreshToken(db, { userId: bystander.id });

    const response = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
      bearer(session.accessToken),
    );

    expect(response.statusCode, response.body).toBe(204);
    expect(response.body).toBe('');
    const tokens = await db.selectFrom('refresh_tokens').select(['user_id', 'family_id', 'revoked_at']).execute();
    const sid = (token: string) => decodeJwt(token).payload.sid;
    const ofOther = tokens.filter((row) => row.family_id === sid(otherSession.accessToken));
    expect(ofOther.length).toBeGreaterThan(0);
    expect(ofOther.every((row) => row.revoked_at !== null)).toBe(true);
    expect(tokens.filter((row) => row.family_id === sid(session.accessToken)).map((row) => row.revoked_at)).toEqual([
      null,
    ]);
    expect(tokens.filter((row) => row.user_id === bystander.id).every((row) => row.revoked_at === null)).toBe(true);
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: otherSession.refreshToken }));
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(otherSession.accessToken) }));
    expect((await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) })).statusCode).toBe(200);
    expect((await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })).statusCode).toBe(200);

    expectUnauthorized(
      await postJson(app, '/auth/login', { email: created.email, password: PASSWORD }),
      'INVALID_CREDENTIALS',
    );
    expect((await login(app, created.email, 'a brand new passphrase')).user.id).toBe(created.id);
  });

  test('answers 401 to a wrong current password and changes nothing', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const session = await login(app, created.email);

    const response = await postJson(
      app,
      '/auth/password',
      { currentPassword: 'not my password', newPassword: 'a brand new passphrase' },
      bearer(session.accessToken),
    );

    expectUnauthorized(response, 'INVALID_CREDENTIALS');
    const row = await new UserRepository(db).findById(created.id);
    expect(row?.password_hash).toBe(created.password_hash);
    expect((await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })).statusCode).toBe(200);
  });

  test('answers 400 to a new password shorter than 8 characters', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const created = await createUser(db);
    const token = accessTokenFor(created);

    const response = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'short' },
      bearer(token),
    );

    const error = expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    const named =
      error.field === 'newPassword' || (error.details ?? []).some((detail) => detail.path === '/body/newPassword');
    expect(named, JSON.stringify(error)).toBe(true);
    expect((await new UserRepository(db).findById(created.id))?.password_hash).toBe(created.password_hash);
  });

  test('answers 401 without an access token', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    expectUnauthorized(
      await postJson(app, '/auth/password', { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' }),
    );
  });
});
