import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { DB } from '../../../db-types/index.ts';
import { createDatabase, type PoolConfig } from '../../../src/platform/db/database.ts';
import { translateDatabaseError } from '../../../src/platform/db/errors.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import {
  AppError,
  ConflictError,
  DatabaseError,
  ForeignKeyError,
  InternalError,
  NotFoundError,
  SerializationError,
  ServiceUnavailableError,
  UniqueConstraintError,
  ValidationError,
} from '../../../src/platform/errors/index.ts';
import { RefreshTokenRepository } from '../../../src/sessions/refresh-tokens.repository.ts';
import { UserRepository } from '../../../src/users/users.repository.ts';
import { causeOf, failure } from '../../helpers/assertions.ts';
import { waitFor } from '../../helpers/processes.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../../helpers/database.ts';

/** Asserts that `error` kept the server's own error, with this SQLSTATE, as its cause. */
function expectDriverCause(error: unknown, sqlState: string): void {
  const cause = causeOf(error);
  expect(cause).toBeInstanceOf(pg.DatabaseError);
  expect(cause).toMatchObject({ code: sqlState });
}

const user = (email: string) => ({ email, name: 'Ada Lovelace', passwordHash: 'hash' });

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve, reject) => {
    server.close((error) => {
      if (error) reject(error);
      else resolve();
    });
  });
  if (address === null || typeof address === 'string') throw new Error('Expected a TCP address');
  return address.port;
}

/**
 * A server that speaks just enough of the PostgreSQL protocol to refuse a client: it answers the
 * startup message with `answer(socket)` (or, if that does nothing, never answers). For failures a healthy local server cannot be made to
 * produce (a server shutting down, a broken connection); the `pg` driver still builds the error.
 */
async function refusingServer(
  answer: (socket: net.Socket) => void,
  onFinished: (fn: () => Promise<void>) => void,
): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', () => {
      answer(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('Expected a TCP address');
  return `postgres://app:secret@127.0.0.1:${address.port}/app`;
}

/** A protocol ErrorResponse message: severity FATAL, this SQLSTATE and message. */
function fatalErrorMessage(sqlState: string, message: string): Buffer {
  const fields = Buffer.concat(
    [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', sqlState],
      ['M', message],
    ].map(([type = '', value = '']) => Buffer.from(`${type}${value}\0`, 'utf8')),
  );
  const body = Buffer.concat([fields, Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/** A root database with a pool of its own; destroyed when the test ends. */
function databaseAt(
  url: string,
  onFinished: (fn: () => Promise<void>) => void,
  pool: Partial<Pick<PoolConfig, 'poolMax' | 'connectionTimeoutMs'>> = {},
): Kysely<DB> {
  const db = createDatabase({ ...TEST_POOL, ...pool, url });
  onFinished(async () => {
    await db.destroy();
  });
  return db;
}

describe('translateDatabaseError: integrity violations', () => {
  test('maps a duplicate email (23505 on users_email_unique) to UniqueConstraintError on field email', async ({
    db,
  }) => {
    await new UserRepository(db).create(user('ada@example.com'));
    const error = await failure(withTransaction(db, (trx) => new UserRepository(trx).create(user('ada@example.com'))));
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect(error).toMatchObject({ statusCode: 409, code: 'UNIQUE_VIOLATION', field: 'email' });
    expectDriverCause(error, '23505');
    expect(causeOf(error)).toMatchObject({ constraint: 'users_email_unique' });
  });

  test('names the field of an unmapped unique constraint from the detail (23505 fallback)', async ({ db }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create temp table coupons (promo_code text constraint coupons_code_uq unique)`.execute(trx);
        await sql`insert into coupons (promo_code) values ('SPRING'), ('SPRING')`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect(error).toMatchObject({ statusCode: 409, code: 'UNIQUE_VIOLATION', field: 'promoCode' });
    expectDriverCause(error, '23505');
    expect(causeOf(error)).toMatchObject({ constraint: 'coupons_code_uq' });
  });

  test('maps a refresh token for a missing user (23503) to ForeignKeyError on field userId', async ({ db }) => {
    const error = await failure(
      withTransaction(db, (trx) =>
        new RefreshTokenRepository(trx).insert({
          userId: randomUUID(),
          familyId: randomUUID(),
          tokenHash: 'f'.repeat(64),
          expiresAt: new Date(Date.now() + 60_000),
        }),
      ),
    );
    expect(error).toBeInstanceOf(ForeignKeyError);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ statusCode: 409, code: 'FOREIGN_KEY_VIOLATION', field: 'userId' });
    expectDriverCause(error, '23503');
    expect(causeOf(error)).toMatchObject({ constraint: 'refresh_tokens_user_id_fkey' });
  });

  test('names the field of an unmapped foreign key from the detail (23503 fallback)', async ({ db }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        // A temporary table may only refer to another temporary table.
        await sql`create temp table authors (id int primary key)`.execute(trx);
        await sql`create temp table notes (author_id int constraint notes_author_fk references authors (id))`.execute(
          trx,
        );
        await sql`insert into notes (author_id) values (42)`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ForeignKeyError);
    expect(error).toMatchObject({ statusCode: 409, code: 'FOREIGN_KEY_VIOLATION', field: 'authorId' });
    expectDriverCause(error, '23503');
  });

  test('maps a missing required column (23502) to ValidationError naming the field in camelCase', async ({ db }) => {
    const error = await failure(
      withTransaction(db, (trx) =>
        sql`insert into users (email, password_hash, name) values ('ada@example.com', null, 'Ada')`.execute(trx),
      ),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED', field: 'passwordHash' });
    expectDriverCause(error, '23502');
  });

  test('maps a failed role check (23514 on users_role_check) to ValidationError on field role', async ({ db }) => {
    const error = await failure(
      withTransaction(db, (trx) =>
        sql`insert into users (email, password_hash, name, role) values ('ada@example.com', 'h', 'Ada', 'owner')`.execute(
          trx,
        ),
      ),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED', field: 'role' });
    expectDriverCause(error, '23514');
    expect(causeOf(error)).toMatchObject({ constraint: 'users_role_check' });
  });
});

describe('translateDatabaseError: data exceptions', () => {
  test('maps a malformed uuid (22P02) to ValidationError', async ({ db }) => {
    const error = await failure(withTransaction(db, (trx) => new UserRepository(trx).findById('not-a-uuid')));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
    expectDriverCause(error, '22P02');
  });

  test('maps a value too long for its column (22001) to ValidationError', async ({ db }) => {
    // An explicit cast ('abc'::varchar(1)) truncates silently; only storing the value raises 22001.
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create temp table short_codes (code varchar(1))`.execute(trx);
        await sql`insert into short_codes (code) values (${'abc'})`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
    expectDriverCause(error, '22001');
  });

  test('maps a number out of range (22003) to ValidationError', async ({ db }) => {
    const error = await failure(withTransaction(db, (trx) => sql`select 2147483648::int4`.execute(trx)));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
    expectDriverCause(error, '22003');
  });
});

describe('translateDatabaseError: concurrency', () => {
  test('maps a serialization failure (40001) between two serializable transactions to SerializationError', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const { id } = await new UserRepository(db).create(user('ada@example.com'));
    const first = await db.startTransaction().setIsolationLevel('serializable').execute();
    const second = await db.startTransaction().setIsolationLevel('serializable').execute();
    try {
      await first.selectFrom('users').select('name').where('id', '=', id).execute();
      await second.selectFrom('users').select('name').where('id', '=', id).execute();
      await first.updateTable('users').set({ name: 'First' }).where('id', '=', id).execute();
      await first.commit().execute();

      const error = await failure(second.updateTable('users').set({ name: 'Second' }).where('id', '=', id).execute());
      expect(error).toBeInstanceOf(SerializationError);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ statusCode: 409, code: 'SERIALIZATION_FAILURE' });
      expectDriverCause(error, '40001');
    } finally {
      if (!first.isCommitted && !first.isRolledBack) await first.rollback().execute();
      await second.rollback().execute();
    }
    expect((await new UserRepository(db).findById(id))?.name).toBe('First');
  });

  test('maps a deadlock (40P01) between two connections to SerializationError', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const users = new UserRepository(db);
    const a = await users.create(user('a@example.com'));
    const b = await users.create(user('b@example.com'));
    const first = await db.startTransaction().execute();
    const second = await db.startTransaction().execute();
    try {
      // The second connection runs the deadlock check (quickly); the first would wait for ever.
      await sql`select set_config('deadlock_timeout', '10s', true)`.execute(first);
      await sql`select set_config('deadlock_timeout', '20ms', true)`.execute(second);
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(first);
      const firstPid = rows[0]?.pid;

      await first.updateTable('users').set({ name: 'First' }).where('id', '=', a.id).execute();
      await second.updateTable('users').set({ name: 'Second' }).where('id', '=', b.id).execute();
      const firstWaits = first.updateTable('users').set({ name: 'First' }).where('id', '=', b.id).execute();
      await waitFor(
        'the first transaction to wait for the lock',
        async () => {
          const { rows: waiting } = await sql<{ waiting: boolean }>`
          select exists (select from pg_stat_activity where pid = ${firstPid} and wait_event_type = 'Lock') as waiting
        `.execute(db);
          return waiting[0]?.waiting === true;
        },
        2_000,
        10,
      );

      const error = await failure(second.updateTable('users').set({ name: 'Second' }).where('id', '=', a.id).execute());
      await second.rollback().execute();
      await firstWaits;
      await first.commit().execute();

      expect(error).toBeInstanceOf(SerializationError);
      expect(error).toMatchObject({ statusCode: 409, code: 'SERIALIZATION_FAILURE' });
      expectDriverCause(error, '40P01');
    } finally {
      // The second first: while it holds its lock, the first may still be waiting for it.
      if (!second.isRolledBack) await second.rollback().execute();
      if (!first.isCommitted && !first.isRolledBack) await first.rollback().execute();
    }
  });
});

describe('translateDatabaseError: timeouts and an unavailable database', () => {
  test('maps a statement timeout (57014) to ServiceUnavailableError QUERY_TIMEOUT', async ({ db }) => {
    const started = performance.now();
    const error = await failure(
      withTransaction(db, (trx) => sql`select pg_sleep(5)`.execute(trx), { statementTimeoutMs: 50 }),
    );
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'QUERY_TIMEOUT', retryAfterSeconds: 1 });
    expectDriverCause(error, '57014');
  });

  test('maps too many connections (53300) to ServiceUnavailableError DATABASE_UNAVAILABLE', async ({
    database,
    onTestFinished,
  }) => {
    // A role allowed no connections at all; superusers are exempt from such limits.
    const role = `vitest_limited_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await sql`create role ${sql.id(role)} login connection limit 0 password ${sql.lit(password)}`.execute(database.db);
    onTestFinished(async () => {
      await sql`drop role if exists ${sql.id(role)}`.execute(database.db);
    });
    const url = new URL(database.url);
    url.username = role;
    url.password = password;

    const error = await failure(sql`select 1`.execute(databaseAt(url.href, onTestFinished)));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
    expectDriverCause(error, '53300');
  });

  test('maps a terminated backend (57P01) to DATABASE_UNAVAILABLE, and the next query gets a fresh connection', async ({
    database,
  }) => {
    const marker = `victim_${randomBytes(4).toString('hex')}`;
    const victim = failure(sql`select pg_sleep(5) as ${sql.ref(marker)}`.execute(database.db));
    let pid: number | undefined;
    await waitFor(
      'the sleeping query to start',
      async () => {
        const { rows } = await sql<{ pid: number }>`
        select pid from pg_stat_activity where query like ${`%${marker}%`} and pid <> pg_backend_pid() and state = 'active'
      `.execute(database.db);
        pid = rows[0]?.pid;
        return pid !== undefined;
      },
      2_000,
      10,
    );
    await sql`select pg_terminate_backend(${pid})`.execute(database.db);

    const error = await victim;
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
    expectDriverCause(error, '57P01');

    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(database.db);
    expect(rows[0]?.pid).toEqual(expect.any(Number));
    expect(rows[0]?.pid).not.toBe(pid);
    expect(database.pool.totalCount).toBe(database.pool.idleCount);
  });

  test.for([
    ['08006', 'connection failure'],
    ['08P01', 'protocol violation'],
    ['57P02', 'crash shutdown'],
    ['57P03', 'the database system is starting up'],
  ] as const)(
    'maps SQLSTATE %s (%s) at connect to DATABASE_UNAVAILABLE',
    async ([sqlState, message], { onTestFinished }) => {
      const url = await refusingServer((socket) => socket.end(fatalErrorMessage(sqlState, message)), onTestFinished);
      const error = await failure(sql`select 1`.execute(databaseAt(url, onTestFinished)));
      expect(error).toBeInstanceOf(ServiceUnavailableError);
      expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
      expectDriverCause(error, sqlState);
    },
  );

  test('maps a refused connection (ECONNREFUSED) to DATABASE_UNAVAILABLE', async ({ onTestFinished }) => {
    const db = databaseAt(`postgres://app:secret@127.0.0.1:${await closedPort()}/app`, onTestFinished);
    const error = await failure(sql`select 1`.execute(db));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
    expect(causeOf(error)).toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('maps a connection reset by the server (ECONNRESET) to DATABASE_UNAVAILABLE', async ({ onTestFinished }) => {
    const url = await refusingServer((socket) => socket.resetAndDestroy(), onTestFinished);
    const error = await failure(sql`select 1`.execute(databaseAt(url, onTestFinished)));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
    expect(causeOf(error)).toMatchObject({ code: 'ECONNRESET' });
  });

  test('maps a server that does not answer within connectionTimeoutMs to DATABASE_UNAVAILABLE', async ({
    onTestFinished,
  }) => {
    const url = await refusingServer(() => {}, onTestFinished);
    const started = performance.now();
    const error = await failure(sql`select 1`.execute(databaseAt(url, onTestFinished, { connectionTimeoutMs: 200 })));
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
    expect(causeOf(error)).toMatchObject({ message: 'Connection terminated due to connection timeout' });
  });

  test('gives POOL_EXHAUSTED within the configured wait when every connection is held', async ({
    database,
    onTestFinished,
  }) => {
    const connectionTimeoutMs = 300;
    const db = databaseAt(database.url, onTestFinished, { poolMax: 2, connectionTimeoutMs });
    const held = [await db.startTransaction().execute(), await db.startTransaction().execute()];
    try {
      const started = performance.now();
      const error = await failure(sql`select 1`.execute(db));
      const waited = performance.now() - started;

      expect(waited).toBeGreaterThanOrEqual(connectionTimeoutMs - 50);
      expect(waited).toBeLessThan(connectionTimeoutMs + 1_000);
      expect(error).toBeInstanceOf(ServiceUnavailableError);
      expect(error).toMatchObject({ statusCode: 503, code: 'POOL_EXHAUSTED', retryAfterSeconds: 1 });
      expect(causeOf(error)).toMatchObject({ message: 'timeout exceeded when trying to connect' });
    } finally {
      for (const trx of held) await trx.rollback().execute();
    }
    // Once the connections are back, the same pool serves queries again.
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows).toEqual([{ one: 1 }]);
  });
});

describe('translateDatabaseError: anything else', () => {
  test('maps an error of no known category (42P01, undefined table) to a 500 DatabaseError', async ({ db }) => {
    const error = await failure(withTransaction(db, (trx) => sql`select * from no_such_table`.execute(trx)));
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toBeInstanceOf(InternalError);
    expect(error).toMatchObject({ statusCode: 500, code: 'INTERNAL', type: 'InternalError' });
    expectDriverCause(error, '42P01');
    // The server's message names a table; the client never reads it.
    expect(JSON.stringify((error as AppError).toJSON('req-1'))).not.toContain('no_such_table');
  });

  test('maps a thrown value that is not an error object to a DatabaseError that keeps it as cause', () => {
    const error = translateDatabaseError('socket hang up');
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error.cause).toBe('socket hang up');
  });

  test('passes an AppError through unchanged', () => {
    const notFound = new NotFoundError('User not found');
    expect(translateDatabaseError(notFound)).toBe(notFound);
  });
});

describe('AppError.toJSON', () => {
  const details = [{ path: '/email', message: 'must match format "email"' }];

  test('gives a 4xx error its message, code, field and details', () => {
    const error = new ValidationError('Invalid email', { field: 'email', details });
    expect(error.toJSON('req-1')).toEqual({
      error: {
        type: 'ValidationError',
        message: 'Invalid email',
        statusCode: 400,
        code: 'VALIDATION_FAILED',
        requestId: 'req-1',
        field: 'email',
        details,
      },
    });
  });

  test('leaves out field and details that a 4xx error does not have', () => {
    expect(new NotFoundError('User not found').toJSON('req-2')).toEqual({
      error: {
        type: 'NotFoundError',
        message: 'User not found',
        statusCode: 404,
        code: 'NOT_FOUND',
        requestId: 'req-2',
      },
    });
  });

  test('keeps the field of a translated conflict', () => {
    const error = new UniqueConstraintError('Duplicate value for email', { field: 'email' });
    expect(error.toJSON('req-3').error).toMatchObject({ statusCode: 409, code: 'UNIQUE_VIOLATION', field: 'email' });
  });

  test('says only "Service unavailable" for a 503, without field or details', () => {
    const error = new ServiceUnavailableError('pool of db-primary:5432 exhausted', 'POOL_EXHAUSTED', {
      field: 'email',
      details,
      cause: new Error('timeout exceeded when trying to connect'),
    });
    expect(error.toJSON('req-4')).toEqual({
      error: {
        type: 'ServiceUnavailableError',
        message: 'Service unavailable',
        statusCode: 503,
        code: 'POOL_EXHAUSTED',
        requestId: 'req-4',
      },
    });
  });

  test('says only "Internal server error" for a 500, without field, details or cause', () => {
    const error = new DatabaseError('relation "secret_table" does not exist', {
      field: 'id',
      details,
      cause: new Error('relation "secret_table" does not exist'),
    });
    const body = error.toJSON('req-5');
    expect(body).toEqual({
      error: {
        type: 'InternalError',
        message: 'Internal server error',
        statusCode: 500,
        code: 'INTERNAL',
        requestId: 'req-5',
      },
    });
    expect(JSON.stringify(body)).not.toContain('secret_table');
  });

  test('uses an empty request id when none is given', () => {
    expect(new NotFoundError().toJSON().error.requestId).toBe('');
  });
});
