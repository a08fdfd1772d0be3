import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import type { UserRow } from '../../src/users/users.repository.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import {
  accessTokenFor,
  bearer,
  createUser,
  expectError,
  expectUnauthorized,
  expectUserShape,
  login,
  type UserJson,
} from '../helpers/http.ts';

interface PageJson {
  readonly items: UserJson[];
  readonly nextCursor: string | null;
}

/** `count` users created one second apart, the last one newest; returned newest first. */
async function usersCreatedInOrder(
  db: Kysely<DB>,
  count: number,
  start = Date.parse('2030-01-01T00:00:00.000Z'),
): Promise<UserRow[]> {
  const users: UserRow[] = [];
  for (let i = 0; i < count; i++) {
    const user = await createUser(db, { email: `user${String(i).padStart(3, '0')}@example.com` });
    const createdAt = new Date(start + i * 1000);
    await db.updateTable('users').set({ created_at: createdAt }).where('id', '=', user.id).execute();
    users.push({ ...user, created_at: createdAt });
  }
  return users.reverse();
}

async function adminToken(db: Kysely<DB>): Promise<{ admin: UserRow; token: string }> {
  const admin = await createUser(db, { email: 'admin@example.com', role: 'admin' });
  // The admin is the oldest account, so pages of the others come first.
  await db
    .updateTable('users')
    .set({ created_at: new Date('2000-01-01T00:00:00.000Z') })
    .where('id', '=', admin.id)
    .execute();
  return { admin, token: accessTokenFor(admin) };
}

async function page(app: App, token: string, query = ''): Promise<PageJson> {
  const response = await app.inject({ url: `/users${query}`, headers: bearer(token) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<PageJson>();
}

describe('GET /users', () => {
  test('lists users for an admin, newest first, 20 by default, with a cursor to the next page', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const { admin } = await adminToken(db);
    const users = await usersCreatedInOrder(db, 25);
    // A real login, so this path is covered without hand-made tokens too.
    const { accessToken } = await login(app, admin.email);

    const first = await page(app, accessToken);
    expect(Object.keys(first).sort()).toEqual(['items', 'nextCursor']);
    expect(first.items).toHaveLength(20);
    first.items.forEach(expectUserShape);
    expect(first.items.map((user) => user.id)).toEqual(users.slice(0, 20).map((user) => user.id));
    expect(first.nextCursor).toEqual(expect.any(String));

    const second = await page(app, accessToken, `?cursor=${encodeURIComponent(first.nextCursor ?? '')}`);
    expect(second.items.map((user) => user.id)).toEqual([...users.slice(20).map((user) => user.id), admin.id]);
    expect(second.nextCursor).toBeNull();
  });

  test('honours limit from 1 to 100 and pages without gaps or repeats when creation times are equal', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const { token } = await adminToken(db);
    // Inside one transaction now() does not move: every one of these has the same created_at.
    for (let i = 0; i < 6; i++) await createUser(db);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${encodeURIComponent(cursor)}`;
      const result = await page(app, token, query);
      expect(result.items.length).toBeLessThanOrEqual(2);
      seen.push(...result.items.map((user) => user.id));
      cursor = result.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(seen).toHaveLength(7);
    expect(new Set(seen).size).toBe(7);

    expect((await page(app, token, '?limit=1')).items).toHaveLength(1);
    expect((await page(app, token, '?limit=100')).items).toHaveLength(7);
  });

  test.for(['0', '101', '-1', 'abc', '2.5'])(
    'answers 400 for limit=%s, naming the parameter',
    async (limit, { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const { token } = await adminToken(db);
      const response = await app.inject({ url: `/users?limit=${limit}`, headers: bearer(token) });
      const error = expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
      expect((error.details ?? []).map((detail) => detail.path)).toContain('/querystring/limit');
    },
  );

  test.for([
    ['not base64 JSON', 'garbage'],
    ['JSON of the wrong shape', Buffer.from('{"a":1}').toString('base64url')],
    ['a bad date', Buffer.from('["not a date","00000000-0000-4000-8000-000000000000"]').toString('base64url')],
    ['a bad id', Buffer.from(`["2030-01-01T00:00:00.000Z","'; drop table users; --"]`).toString('base64url')],
    ['far too long', 'A'.repeat(1000)],
  ] as const)('answers 400 for a cursor that is %s', async ([, cursor], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const { token } = await adminToken(db);
    const response = await app.inject({ url: `/users?cursor=${encodeURIComponent(cursor)}`, headers: bearer(token) });
    expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
  });

  test('answers 403 to a user who is not an admin', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    expectError(await app.inject({ url: '/users', headers: bearer(accessTokenFor(user)) }), {
      statusCode: 403,
      type: 'AuthorizationError',
      code: 'FORBIDDEN',
    });
  });

  test('answers 401 without a token', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    expectUnauthorized(await app.inject({ url: '/users' }));
  });

  test('stops serving an admin demoted since the token was issued', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const { admin, token } = await adminToken(db);
    await db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.id).execute();
    expect((await app.inject({ url: '/users', headers: bearer(token) })).statusCode).toBe(403);
  });
});

describe('GET /users/:id', () => {
  test('answers 200 with any user for an admin', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const { token } = await adminToken(db);
    const other = await createUser(db, { email: 'other@example.com', name: 'Other' });

    const response = await app.inject({ url: `/users/${other.id}`, headers: bearer(token) });

    expect(response.statusCode, response.body).toBe(200);
    const body = response.json<{ user: UserJson }>();
    expect(Object.keys(body)).toEqual(['user']);
    expect(expectUserShape(body.user)).toMatchObject({
      id: other.id,
      email: 'other@example.com',
      name: 'Other',
      role: 'user',
    });
  });

  test('answers 200 to a user asking for themself', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const response = await app.inject({ url: `/users/${user.id}`, headers: bearer(accessTokenFor(user)) });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<{ user: UserJson }>().user.id).toBe(user.id);
  });

  test('answers 403 to a user asking for someone else', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const other = await createUser(db);
    const response = await app.inject({ url: `/users/${other.id}`, headers: bearer(accessTokenFor(user)) });
    const error = expectError(response, { statusCode: 403, type: 'AuthorizationError', code: 'FORBIDDEN' });
    expect(JSON.stringify(error)).not.toContain(other.email);
  });

  test('answers 404 NotFoundError for an id nobody has', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const { token } = await adminToken(db);
    const response = await app.inject({ url: '/users/00000000-0000-4000-8000-000000000000', headers: bearer(token) });
    expectError(response, { statusCode: 404, type: 'NotFoundError', code: 'NOT_FOUND' });
  });

  test.for(['not-a-uuid', '123', '00000000-0000-4000-8000-00000000000g'])(
    'answers 400 for the malformed id %s, naming the parameter',
    async (id, { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const { token } = await adminToken(db);
      const response = await app.inject({ url: `/users/${id}`, headers: bearer(token) });
      const error = expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
      expect((error.details ?? []).map((detail) => detail.path)).toContain('/params/id');
    },
  );

  test('answers 401 without a token', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    expectUnauthorized(await app.inject({ url: `/users/${user.id}` }));
  });
});
