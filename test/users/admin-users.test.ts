import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import {
  bearer,
  createUser,
  expectError,
  expectUnauthorized,
  login,
  PASSWORD,
  postJson,
  type ErrorJson,
  type UserJson,
} from '../helpers/http.ts';
import type { App } from '../../src/app.ts';
import { AppMetrics } from '../../src/platform/metrics/metrics.ts';

function patch(app: App, id: string, token: string, body: unknown) {
  return app.inject({
    method: 'PATCH',
    url: `/users/${id}`,
    headers: { ...bearer(token), 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
}

describe('PATCH /users/:id', () => {
  test('disabling a user ends every session at once; their login then fails exactly like a wrong password', async ({
    db,
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const app = await testApp(db, onTestFinished, { metrics });
    const admin = await createUser(db, { role: 'admin' });
    const adminToken = (await login(app, admin.email)).accessToken;
    const user = await createUser(db, { name: 'Target' });
    const sessions = [await login(app, user.email), await login(app, user.email)];

    const response = await patch(app, user.id, adminToken, { status: 'disabled' });

    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.json<{ user: UserJson }>().user).toMatchObject({ id: user.id, status: 'disabled' });
    for (const session of sessions) {
      expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) }));
      expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken }));
    }
    const disabled = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });
    const wrong = await postJson(app, '/auth/login', { email: user.email, password: 'not the password' });
    expect(disabled.statusCode).toBe(401);
    const withoutRequestId = (body: { error: ErrorJson }) => ({ ...body.error, requestId: 'same' });
    expect(withoutRequestId(disabled.json())).toEqual(withoutRequestId(wrong.json()));

    const updated = await db.selectFrom('audit_events').selectAll().where('type', '=', 'user.updated').execute();
    expect(updated).toEqual([
      expect.objectContaining({
        user_id: user.id,
        actor_id: admin.id,
        details: { fields: ['status'], changes: { status: { old: 'active', new: 'disabled' } } },
      }),
    ]);
    const ended = await db.selectFrom('sessions').select('end_reason').where('user_id', '=', user.id).execute();
    expect(ended.map((row) => row.end_reason)).toEqual(['user_disabled', 'user_disabled', 'user_disabled']);
    const counted = async (counter: AppMetrics['sessionsEnded'] | AppMetrics['adminActions'], label: string) =>
      (await counter.get()).values.find((value) => Object.values(value.labels).includes(label))?.value;
    expect(await counted(metrics.sessionsEnded, 'user_disabled')).toBe(3);
    expect(await counted(metrics.adminActions, 'disable')).toBe(1);
    expect(await counted(metrics.adminActions, 'role')).toBe(0);

    // Enabled again, they can log in.
    expect((await patch(app, user.id, adminToken, { status: 'active' })).statusCode).toBe(200);
    await login(app, user.email);
  }, 60_000);

  test('changes the role and the name; a non-admin gets 403, an unknown id 404', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const adminToken = (await login(app, admin.email)).accessToken;
    const user = await createUser(db);
    const userToken = (await login(app, user.email)).accessToken;

    const promoted = await patch(app, user.id, adminToken, { role: 'admin', name: 'Second Admin' });
    expect(promoted.statusCode, promoted.body).toBe(200);
    expect(promoted.json<{ user: UserJson }>().user).toMatchObject({ role: 'admin', name: 'Second Admin' });
    // The promotion holds on the next request, without a new token.
    expect((await app.inject({ url: '/users', headers: bearer(userToken) })).statusCode).toBe(200);

    const plain = await createUser(db);
    const plainToken = (await login(app, plain.email)).accessToken;
    expectError(await patch(app, user.id, plainToken, { role: 'user' }), {
      statusCode: 403,
      type: 'AuthorizationError',
      code: 'FORBIDDEN',
    });
    expectError(await patch(app, '00000000-0000-4000-8000-000000000000', adminToken, { name: 'X' }), {
      statusCode: 404,
      type: 'NotFoundError',
      code: 'NOT_FOUND',
    });
    expectError(await patch(app, user.id, adminToken, { role: 'root' }), {
      statusCode: 400,
      type: 'ValidationError',
      code: 'VALIDATION_FAILED',
    });
  });

  test('refuses to demote or disable the last active admin with 409 LAST_ADMIN, and records nothing', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const token = (await login(app, admin.email)).accessToken;
    for (const body of [{ role: 'user' }, { status: 'disabled' }]) {
      expectError(await patch(app, admin.id, token, body), {
        statusCode: 409,
        type: 'ConflictError',
        code: 'LAST_ADMIN',
      });
    }
    expect(await db.selectFrom('users').select(['role', 'status']).where('id', '=', admin.id).execute()).toEqual([
      { role: 'admin', status: 'active' },
    ]);
    // The refused change rolled back: no event claims it happened.
    expect(await db.selectFrom('audit_events').select('id').where('type', '=', 'user.updated').execute()).toEqual([]);
  });

  test('two admins demoting each other at the same moment leave exactly one admin', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    const [a, b] = [await createUser(db, { role: 'admin' }), await createUser(db, { role: 'admin' })];
    const [tokenA, tokenB] = [(await login(app, a.email)).accessToken, (await login(app, b.email)).accessToken];
    const demote = (id: string, token: string) =>
      fetch(`${base}/users/${id}`, {
        method: 'PATCH',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: JSON.stringify({ role: 'user' }),
      });

    for (let round = 0; round < 3; round++) {
      const responses = await Promise.all([demote(b.id, tokenA), demote(a.id, tokenB)]);
      const statuses = responses.map((response) => response.status).sort();
      // One wins; the other is refused: as the last admin (409) or, already demoted, not an admin (403).
      expect(statuses[0]).toBe(200);
      expect([403, 409]).toContain(statuses[1]);
      const admins = await db
        .selectFrom('users')
        .select('id')
        .where('role', '=', 'admin')
        .where('status', '=', 'active')
        .execute();
      expect(admins).toHaveLength(1);
      // Both admins again for the next round.
      await db.updateTable('users').set({ role: 'admin' }).execute();
    }
  });
});

describe('DELETE /users/:id', () => {
  test('deletes the user with every row of theirs; the last admin cannot be deleted', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const adminToken = (await login(app, admin.email)).accessToken;
    const user = await createUser(db);
    const session = await login(app, user.email);
    // A verification email queued: an account token and an outbox row of theirs.
    const queued = await app.inject({
      method: 'POST',
      url: '/auth/email/verification',
      headers: bearer(session.accessToken),
    });
    expect(queued.statusCode, queued.body).toBe(202);
    expect(await db.selectFrom('email_outbox').select('id').where('user_id', '=', user.id).execute()).toHaveLength(1);

    const response = await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(adminToken) });

    expect(response.statusCode, response.body).toBe(204);
    for (const table of ['users', 'sessions', 'refresh_tokens', 'account_tokens', 'email_outbox'] as const) {
      const column = table === 'users' ? 'id' : 'user_id';
      expect(await db.selectFrom(table).select(column).where(column, '=', user.id).execute(), table).toEqual([]);
    }
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) }));
    const events = await app.inject({ url: `/users/${user.id}/events`, headers: bearer(adminToken) });
    expect(events.statusCode, events.body).toBe(200);
    expect(events.json<{ items: Array<{ type: string }> }>().items[0]?.type).toBe('user.deleted');
    const again = await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(adminToken) });
    expectError(again, { statusCode: 404, type: 'NotFoundError', code: 'NOT_FOUND' });
    const self = await app.inject({ method: 'DELETE', url: `/users/${admin.id}`, headers: bearer(adminToken) });
    expectError(self, { statusCode: 409, type: 'ConflictError', code: 'LAST_ADMIN' });
  });
});

describe('GET /users filters', () => {
  test('q matches the start of the email or the name in any case, literally; role and status filter', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin', email: 'root@example.com', name: 'Root' });
    const token = (await login(app, admin.email)).accessToken;
    await createUser(db, { email: 'ada@example.com', name: 'Countess Lovelace' });
    const grace = await createUser(db, { email: 'grace@example.com', name: 'Adm. Hopper' });
    await createUser(db, { email: 'a_b@example.com', name: 'Underscore' });
    await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', grace.id).execute();
    const ids = async (query: string) => {
      const response = await app.inject({ url: `/users?${query}`, headers: bearer(token) });
      expect(response.statusCode, response.body).toBe(200);
      return response
        .json<{ items: UserJson[] }>()
        .items.map((user) => user.email)
        .sort();
    };

    expect(await ids('q=AD')).toEqual(['ada@example.com', 'grace@example.com']);
    expect(await ids('q=countess')).toEqual(['ada@example.com']);
    expect(await ids('q=lovelace')).toEqual([]);
    // `_` and `%` are literal, not wildcards.
    expect(await ids('q=a_')).toEqual(['a_b@example.com']);
    expect(await ids('q=%25')).toEqual([]);
    expect(await ids('role=admin')).toEqual(['root@example.com']);
    expect(await ids('status=disabled')).toEqual(['grace@example.com']);
    expect(await ids('q=a&status=active')).toEqual(['a_b@example.com', 'ada@example.com']);
    expect((await app.inject({ url: '/users?status=gone', headers: bearer(token) })).statusCode).toBe(400);
  });
});
