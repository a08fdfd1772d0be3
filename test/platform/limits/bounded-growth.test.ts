import type { Kysely } from 'kysely';
import type { DB } from '../../../db-types/index.ts';
import type { App } from '../../../src/app.ts';
import { EMAIL_EVENT_INTERVAL_SECONDS } from '../../../src/audit/service.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import { SELF_CHANGE_WINDOW_SECONDS, SELF_CHANGES_PER_WINDOW } from '../../../src/users/admin.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD } from '../../helpers/http.ts';

// Issue 33 item 5: no request one caller can repeat grows a table without a cap. One token
// renaming itself wrote 7,138 audit rows in 20 s; a reset request for an address nobody owns
// stored an outbox row; a failed login for an unknown email stored an audit row nobody can read.

async function rows(db: Kysely<DB>, table: 'audit_events' | 'email_outbox'): Promise<number> {
  const { count } = await db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(count);
}

const selfUpdates = async (db: Kysely<DB>, userId: string) =>
  (
    await db
      .selectFrom('audit_events')
      .select('id')
      .where('type', '=', 'user.updated')
      .where('user_id', '=', userId)
      .execute()
  ).length;

function rename(app: App, token: string, name: string) {
  return app.inject({
    method: 'PATCH',
    url: '/auth/me',
    headers: { ...bearer(token), 'content-type': 'application/json' },
    payload: JSON.stringify({ name }),
  });
}

/** Each request from an address of its own: the per-address limits are not what is tested here. */
const from = (i: number) => `10.5.${Math.floor(i / 250)}.${(i % 250) + 1}`;

describe('PATCH /auth/me renaming in a loop', () => {
  test(`records at most ${SELF_CHANGES_PER_WINDOW} changes a day, refusing the rest with 429 and retry-after, even when sent at once`, async ({
    onTestFinished,
  }) => {
    // Committed transactions on a pool, so the racing renames really run side by side.
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);

    const responses = await Promise.all(
      Array.from({ length: SELF_CHANGES_PER_WINDOW + 8 }, (_, i) => rename(app, accessToken, `Name ${i}`)),
    );

    const statuses = responses.map((response) => response.statusCode).sort();
    expect(statuses.filter((status) => status === 200)).toHaveLength(SELF_CHANGES_PER_WINDOW);
    const refused = responses.find((response) => response.statusCode === 429);
    if (refused === undefined) throw new Error('no rename was refused');
    expectError(refused, { statusCode: 429, code: 'RATE_LIMITED' });
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(SELF_CHANGE_WINDOW_SECONDS - 60);
    expect(retryAfter).toBeLessThanOrEqual(SELF_CHANGE_WINDOW_SECONDS);
    expect(await selfUpdates(db, user.id)).toBe(SELF_CHANGES_PER_WINDOW);
  });

  test('a rename to the current name writes nothing and is answered even past the cap', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db, { name: 'Ada' });
    const { accessToken } = await login(app, user.email);
    const before = await rows(db, 'audit_events');

    for (let i = 0; i < SELF_CHANGES_PER_WINDOW + 5; i++) {
      const response = await rename(app, accessToken, ' Ada ');
      expect(response.statusCode, response.body).toBe(200);
    }

    expect(await rows(db, 'audit_events')).toBe(before);
  });

  test("an admin's changes to a user do not count against the user's own cap", async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const user = await createUser(db);
    const adminToken = (await login(app, admin.email)).accessToken;
    for (let i = 0; i < SELF_CHANGES_PER_WINDOW; i++) {
      const response = await app.inject({
        method: 'PATCH',
        url: `/users/${user.id}`,
        headers: { ...bearer(adminToken), 'content-type': 'application/json' },
        payload: JSON.stringify({ name: `Admin Name ${i}` }),
      });
      expect(response.statusCode, response.body).toBe(200);
    }

    const own = await rename(app, (await login(app, user.email)).accessToken, 'My Own Name');

    expect(own.statusCode, own.body).toBe(200);
  });
});

describe('requests for addresses and accounts nobody has', () => {
  test('a reset request for an address nobody owns stores no outbox row; one for an account stores one', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const forgot = (email: string, i: number) =>
      app.inject({
        method: 'POST',
        url: '/auth/password/forgot',
        remoteAddress: from(i),
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email }),
      });

    for (let i = 0; i < 25; i++) {
      const response = await forgot(`nobody-${i}@example.com`, i);
      expect(response.statusCode, response.body).toBe(202);
    }
    expect(await rows(db, 'email_outbox')).toBe(0);

    expect((await forgot(user.email, 99)).statusCode).toBe(202);
    const queued = await db.selectFrom('email_outbox').select(['recipient', 'template', 'user_id']).execute();
    expect(queued).toEqual([{ recipient: user.email, template: 'password_reset', user_id: user.id }]);
  });

  test(`reset requests for someone else's address record one password.reset_requested per ${EMAIL_EVENT_INTERVAL_SECONDS / 60} minutes`, async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);

    for (let i = 0; i < 5; i++) {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/password/forgot',
        remoteAddress: from(i),
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email }),
      });
      expect(response.statusCode, response.body).toBe(202);
    }

    const requested = await db
      .selectFrom('audit_events')
      .select('user_id')
      .where('type', '=', 'password.reset_requested')
      .execute();
    expect(requested).toEqual([{ user_id: user.id }]);
  });

  test('a failed login for an unknown email stores no audit row, and metrics count it with the other failures', async ({
    db,
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const app = await testApp(db, onTestFinished, { metrics });
    const user = await createUser(db);
    const before = await rows(db, 'audit_events');

    for (let i = 0; i < 25; i++) {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/login',
        remoteAddress: from(i),
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email: `nobody-${i}@example.com`, password: PASSWORD }),
      });
      expectError(response, { statusCode: 401, code: 'INVALID_CREDENTIALS' });
    }
    expect(await rows(db, 'audit_events')).toBe(before);

    // A wrong password for an account is still the owner's to read.
    const wrong = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ email: user.email, password: 'not the password at all' }),
    });
    expect(wrong.statusCode).toBe(401);
    expect(await rows(db, 'audit_events')).toBe(before + 1);
    const failures = (await metrics.logins.get()).values.find((value) => value.labels.outcome === 'failure');
    expect(failures?.value).toBe(26);
  });
});
