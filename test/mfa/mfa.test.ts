import type { Kysely } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import { LogCapture, testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import {
  bearer,
  createUser,
  decodeJwt,
  expectError,
  expectUnauthorized,
  login,
  PASSWORD,
  postJson,
  type LoginJson,
  type TokenPairJson,
} from '../helpers/http.ts';

interface Challenge {
  mfaRequired: true;
  mfaToken: string;
  methods: string[];
  expiresIn: number;
}
interface Enrolled {
  factor: { id: string; verified: boolean; name: string };
  secret: string;
  otpauthUri: string;
}
interface Verified extends TokenPairJson {
  factor: { id: string; verified: boolean };
  recoveryCodes?: string[];
}

/** A test's clock, shared by the app and the authenticator app the test plays. */
class Clock {
  now = new Date();
  readonly read = () => this.now;
  advance(ms: number): void {
    this.now = new Date(this.now.getTime() + ms);
  }
}

const codeAt = (secret: string, at: Date) =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at.getTime(), period: 30, digits: 6 });

async function authed(
  app: App,
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH',
  url: string,
  token: string,
  payload?: unknown,
) {
  return app.inject({
    method,
    url,
    headers: { ...bearer(token), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });
}

/** A user with a verified TOTP factor: the session that enrolled (now aal2), the secret and the recovery codes. */
async function enrolled(app: App, db: Kysely<DB>, clock: Clock, fields: Parameters<typeof createUser>[1] = {}) {
  const user = await createUser(db, fields);
  const first = await login(app, user.email);
  const start = await authed(app, 'POST', '/auth/mfa/totp', first.accessToken, { name: 'phone' });
  expect(start.statusCode, start.body).toBe(201);
  const { factor, secret } = start.json<Enrolled>();
  const verify = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, first.accessToken, {
    code: codeAt(secret, clock.now),
  });
  expect(verify.statusCode, verify.body).toBe(200);
  const verified = verify.json<Verified>();
  // The next code the test sends must belong to a later time step than the one just used.
  clock.advance(30_000);
  return { user, secret, factorId: factor.id, session: verified, recoveryCodes: verified.recoveryCodes ?? [] };
}

async function challengeFor(app: App, email: string): Promise<Challenge> {
  const response = await postJson(app, '/auth/login', { email, password: PASSWORD });
  expect(response.statusCode, response.body).toBe(200);
  const body = response.json<Challenge>();
  expect(body).toMatchObject({ mfaRequired: true, methods: ['totp', 'recovery_code'], expiresIn: 300 });
  return body;
}

describe('TOTP enrolment', () => {
  test('enrols, verifies with a first code, returns ten recovery codes once and raises the session to aal2', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);

    const start = await authed(app, 'POST', '/auth/mfa/totp', accessToken, { name: 'phone' });
    expect(start.statusCode, start.body).toBe(201);
    expect(start.headers['cache-control']).toBe('no-store');
    const { factor, secret, otpauthUri } = start.json<Enrolled>();
    expect(factor).toMatchObject({ name: 'phone', verified: false });
    expect(otpauthUri).toMatch(/^otpauth:\/\/totp\/.*secret=[A-Z2-7]+.*algorithm=SHA1&digits=6&period=30/);

    const verify = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, accessToken, {
      code: codeAt(secret, clock.now),
    });
    expect(verify.statusCode, verify.body).toBe(200);
    const body = verify.json<Verified>();
    expect(body.factor.verified).toBe(true);
    expect(body.recoveryCodes).toHaveLength(10);
    expect(new Set(body.recoveryCodes).size).toBe(10);
    expect(decodeJwt(body.accessToken).payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'otp'] });
    // The old refresh token of the session is replaced, not a theft: a plain 401, the session lives on.
    expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: body.refreshToken + 'x' }));
    const refreshed = await postJson(app, '/auth/refresh', { refreshToken: body.refreshToken });
    expect(decodeJwt(refreshed.json<TokenPairJson>().accessToken).payload).toMatchObject({ aal: 'aal2' });

    const status = await authed(app, 'GET', '/auth/mfa', body.accessToken);
    expect(status.json()).toMatchObject({ factors: [{ id: factor.id, verified: true }], recoveryCodesRemaining: 10 });
    // The owner is told, once, with no code, secret or link in the notice.
    const notices = await db.selectFrom('email_outbox').where('user_id', '=', user.id).selectAll().execute();
    expect(notices.map((notice) => notice.template)).toEqual(['notice_mfa_enrolled']);
    expect(JSON.stringify(notices)).not.toContain(secret);
  });

  test('a wrong first code leaves the factor unverified; an enrolment not verified in time expires', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const { factor, secret } = (await authed(app, 'POST', '/auth/mfa/totp', accessToken, {})).json<Enrolled>();

    const wrong = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, accessToken, { code: '000000' });
    expectError(wrong, { statusCode: 401, code: 'INVALID_MFA_CODE' });
    expect((await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json()).toHaveProperty(
      'accessToken',
    );

    clock.advance(11 * 60_000);
    const late = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, accessToken, {
      code: codeAt(secret, clock.now),
    });
    expectError(late, { statusCode: 404, code: 'NOT_FOUND' });
  });
});

describe('signing in with a second factor', () => {
  test('a correct password opens no session, only a challenge; a TOTP code completes it at aal2', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, secret } = await enrolled(app, db, clock);
    const sessionsBefore = await db.selectFrom('sessions').where('user_id', '=', user.id).select('id').execute();

    const challenge = await challengeFor(app, user.email);
    expect(challenge).not.toHaveProperty('accessToken');
    expect(await db.selectFrom('sessions').where('user_id', '=', user.id).select('id').execute()).toHaveLength(
      sessionsBefore.length,
    );

    const done = await postJson(app, '/auth/login/mfa', {
      mfaToken: challenge.mfaToken,
      code: codeAt(secret, clock.now),
    });
    expect(done.statusCode, done.body).toBe(200);
    const body = done.json<LoginJson>();
    expect(body.user.id).toBe(user.id);
    expect(decodeJwt(body.accessToken).payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'otp'] });
    expect((await authed(app, 'GET', '/auth/me', body.accessToken)).statusCode).toBe(200);
    // A completed sign-in hands out this device's token (api.md "Abuse resistance"); a challenge does not.
    expect(challenge).not.toHaveProperty('deviceToken');
    expect(body.deviceToken).toMatch(/^[A-Za-z0-9_.-]{60,256}$/);
    const again = await postJson(app, '/auth/login', {
      email: user.email,
      password: PASSWORD,
      deviceToken: body.deviceToken,
    });
    expect(again.json()).toMatchObject({ mfaRequired: true });
  });

  test('a recovery code completes it once; the same code a second time is refused', async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, recoveryCodes } = await enrolled(app, db, clock);
    const [code = ''] = recoveryCodes;

    const first = await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      recoveryCode: code.toLowerCase(),
    });
    expect(first.statusCode, first.body).toBe(200);
    expect(decodeJwt(first.json<LoginJson>().accessToken).payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'rc'] });

    const again = await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      recoveryCode: code,
    });
    expectError(again, { statusCode: 401, code: 'INVALID_MFA_CODE' });
    const status = await authed(app, 'GET', '/auth/mfa', first.json<LoginJson>().accessToken);
    expect(status.json()).toMatchObject({ recoveryCodesRemaining: 9 });
    const events = await db.selectFrom('audit_events').where('user_id', '=', user.id).select('type').execute();
    expect(events.map((event) => event.type)).toContain('mfa.recovery_code_used');
  });

  test.for([
    ['the code of this step, already used', 0, true, 401],
    ['the code of one step ago (clock drift)', -30_000, false, 200],
    ['the code of two steps ago', -60_000, false, 401],
    ['the code of two steps ahead', 60_000, false, 401],
  ] as const)('%s', async ([, offsetMs, useFirst, status], { db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, secret } = await enrolled(app, db, clock);
    // Well past the step the enrolment used, so "one step ago" is a step no code was used in.
    clock.advance(120_000);
    const code = codeAt(secret, new Date(clock.now.getTime() + offsetMs));
    if (useFirst) {
      const used = await postJson(app, '/auth/login/mfa', {
        mfaToken: (await challengeFor(app, user.email)).mfaToken,
        code,
      });
      expect(used.statusCode).toBe(200);
    }

    const response = await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      code,
    });

    if (status === 200) expect(response.statusCode, response.body).toBe(200);
    else expectError(response, { statusCode: 401, code: 'INVALID_MFA_CODE' });
  });

  test('an expired challenge, a used one and one of another account are refused', async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const alice = await enrolled(app, db, clock);
    const bob = await enrolled(app, db, clock);

    const expired = await challengeFor(app, alice.user.email);
    clock.advance(301_000);
    expectError(
      await postJson(app, '/auth/login/mfa', { mfaToken: expired.mfaToken, code: codeAt(alice.secret, clock.now) }),
      { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' },
    );

    const once = await challengeFor(app, alice.user.email);
    const ok = await postJson(app, '/auth/login/mfa', {
      mfaToken: once.mfaToken,
      code: codeAt(alice.secret, clock.now),
    });
    expect(ok.statusCode, ok.body).toBe(200);
    clock.advance(30_000);
    expectError(
      await postJson(app, '/auth/login/mfa', { mfaToken: once.mfaToken, code: codeAt(alice.secret, clock.now) }),
      { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' },
    );

    // Bob's code does not open Alice's challenge.
    const alices = await challengeFor(app, alice.user.email);
    expectError(
      await postJson(app, '/auth/login/mfa', { mfaToken: alices.mfaToken, code: codeAt(bob.secret, clock.now) }),
      { statusCode: 401, code: 'INVALID_MFA_CODE' },
    );
  });

  test('a challenge dies when the account is disabled, or the password changes, before it is completed', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, secret } = await enrolled(app, db, clock);
    const challenge = await challengeFor(app, user.email);
    await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', user.id).execute();

    expectError(
      await postJson(app, '/auth/login/mfa', { mfaToken: challenge.mfaToken, code: codeAt(secret, clock.now) }),
      { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' },
    );

    await db.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
    const second = await challengeFor(app, user.email);
    await db.updateTable('users').set({ password_hash: 'changed elsewhere' }).where('id', '=', user.id).execute();
    expectError(
      await postJson(app, '/auth/login/mfa', { mfaToken: second.mfaToken, code: codeAt(secret, clock.now) }),
      { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' },
    );
  });

  test('wrong codes are throttled per account: after five, 429 with retry-after', async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user } = await enrolled(app, db, clock);
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 7; attempt++) {
      const { mfaToken } = await challengeFor(app, user.email);
      const response = await postJson(app, '/auth/login/mfa', { mfaToken, code: '000000' });
      statuses.push(response.statusCode);
      if (response.statusCode === 429) expect(response.headers['retry-after']).toBeDefined();
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    const failures = await db
      .selectFrom('audit_events')
      .where('user_id', '=', user.id)
      .where('type', '=', 'mfa.challenge_failed')
      .select('id')
      .execute();
    expect(failures).toHaveLength(5);
  });

  test('two completions of one challenge at once: one session, the other refused', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, recoveryCodes } = await enrolled(app, db, clock);
    const { mfaToken } = await challengeFor(app, user.email);

    const responses = await Promise.all([
      postJson(app, '/auth/login/mfa', { mfaToken, recoveryCode: recoveryCodes[0] }),
      postJson(app, '/auth/login/mfa', { mfaToken, recoveryCode: recoveryCodes[1] }),
    ]);

    expect(responses.map((response) => response.statusCode).sort()).toEqual([200, 400]);
    const unused = await db
      .selectFrom('mfa_recovery_codes')
      .where('user_id', '=', user.id)
      .where('used_at', 'is', null)
      .select('id')
      .execute();
    expect(unused).toHaveLength(9);
  });

  test.for([
    ['both a code and a recovery code', { code: '123456', recoveryCode: 'ABCDE-FGHIJ' }],
    ['neither', {}],
    ['a code that is not six digits', { code: '12345a' }],
    ['a code that is a number', { code: 123456 }],
    ['a huge recovery code', { recoveryCode: 'A'.repeat(5000) }],
  ] as const)('refuses a hostile body (%s) with 400 in the error shape', async ([, fields], { db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user } = await enrolled(app, db, clock);
    const { mfaToken } = await challengeFor(app, user.email);

    expectError(await postJson(app, '/auth/login/mfa', { mfaToken, ...fields }), { statusCode: 400 });
  });
});

describe('step-up for sensitive actions', () => {
  test.for([
    [
      'POST /auth/password',
      'POST',
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'another long passphrase 1' },
    ],
    ['DELETE /auth/me', 'DELETE', '/auth/me', { password: PASSWORD }],
    [
      'POST /auth/email/change',
      'POST',
      '/auth/email/change',
      { newEmail: 'new-address@example.com', password: PASSWORD },
    ],
    ['POST /auth/mfa/totp', 'POST', '/auth/mfa/totp', {}],
    ['POST /auth/mfa/recovery-codes', 'POST', '/auth/mfa/recovery-codes', undefined],
  ] as const)(
    '%s needs aal2 once a factor exists, and works after POST /auth/mfa/step-up',
    async ([, method, url, payload], { db, onTestFinished }) => {
      const clock = new Clock();
      const app = await testApp(db, onTestFinished, { clock: clock.read });
      const user = await createUser(db);
      // A session from before the enrolment stays aal1.
      const older = await login(app, user.email);
      const { secret } = await enrolledFor(app, clock, user.email);

      const refused = await authed(app, method, url, older.accessToken, payload);
      expectError(refused, { statusCode: 403, code: 'MFA_REQUIRED' });

      const stepUp = await authed(app, 'POST', '/auth/mfa/step-up', older.accessToken, {
        code: codeAt(secret, clock.now),
      });
      expect(stepUp.statusCode, stepUp.body).toBe(200);
      const raised = stepUp.json<TokenPairJson>();
      expect(decodeJwt(raised.accessToken).payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'otp'] });
      const allowed = await authed(app, method, url, raised.accessToken, payload);
      expect(allowed.statusCode, allowed.body).toBeLessThan(300);
    },
  );

  test.for([
    ['PATCH /users/:id', 'PATCH', { name: 'Renamed' }],
    ['DELETE /users/:id', 'DELETE', undefined],
    ['DELETE /users/:id/mfa', 'DELETE-MFA', undefined],
  ] as const)(
    'an admin write (%s) needs aal2 once the admin has a factor',
    async ([, method, payload], { db, onTestFinished }) => {
      const clock = new Clock();
      const app = await testApp(db, onTestFinished, { clock: clock.read });
      const admin = await createUser(db, { role: 'admin' });
      await createUser(db, { role: 'admin' });
      const target = await createUser(db);
      const older = await login(app, admin.email);
      const { secret } = await enrolledFor(app, clock, admin.email);
      const url = method === 'DELETE-MFA' ? `/users/${target.id}/mfa` : `/users/${target.id}`;
      const verb = method === 'DELETE-MFA' ? 'DELETE' : method;

      expectError(await authed(app, verb, url, older.accessToken, payload), { statusCode: 403, code: 'MFA_REQUIRED' });
      const raised = (
        await authed(app, 'POST', '/auth/mfa/step-up', older.accessToken, { code: codeAt(secret, clock.now) })
      ).json<TokenPairJson>();
      expect((await authed(app, verb, url, raised.accessToken, payload)).statusCode).toBeLessThan(300);
    },
  );

  test('a wrong step-up code is 401 INVALID_MFA_CODE, and an account without a factor cannot step up', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const plain = await login(app, (await createUser(db)).email);
    expectError(await authed(app, 'POST', '/auth/mfa/step-up', plain.accessToken, { code: '123456' }), {
      statusCode: 401,
      code: 'INVALID_MFA_CODE',
    });
    const { session } = await enrolled(app, db, clock);
    expectError(await authed(app, 'POST', '/auth/mfa/step-up', session.accessToken, { code: '000000' }), {
      statusCode: 401,
      code: 'INVALID_MFA_CODE',
    });
  });
});

/** Enrols a factor for an existing account from a new session of its own. */
async function enrolledFor(app: App, clock: Clock, email: string) {
  const session = await login(app, email);
  const { factor, secret } = (await authed(app, 'POST', '/auth/mfa/totp', session.accessToken, {})).json<Enrolled>();
  const verify = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, session.accessToken, {
    code: codeAt(secret, clock.now),
  });
  expect(verify.statusCode, verify.body).toBe(200);
  clock.advance(30_000);
  return { secret, session: verify.json<Verified>() };
}

describe('recovery, removal and roles', () => {
  test('new recovery codes replace the old set', async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, session, recoveryCodes } = await enrolled(app, db, clock);

    const fresh = await authed(app, 'POST', '/auth/mfa/recovery-codes', session.accessToken);
    expect(fresh.statusCode, fresh.body).toBe(200);
    const codes = fresh.json<{ recoveryCodes: string[] }>().recoveryCodes;
    expect(codes).toHaveLength(10);

    const old = await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      recoveryCode: recoveryCodes[0],
    });
    expectError(old, { statusCode: 401, code: 'INVALID_MFA_CODE' });
    const next = await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      recoveryCode: codes[0],
    });
    expect(next.statusCode, next.body).toBe(200);
  });

  test('removing the last factor removes the recovery codes and the challenge at login', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, session, factorId } = await enrolled(app, db, clock);

    expect((await authed(app, 'DELETE', `/auth/mfa/factors/${factorId}`, session.accessToken)).statusCode).toBe(204);

    expect((await authed(app, 'GET', '/auth/mfa', session.accessToken)).json()).toEqual({
      factors: [],
      recoveryCodesRemaining: 0,
    });
    expect((await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json()).toHaveProperty(
      'accessToken',
    );
  });

  test('an admin removes every factor of a user who lost their device, and ends their sessions', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, session } = await enrolled(app, db, clock);
    const admin = await login(app, (await createUser(db, { role: 'admin' })).email);

    expect((await authed(app, 'DELETE', `/users/${user.id}/mfa`, admin.accessToken)).statusCode).toBe(204);

    expectUnauthorized(await authed(app, 'GET', '/auth/me', session.accessToken));
    expect((await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json()).toHaveProperty(
      'accessToken',
    );
    const events = await db.selectFrom('audit_events').where('user_id', '=', user.id).select('type').execute();
    expect(events.map((event) => event.type)).toContain('mfa.reset_by_admin');
    const notices = await db.selectFrom('email_outbox').where('user_id', '=', user.id).select('template').execute();
    expect(notices.map((notice) => notice.template).sort()).toEqual([
      'notice_mfa_enrolled',
      'notice_mfa_reset_by_admin',
    ]);
    expectError(await authed(app, 'DELETE', `/users/${user.id}/mfa`, session.accessToken), { statusCode: 401 });
  });

  test('MFA_REQUIRED_ROLES=admin: an admin without a factor can only enrol, then everything works', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read, env: { MFA_REQUIRED_ROLES: 'admin' } });
    const admin = await createUser(db, { role: 'admin' });
    const { accessToken } = await login(app, admin.email);

    expectError(await authed(app, 'GET', '/users', accessToken), { statusCode: 403, code: 'MFA_REQUIRED' });
    expectError(await authed(app, 'GET', '/auth/sessions', accessToken), { statusCode: 403, code: 'MFA_REQUIRED' });
    expect((await authed(app, 'GET', '/auth/me', accessToken)).statusCode).toBe(200);
    expect((await authed(app, 'GET', '/auth/mfa', accessToken)).statusCode).toBe(200);
    // A plain user is not concerned.
    const user = await login(app, (await createUser(db)).email);
    expect((await authed(app, 'GET', '/auth/sessions', user.accessToken)).statusCode).toBe(200);

    const { session } = await enrolledFor(app, clock, admin.email);
    expect((await authed(app, 'GET', '/users', session.accessToken)).statusCode).toBe(200);
  });

  test('the TOTP secret and recovery codes appear in no log line, audit event or later response', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const logStream = new LogCapture();
    const app = await testApp(db, onTestFinished, { clock: clock.read, logStream, env: { LOG_LEVEL: 'debug' } });
    const { user, secret, session, recoveryCodes } = await enrolled(app, db, clock);
    await postJson(app, '/auth/login/mfa', {
      mfaToken: (await challengeFor(app, user.email)).mfaToken,
      recoveryCode: recoveryCodes[0],
    });
    const status = await authed(app, 'GET', '/auth/mfa', session.accessToken);

    const events = JSON.stringify(
      await db.selectFrom('audit_events').selectAll().where('user_id', '=', user.id).execute(),
    );
    const stored = JSON.stringify(
      await db.selectFrom('mfa_factors').selectAll().where('user_id', '=', user.id).execute(),
    );
    for (const secretText of [secret, ...recoveryCodes]) {
      expect(logStream.text).not.toContain(secretText);
      expect(events).not.toContain(secretText);
      expect(status.body).not.toContain(secretText);
      expect(stored).not.toContain(secretText);
    }
    expect(logStream.lines.length).toBeGreaterThan(5);
  });
});

describe('second-factor edges', () => {
  test('at most ten factors per account; an expired enrolment is neither listed nor counted', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { accessToken } = await login(app, (await createUser(db)).email);
    await authed(app, 'POST', '/auth/mfa/totp', accessToken, { name: 'forgotten' });
    clock.advance(11 * 60_000);
    expect((await authed(app, 'GET', '/auth/mfa', accessToken)).json()).toEqual({
      factors: [],
      recoveryCodesRemaining: 0,
    });

    const statuses: number[] = [];
    for (let i = 0; i < 11; i++)
      statuses.push((await authed(app, 'POST', '/auth/mfa/totp', accessToken, {})).statusCode);

    expect(statuses.slice(0, 10).every((status) => status === 201)).toBe(true);
    expect(statuses[10]).toBe(409);
    expect(await db.selectFrom('mfa_factors').select('id').execute()).toHaveLength(10);
  });

  test.for([
    ['DELETE an unknown factor', 'DELETE', '/auth/mfa/factors/00000000-0000-7000-8000-000000000000'],
    ['new recovery codes without a factor', 'POST', '/auth/mfa/recovery-codes'],
    ['verify an unknown factor', 'POST-VERIFY', '/auth/mfa/totp/00000000-0000-7000-8000-000000000000/verify'],
  ] as const)('answers 404 to %s', async ([, method, url], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const { accessToken } = await login(app, (await createUser(db)).email);
    const response =
      method === 'POST-VERIFY'
        ? await authed(app, 'POST', url, accessToken, { code: '123456' })
        : await authed(app, method, url, accessToken);
    expectError(response, { statusCode: 404, code: 'NOT_FOUND' });
  });

  test("cannot verify another user's factor", async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const owner = await login(app, (await createUser(db)).email);
    const other = await login(app, (await createUser(db)).email);
    const { factor, secret } = (await authed(app, 'POST', '/auth/mfa/totp', owner.accessToken, {})).json<Enrolled>();

    const response = await authed(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, other.accessToken, {
      code: codeAt(secret, clock.now),
    });

    expectError(response, { statusCode: 404, code: 'NOT_FOUND' });
  });

  test('an enrolment begun at aal1 before the first factor does not activate once another session enrolled one (403 MFA_REQUIRED)', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const user = await createUser(db);
    // A stolen password's session starts an enrolment while the account has no factor yet.
    const stolen = await login(app, user.email);
    const owner = await login(app, user.email);
    const pending = (
      await authed(app, 'POST', '/auth/mfa/totp', stolen.accessToken, { name: 'other' })
    ).json<Enrolled>();
    const mine = (await authed(app, 'POST', '/auth/mfa/totp', owner.accessToken, { name: 'phone' })).json<Enrolled>();
    const ownerVerified = await authed(app, 'POST', `/auth/mfa/totp/${mine.factor.id}/verify`, owner.accessToken, {
      code: codeAt(mine.secret, clock.now),
    });
    expect(ownerVerified.statusCode, ownerVerified.body).toBe(200);

    const response = await authed(app, 'POST', `/auth/mfa/totp/${pending.factor.id}/verify`, stolen.accessToken, {
      code: codeAt(pending.secret, clock.now),
    });
    expectError(response, { statusCode: 403, code: 'MFA_REQUIRED' });
    const factor = await db
      .selectFrom('mfa_factors')
      .select('verified_at')
      .where('id', '=', pending.factor.id)
      .executeTakeFirstOrThrow();
    expect(factor.verified_at).toBeNull();
    // Still aal1: what needs the second factor stays out of reach.
    expectError(await authed(app, 'POST', '/auth/mfa/recovery-codes', stolen.accessToken), {
      statusCode: 403,
      code: 'MFA_REQUIRED',
    });
  });

  test('two aal1 sessions activating a first factor at once: one does, the other gets 403 MFA_REQUIRED', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const user = await createUser(db);
    const sessions = [await login(app, user.email), await login(app, user.email)];
    const enrolments = await Promise.all(
      sessions.map(async (session) =>
        (await authed(app, 'POST', '/auth/mfa/totp', session.accessToken, {})).json<Enrolled>(),
      ),
    );

    const responses = await Promise.all(
      sessions.map((session, i) => {
        const enrolment = enrolments[i];
        if (enrolment === undefined) throw new Error('no enrolment');
        return authed(app, 'POST', `/auth/mfa/totp/${enrolment.factor.id}/verify`, session.accessToken, {
          code: codeAt(enrolment.secret, clock.now),
        });
      }),
    );

    expect(responses.map((response) => response.statusCode).sort()).toEqual([200, 403]);
    const verified = await db
      .selectFrom('mfa_factors')
      .select('id')
      .where('user_id', '=', user.id)
      .where('verified_at', 'is not', null)
      .execute();
    expect(verified).toHaveLength(1);
  });

  test('an ended session cannot be raised by a step-up', async ({ db, onTestFinished }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, { clock: clock.read });
    const { user, secret, session } = await enrolled(app, db, clock);
    const other = (
      await postJson(app, '/auth/login/mfa', {
        mfaToken: (await challengeFor(app, user.email)).mfaToken,
        code: codeAt(secret, clock.now),
      })
    ).json<LoginJson>();
    clock.advance(30_000);
    expect((await postJson(app, '/auth/logout', { refreshToken: session.refreshToken })).statusCode).toBe(204);

    expectUnauthorized(
      await authed(app, 'POST', '/auth/mfa/step-up', session.accessToken, { code: codeAt(secret, clock.now) }),
    );
    expect(
      (await authed(app, 'POST', '/auth/mfa/step-up', other.accessToken, { code: codeAt(secret, clock.now) }))
        .statusCode,
    ).toBe(200);
  });
});

describe('a known device and wrong codes from elsewhere', () => {
  test('strangers who know the password and guess codes from many addresses do not lock out the owner’s known device', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, {
      clock: clock.read,
      env: { LOGIN_MAX_FAILURES: '3', LOGIN_ACCOUNT_MAX_FAILURES: '5' },
    });
    const { user, secret } = await enrolled(app, db, clock);
    const owner = '10.40.0.1';
    const post = (url: string, body: unknown, from: string) =>
      app.inject({
        method: 'POST',
        url,
        remoteAddress: from,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });
    const challenge = async (from: string) =>
      (await post('/auth/login', { email: user.email, password: PASSWORD }, from)).json<Challenge>().mfaToken;
    // The owner's device signed in with both factors once: it holds a device token.
    const first = await post(
      '/auth/login/mfa',
      { mfaToken: await challenge(owner), code: codeAt(secret, clock.now) },
      owner,
    );
    const { deviceToken } = first.json<LoginJson>();
    expect(deviceToken).toEqual(expect.any(String));
    clock.advance(30_000);

    for (let a = 0; a < 4; a++) {
      for (let i = 0; i < 2; i++) {
        const from = `10.66.${a}.1`;
        await post('/auth/login/mfa', { mfaToken: await challenge(from), code: '000000' }, from);
      }
    }

    // An unknown device waits out the account's slowdown; the owner's device does not.
    const unknown = await post(
      '/auth/login/mfa',
      { mfaToken: await challenge(owner), code: codeAt(secret, clock.now) },
      owner,
    );
    expectError(unknown, { statusCode: 429, code: 'RATE_LIMITED' });
    const known = await post(
      '/auth/login/mfa',
      { mfaToken: await challenge(owner), code: codeAt(secret, clock.now), deviceToken },
      owner,
    );
    expect(known.statusCode, known.body).toBe(200);
  });
});

describe('flood caps of the second step', () => {
  test('the second step of a login is capped like a login, not like the credential routes: junk from one address does not stop a NAT’s sign-ins', async ({
    db,
    onTestFinished,
  }) => {
    const clock = new Clock();
    const app = await testApp(db, onTestFinished, {
      clock: clock.read,
      env: { RATE_LIMIT_CREDENTIALS: '3', RATE_LIMIT_LOGIN: '20' },
    });
    const { user, secret, session } = await enrolled(app, db, clock);
    for (let i = 0; i < 5; i++) {
      expectError(await postJson(app, '/auth/login/mfa', { mfaToken: `junk-${i}`, code: '123456' }), {
        statusCode: 400,
        code: 'INVALID_OR_EXPIRED_TOKEN',
      });
    }
    const { mfaToken } = await challengeFor(app, user.email);
    const signedIn = await postJson(app, '/auth/login/mfa', { mfaToken, code: codeAt(secret, clock.now) });
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    // The credential routes keep their own, smaller cap.
    const stepUps = [];
    for (let i = 0; i < 4; i++) {
      stepUps.push(
        (await authed(app, 'POST', '/auth/mfa/step-up', session.accessToken, { code: '000000' })).statusCode,
      );
    }
    expect(stepUps.at(-1)).toBe(429);
  });
});

describe('names of factors', () => {
  test.for([
    ['a right-to-left override', '\u202Egnp.exe'],
    ['a control character', 'phone\u0007'],
    ['only invisible characters', '\u200B\u200B'],
  ] as const)(
    'refuses a factor name with %s (400 VALIDATION_FAILED, field name)',
    async ([, name], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const { accessToken } = await login(app, (await createUser(db)).email);
      expectError(await authed(app, 'POST', '/auth/mfa/totp', accessToken, { name }), {
        statusCode: 400,
        code: 'VALIDATION_FAILED',
        field: 'name',
      });
      expect(await db.selectFrom('mfa_factors').select('id').execute()).toEqual([]);
    },
  );
});
