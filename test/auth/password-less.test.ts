import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD } from '../helpers/http.ts';

// An account without a password (it signs in through a provider or with a passkey) deletes itself
// and changes its address with the password "when the account has one" (api.md): a sign-in within
// the last 10 minutes stands in for it. An account with a password still needs it.

class Clock {
  now = new Date();
  readonly read = () => this.now;
}

async function send(app: App, method: 'POST' | 'DELETE', url: string, token: string, body: unknown) {
  return app.inject({
    method,
    url,
    headers: { ...bearer(token), 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
}

/** A signed-in account whose password was then taken away, as a provider-created account has none. */
async function passwordless(app: App, db: Kysely<DB>) {
  const user = await createUser(db);
  const session = await login(app, user.email);
  await db.updateTable('users').set({ password_hash: '' }).where('id', '=', user.id).execute();
  return { user, session };
}

const ACTIONS = [
  ['deleting the account', 'DELETE', '/auth/me', {}],
  ['asking to change the address', 'POST', '/auth/email/change', { newEmail: 'moved@example.com' }],
] as const;

describe('an account without a password', () => {
  test.for(ACTIONS)(
    '%s needs no password right after signing in',
    async ([, method, url, body], { db, onTestFinished }) => {
      const clock = new Clock();
      const app = await testApp(db, onTestFinished, { clock: clock.read });
      const { user, session } = await passwordless(app, db);
      clock.now = new Date(clock.now.getTime() + 9 * 60_000);

      const response = await send(app, method, url, session.accessToken, body);

      expect(response.statusCode, response.body).toBe(method === 'DELETE' ? 204 : 202);
      const left = await db.selectFrom('users').select('id').where('id', '=', user.id).execute();
      expect(left).toHaveLength(method === 'DELETE' ? 0 : 1);
    },
  );

  test.for(ACTIONS)(
    '%s is 403 FORBIDDEN when the sign-in is more than 10 minutes old, and a password given is wrong (401)',
    async ([, method, url, body], { db, onTestFinished }) => {
      const clock = new Clock();
      const app = await testApp(db, onTestFinished, { clock: clock.read });
      const { user, session } = await passwordless(app, db);
      clock.now = new Date(clock.now.getTime() + 11 * 60_000);

      expectError(await send(app, method, url, session.accessToken, body), { statusCode: 403, code: 'FORBIDDEN' });
      expectError(await send(app, method, url, session.accessToken, { ...body, password: PASSWORD }), {
        statusCode: 401,
        code: 'INVALID_CREDENTIALS',
      });
      expect(await db.selectFrom('users').select('email').where('id', '=', user.id).execute()).toEqual([
        { email: user.email },
      ]);
      expect(await db.selectFrom('email_changes').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
    },
  );
});

describe('an account with a password', () => {
  test.for(ACTIONS)('%s without it is 400 naming password', async ([, method, url, body], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    expectError(await send(app, method, url, accessToken, body), {
      statusCode: 400,
      code: 'VALIDATION_FAILED',
      field: 'password',
    });
    expect(await db.selectFrom('users').select('id').where('id', '=', user.id).execute()).toHaveLength(1);
  });
});
