import type { Kysely } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import type { UserRow } from '../../src/users/users.repository.ts';
import { PasswordHasher, type HashCallers } from '../../src/auth/passwords.ts';
import { TEST_ARGON2, testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { createAccountToken } from '../helpers/factories.ts';
import { accessTokenFor, bearer, createUser, expectError, PASSWORD, postJson } from '../helpers/http.ts';

// A secret is checked (argon2, outside any transaction) and then acted on (a session opened, a
// password set, an account erased). These tests hold the first checks' answers back until a change
// of the account has committed, then let them go on: what they checked no longer counts. They run
// on committed data in a database of their own, so each request has its own connection and
// transaction, as in production.

/**
 * argon2 for real, but the answers of the next `held` verifications wait until `release()`: the
 * window between checking a password and acting on it, made as wide as a test needs.
 */
class HeldHasher extends PasswordHasher {
  #held = 0;
  #release: () => void = () => {};
  #gate = Promise.resolve();
  #waiters: Array<() => void> = [];

  constructor() {
    super({ params: TEST_ARGON2, concurrency: 4, queueLimit: 64 });
  }

  /** Holds the answers of the next `count` verifications; resolves once all of them have run. */
  hold(count: number): { checked: Promise<void>; release: () => void } {
    this.#held = count;
    this.#gate = new Promise((resolve) => (this.#release = resolve));
    const checked = new Promise<void>((resolve) => this.#waiters.push(resolve));
    return {
      checked,
      release: () => {
        this.#release();
      },
    };
  }

  override async verify(hash: string, password: string, callers: HashCallers = []): Promise<boolean> {
    const result = await super.verify(hash, password, callers);
    if (this.#held === 0) return result;
    this.#held--;
    if (this.#held === 0) for (const waiter of this.#waiters.splice(0)) waiter();
    await this.#gate;
    return result;
  }
}

const NEW_PASSWORD = 'a new and longer passphrase';
const LOGINS = 4;

interface Setup {
  readonly app: App;
  readonly db: Kysely<DB>;
  readonly user: UserRow;
  readonly admin: UserRow;
}

/** Changes that make a password checked before them stale, each through the API. */
const CHANGES: ReadonlyArray<{ name: string; change: (setup: Setup) => Promise<number> }> = [
  {
    name: 'the owner changes the password',
    change: async ({ app, user }) =>
      (
        await postJson(
          app,
          '/auth/password',
          { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
          bearer(accessTokenFor(user)),
        )
      ).statusCode,
  },
  {
    name: 'the owner resets the password with a link',
    change: async ({ app, db, user }) => {
      const { token } = await createAccountToken(db, { userId: user.id, purpose: 'password_reset' });
      return (await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD })).statusCode;
    },
  },
  {
    name: 'the owner adds a second factor',
    change: async ({ app, user }) => {
      const headers = bearer(accessTokenFor(user));
      const started = await postJson(app, '/auth/mfa/totp', { name: 'phone' }, headers);
      const { factor, secret } = started.json<{ factor: { id: string }; secret: string }>();
      const code = TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now(), period: 30, digits: 6 });
      return (await postJson(app, `/auth/mfa/totp/${factor.id}/verify`, { code }, headers)).statusCode;
    },
  },
  {
    name: 'an admin disables the account',
    change: async ({ app, user, admin }) =>
      (
        await app.inject({
          method: 'PATCH',
          url: `/users/${user.id}`,
          payload: { status: 'disabled' },
          headers: bearer(accessTokenFor(admin)),
        })
      ).statusCode,
  },
  {
    name: 'an admin deletes the account',
    change: async ({ app, user, admin }) =>
      (await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(accessTokenFor(admin)) }))
        .statusCode,
  },
];

async function setUp(onTestFinished: (fn: () => Promise<void>) => void): Promise<Setup & { hasher: HeldHasher }> {
  const { db } = await isolatedDatabase(onTestFinished);
  const hasher = new HeldHasher();
  const app = await testApp(db, onTestFinished, { hasher });
  const user = await createUser(db);
  const admin = await createUser(db, { role: 'admin' });
  return { app, db, user, admin, hasher };
}

/** The live sessions and refresh tokens of `user`, by id. */
async function liveCredentials(db: Kysely<DB>, user: UserRow): Promise<{ sessions: string[]; tokens: string[] }> {
  const sessions = await db
    .selectFrom('sessions')
    .select('id')
    .where('user_id', '=', user.id)
    .where('ended_at', 'is', null)
    .orderBy('id')
    .execute();
  const tokens = await db
    .selectFrom('refresh_tokens')
    .select('id')
    .where('user_id', '=', user.id)
    .where('revoked_at', 'is', null)
    .orderBy('id')
    .execute();
  return { sessions: sessions.map((row) => row.id), tokens: tokens.map((row) => row.id) };
}

describe('a secret checked before a change of the account does not count after it', () => {
  test.for(CHANGES)(
    'logins whose password check raced "$name" open no session and answer 401 INVALID_CREDENTIALS',
    async ({ change }, { onTestFinished }) => {
      const setup = await setUp(onTestFinished);
      const { app, db, user, hasher } = setup;
      const held = hasher.hold(LOGINS);
      const logins = Array.from({ length: LOGINS }, () =>
        postJson(app, '/auth/login', { email: user.email, password: PASSWORD }),
      );
      await held.checked;

      const status = await change(setup);
      // What the change itself left (adding a factor hands its session new tokens): the logins add nothing.
      const before = await liveCredentials(db, user);
      held.release();
      const responses = await Promise.all(logins);

      expect(status).toBeLessThan(300);
      for (const response of responses) {
        expectError(response, { statusCode: 401, type: 'AuthenticationError', code: 'INVALID_CREDENTIALS' });
      }
      expect(await liveCredentials(db, user)).toEqual(before);
    },
  );

  test('a login racing the deletion of its account answers exactly like a wrong password', async ({
    onTestFinished,
  }) => {
    const setup = await setUp(onTestFinished);
    const { app, user, hasher } = setup;
    const wrong = await postJson(app, '/auth/login', { email: user.email, password: 'not the password' });
    const held = hasher.hold(1);
    const login = postJson(app, '/auth/login', { email: user.email, password: PASSWORD });
    await held.checked;

    expect(await CHANGES.find((c) => c.name === 'an admin deletes the account')?.change(setup)).toBe(204);
    held.release();
    const raced = await login;

    expect(raced.statusCode).toBe(401);
    const body = (response: typeof raced) => ({ ...response.json<{ error: object }>().error, requestId: undefined });
    expect(body(raced)).toEqual(body(wrong));
  });

  test('of two password changes checked against the same password, the one that commits second gets 401 and sets nothing', async ({
    onTestFinished,
  }) => {
    const { app, db, user, hasher } = await setUp(onTestFinished);
    const held = hasher.hold(1);
    const first = postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'the first new passphrase' },
      bearer(accessTokenFor(user)),
    );
    await held.checked;

    const second = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      bearer(accessTokenFor(user)),
    );
    held.release();

    expect(second.statusCode).toBe(204);
    expectError(await first, { statusCode: 401, code: 'INVALID_CREDENTIALS', field: 'currentPassword' });
    expect((await postJson(app, '/auth/login', { email: user.email, password: NEW_PASSWORD })).statusCode).toBe(200);
    const row = await db.selectFrom('users').select('id').where('id', '=', user.id).execute();
    expect(row).toHaveLength(1);
  });

  test('an account deletion whose password check raced a password change erases nothing and answers 401', async ({
    onTestFinished,
  }) => {
    const { app, db, user, hasher } = await setUp(onTestFinished);
    const held = hasher.hold(1);
    const deletion = app.inject({
      method: 'DELETE',
      url: '/auth/me',
      payload: { password: PASSWORD },
      headers: bearer(accessTokenFor(user)),
    });
    await held.checked;

    const change = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      bearer(accessTokenFor(user)),
    );
    held.release();

    expect(change.statusCode).toBe(204);
    expectError(await deletion, { statusCode: 401, code: 'INVALID_CREDENTIALS', field: 'password' });
    expect(await db.selectFrom('users').select('id').where('id', '=', user.id).execute()).toHaveLength(1);
  });

  test('an email change whose password check raced a password change queues no links and answers 401', async ({
    onTestFinished,
  }) => {
    const { app, db, user, hasher } = await setUp(onTestFinished);
    const held = hasher.hold(1);
    const request = postJson(
      app,
      '/auth/email/change',
      { newEmail: 'moved@example.com', password: PASSWORD },
      bearer(accessTokenFor(user)),
    );
    await held.checked;

    const change = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      bearer(accessTokenFor(user)),
    );
    held.release();

    expect(change.statusCode).toBe(204);
    expectError(await request, { statusCode: 401, code: 'INVALID_CREDENTIALS', field: 'password' });
    expect(await db.selectFrom('email_changes').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
  });
});
