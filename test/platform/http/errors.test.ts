import { sql, type ControlledTransaction } from 'kysely';
import type { DB } from '../../../db-types/index.ts';
import { createDatabase } from '../../../src/platform/db/database.ts';
import { LogCapture, testApp } from '../../helpers/app.ts';
import { describe, expect, test, TEST_POOL, type TestDatabase, unreachableDatabase } from '../../helpers/database.ts';
import { createUser, expectError, PASSWORD, postJson, UUID } from '../../helpers/http.ts';

/**
 * A transaction of this test's own on the file's database, always rolled back: faults are
 * injected into it with DDL (a renamed table, a trigger), which must never outlive the test.
 */
async function faultableTransaction(
  database: TestDatabase,
  onFinished: (fn: () => Promise<void>) => void,
): Promise<ControlledTransaction<DB>> {
  const trx = await database.db.startTransaction().execute();
  onFinished(async () => {
    await trx.rollback().execute();
  });
  return trx;
}

/** The failed statement stayed inside its savepoint: the surrounding transaction still works. */
async function expectTransactionUsable(trx: ControlledTransaction<DB>): Promise<void> {
  await expect(sql`select 1`.execute(trx)).resolves.toBeDefined();
}

/** Words a 5xx body must never contain: SQL, constraint and table names, driver messages. */
function expectNothingInternal(body: string): void {
  for (const word of [
    'select',
    'insert',
    'relation',
    'constraint',
    'refresh_tokens',
    'users_',
    'ECONNREFUSED',
    '127.0.0.1',
    'stack',
    ' at ',
  ]) {
    expect(body.toLowerCase()).not.toContain(word.toLowerCase());
  }
}

const register = { email: 'ada@example.com', password: PASSWORD, name: 'Ada' };

describe('the one error shape', () => {
  test('answers an unknown route with 404 NotFoundError', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    for (const [method, url] of [
      ['GET', '/no/such/route'],
      ['PUT', '/auth/me'],
      ['GET', '/auth/login'],
    ] as const) {
      expectError(await app.inject({ method, url }), { statusCode: 404, type: 'NotFoundError', code: 'NOT_FOUND' });
    }
  });

  test('answers a 2 MiB body with 413 PayloadTooLargeError and stores nothing', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await postJson(app, '/auth/register', { ...register, name: 'x'.repeat(2 * 1024 * 1024) });
    expectError(response, { statusCode: 413, type: 'PayloadTooLargeError', code: 'PAYLOAD_TOO_LARGE' });
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });

  test('reads an /auth body just under its 16 KiB limit (and then validates it), and refuses one over it with 413', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const under = await postJson(app, '/auth/register', { ...register, name: 'x'.repeat(16 * 1024 - 200) });
    expectError(under, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED', field: 'name' });
    const over = await postJson(app, '/auth/register', { ...register, name: 'x'.repeat(16 * 1024) });
    expectError(over, { statusCode: 413, type: 'PayloadTooLargeError', code: 'PAYLOAD_TOO_LARGE' });
  });

  test('answers malformed JSON with 400 ValidationError', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: '{"email": "ada@example.com", "password": ',
    });
    expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
  });

  test('answers an empty JSON body with 400 ValidationError', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
  });

  test('answers a body in a media type it does not read with 415 in the one shape', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    for (const type of ['application/x-www-form-urlencoded', 'application/xml']) {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: { 'content-type': type },
        payload: `email=ada@example.com&password=${encodeURIComponent(PASSWORD)}`,
      });
      expectError(response, { statusCode: 415, type: 'UnsupportedMediaTypeError', code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
  });

  test('answers a text/plain body with a 4xx in the one shape, never reading it as credentials', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const response = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ email: user.email, password: PASSWORD }),
    });
    if (response.statusCode === 415) {
      expectError(response, { statusCode: 415, type: 'UnsupportedMediaTypeError', code: 'UNSUPPORTED_MEDIA_TYPE' });
    } else {
      expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    }
  });

  test('answers a JSON body that is not an object with 400 ValidationError', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    for (const payload of ['[]', '"text"', 'null', '42']) {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/login',
        headers: { 'content-type': 'application/json' },
        payload,
      });
      expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED' });
    }
  });
});

describe('x-request-id', () => {
  test('echoes a sane request id in the header and in error bodies', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const ok = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'client-id_1.2:3' } });
    expect(ok.headers['x-request-id']).toBe('client-id_1.2:3');

    const failed = await app.inject({ url: '/nope', headers: { 'x-request-id': 'client-id_1.2:3' } });
    expect(expectError(failed, { statusCode: 404, type: 'NotFoundError', code: 'NOT_FOUND' }).requestId).toBe(
      'client-id_1.2:3',
    );
  });

  test.for([
    ['with spaces', 'has a space'],
    ['with markup', '<script>alert(1)</script>'],
    ['of 200 characters', 'a'.repeat(200)],
    ['that is empty', ''],
    ['with a line-breaking character', 'id\u2028injected'],
  ])('replaces a request id %s with a generated one', async ([, id], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({ url: '/nope', headers: { 'x-request-id': id } });
    const error = expectError(response, { statusCode: 404, type: 'NotFoundError', code: 'NOT_FOUND' });
    expect(error.requestId).toMatch(UUID);
    expect(response.headers['x-request-id']).toBe(error.requestId);
  });

  test('generates a distinct request id for every request that brings none', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const first = await app.inject({ url: '/health/live' });
    const second = await app.inject({ url: '/health/live' });
    expect(first.headers['x-request-id']).toMatch(UUID);
    expect(second.headers['x-request-id']).toMatch(UUID);
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id']);
  });
});

describe('database failures reach the client in the one shape, without internals', () => {
  test('answers 500 InternalError "Internal server error" for an unexpected database error, and logs its cause', async ({
    database,
    onTestFinished,
  }) => {
    const trx = await faultableTransaction(database, onTestFinished);
    const logs = new LogCapture();
    const app = await testApp(trx, onTestFinished, { logStream: logs, env: { LOG_LEVEL: 'error' } });
    const user = await createUser(trx);
    await sql`alter table refresh_tokens rename to refresh_tokens_moved`.execute(trx);

    const response = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });

    const error = expectError(response, { statusCode: 500, type: 'InternalError', code: 'INTERNAL' });
    expect(error.message).toBe('Internal server error');
    expect(error.field).toBeUndefined();
    expect(error.details).toBeUndefined();
    expectNothingInternal(response.body);
    await expectTransactionUsable(trx);
    expect(logs.text).toContain(error.requestId);
    expect(logs.text).toContain('refresh_tokens');
  });

  test('answers 503 DATABASE_UNAVAILABLE with retry-after when the database is down, never "invalid credentials"', async ({
    onTestFinished,
  }) => {
    const down = unreachableDatabase(onTestFinished);
    const app = await testApp(down, onTestFinished);

    const response = await postJson(app, '/auth/login', { email: 'ada@example.com', password: PASSWORD });

    const error = expectError(response, {
      statusCode: 503,
      type: 'ServiceUnavailableError',
      code: 'DATABASE_UNAVAILABLE',
    });
    expect(error.message).toBe('Service unavailable');
    expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
    expectNothingInternal(response.body);
  });

  test('answers 503 POOL_EXHAUSTED with retry-after when no connection frees up in time', async ({
    database,
    onTestFinished,
  }) => {
    const small = createDatabase({ ...TEST_POOL, url: database.url, poolMax: 1, connectionTimeoutMs: 200 });
    const held = await small.startTransaction().execute();
    onTestFinished(async () => {
      await held.rollback().execute();
      await small.destroy();
    });
    const app = await testApp(small, onTestFinished);

    const response = await postJson(app, '/auth/login', { email: 'ada@example.com', password: PASSWORD });

    expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code: 'POOL_EXHAUSTED' });
    expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
    expectNothingInternal(response.body);
  });

  test('answers 503 QUERY_TIMEOUT with retry-after when a statement runs past its timeout', async ({
    database,
    onTestFinished,
  }) => {
    const trx = await faultableTransaction(database, onTestFinished);
    const app = await testApp(trx, onTestFinished);
    await sql`create function slow_insert() returns trigger language plpgsql as $$ begin perform pg_sleep(2); return new; end $$`.execute(
      trx,
    );
    await sql`create trigger slow_insert before insert on users for each row execute function slow_insert()`.execute(
      trx,
    );
    await sql`set local statement_timeout = '200ms'`.execute(trx);

    const response = await postJson(app, '/auth/register', register);

    await sql`set local statement_timeout = 0`.execute(trx);
    expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code: 'QUERY_TIMEOUT' });
    expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
    expectNothingInternal(response.body);
    await expectTransactionUsable(trx);
  });

  test('answers 409 ConflictError SERIALIZATION_FAILURE for a serialization failure', async ({
    database,
    onTestFinished,
  }) => {
    const trx = await faultableTransaction(database, onTestFinished);
    const app = await testApp(trx, onTestFinished);
    await sql`create function conflicting_insert() returns trigger language plpgsql as $$ begin raise exception 'could not serialize access' using errcode = '40001'; end $$`.execute(
      trx,
    );
    await sql`create trigger conflicting_insert before insert on users for each row execute function conflicting_insert()`.execute(
      trx,
    );

    const response = await postJson(app, '/auth/register', register);

    expectError(response, { statusCode: 409, type: 'ConflictError', code: 'SERIALIZATION_FAILURE' });
    expectNothingInternal(response.body);
    await expectTransactionUsable(trx);
  });

  test('answers 409 ConflictError FOREIGN_KEY_VIOLATION for a referential conflict, without the constraint name', async ({
    database,
    onTestFinished,
  }) => {
    const trx = await faultableTransaction(database, onTestFinished);
    const app = await testApp(trx, onTestFinished);
    const user = await createUser(trx);
    // Every new refresh token now points at a user who does not exist.
    await sql`create function orphan_token() returns trigger language plpgsql as $$ begin new.user_id := gen_random_uuid(); return new; end $$`.execute(
      trx,
    );
    await sql`create trigger orphan_token before insert on refresh_tokens for each row execute function orphan_token()`.execute(
      trx,
    );

    const response = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });

    expectError(response, { statusCode: 409, type: 'ConflictError', code: 'FOREIGN_KEY_VIOLATION' });
    expect(response.body).not.toContain('refresh_tokens_user_id_fkey');
    expect(response.body).not.toContain(user.id);
    await expectTransactionUsable(trx);
  });
});
