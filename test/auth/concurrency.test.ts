import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { createUser, expectError, login, PASSWORD, postJson, type UserJson } from '../helpers/http.ts';

// These run on committed data in a database of their own, so racing requests really use separate
// connections and separate transactions.
describe('concurrent requests', () => {
  test('lets exactly one of ten racing registrations of one email win; the nine others get 409 on email', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_REGISTER: '100' } });
    const spellings = [
      'race@example.com',
      'RACE@example.com',
      ' race@example.com',
      'Race@Example.Com ',
      '\uFF52ace@example.com',
    ];

    const responses = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        postJson(app, '/auth/register', {
          email: spellings[i % spellings.length],
          password: PASSWORD,
          name: `Racer ${i}`,
        }),
      ),
    );

    const statuses = responses.map((response) => response.statusCode).sort();
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    for (const response of responses.filter((r) => r.statusCode === 409)) {
      expectError(response, {
        statusCode: 409,
        type: 'UniqueConstraintError',
        code: 'UNIQUE_VIOLATION',
        field: 'email',
      });
    }
    const winner = responses.find((response) => response.statusCode === 201)?.json<{ user: UserJson }>().user;
    const rows = await db.selectFrom('users').select(['id', 'email']).execute();
    expect(rows).toEqual([{ id: winner?.id, email: 'race@example.com' }]);
  });

  test('with the reuse interval off, rotates a refresh token presented by several racing requests exactly once', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished, { env: { REFRESH_REUSE_INTERVAL_SECONDS: '0' } });
    const user = await createUser(db);
    const { refreshToken } = await login(app, user.email);

    const responses = await Promise.all(
      Array.from({ length: 5 }, () => postJson(app, '/auth/refresh', { refreshToken })),
    );

    const statuses = responses.map((response) => response.statusCode).sort();
    expect(statuses).toEqual([200, 401, 401, 401, 401]);
    // The losers presented a token that was already rotated: that is reuse, and the family is revoked.
    const live = await db.selectFrom('refresh_tokens').select('id').where('revoked_at', 'is', null).execute();
    expect(live).toEqual([]);
  });

  test('within the reuse interval, ten racing refreshes of one token all get the same successor, and only one lives', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { refreshToken } = await login(app, user.email);

    const responses = await Promise.all(
      Array.from({ length: 10 }, () => postJson(app, '/auth/refresh', { refreshToken })),
    );

    expect(responses.map((response) => response.statusCode)).toEqual(Array.from({ length: 10 }, () => 200));
    const successors = new Set(responses.map((response) => response.json<{ refreshToken: string }>().refreshToken));
    expect(successors.size).toBe(1);
    const live = await db
      .selectFrom('refresh_tokens')
      .select('id')
      .where('user_id', '=', user.id)
      .where('revoked_at', 'is', null)
      .where('rotated_at', 'is', null)
      .execute();
    expect(live).toHaveLength(1);
    const [successor] = successors;
    expect((await postJson(app, '/auth/refresh', { refreshToken: successor })).statusCode).toBe(200);
  });

  test('serves racing logins of one account without conflicts', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);

    const responses = await Promise.all(
      Array.from({ length: 4 }, () => postJson(app, '/auth/login', { email: user.email, password: PASSWORD })),
    );

    expect(responses.map((response) => response.statusCode)).toEqual([200, 200, 200, 200]);
    const families = await db.selectFrom('refresh_tokens').select('family_id').where('user_id', '=', user.id).execute();
    expect(new Set(families.map((row) => row.family_id)).size).toBe(4);
  });
});
