import { sql } from 'kysely';
import pg from 'pg';
import { isConnectionLost, translateDatabaseError } from '../../../src/platform/db/errors.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import { ForeignKeyError, UniqueConstraintError, ValidationError } from '../../../src/platform/errors/index.ts';
import { causeOf, failure } from '../../helpers/assertions.ts';
import { describe, expect, test } from '../../helpers/database.ts';

/**
 * Violations whose constraint nobody mapped and whose detail names no single column: the error
 * still has its class and status, and a message that does not pretend to know the field.
 */
describe('translateDatabaseError: violations that name no field', () => {
  test('a duplicate on an expression index is a UniqueConstraintError for "a unique field"', async ({ db }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create temp table slots (day int, hour int)`.execute(trx);
        await sql`create unique index slots_at_uq on slots ((day * 24 + hour))`.execute(trx);
        await sql`insert into slots values (1, 0), (0, 24)`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect(error).toMatchObject({
      statusCode: 409,
      code: 'UNIQUE_VIOLATION',
      field: undefined,
      message: 'Duplicate value for a unique field',
    });
    expect(causeOf(error)).toMatchObject({ code: '23505', constraint: 'slots_at_uq' });
  });

  test('a missing row of a two-column foreign key is a ForeignKeyError without a field', async ({ db }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create temp table rooms (building int, number int, primary key (building, number))`.execute(trx);
        await sql`create temp table bookings (building int, number int, foreign key (building, number) references rooms)`.execute(
          trx,
        );
        await sql`insert into bookings values (1, 101)`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ForeignKeyError);
    expect(error).toMatchObject({
      statusCode: 409,
      code: 'FOREIGN_KEY_VIOLATION',
      field: undefined,
      message: 'Referenced record does not exist or is still referenced',
    });
    expect(causeOf(error)).toMatchObject({ code: '23503' });
  });

  test('a null in a NOT NULL domain (no column in the error) is a ValidationError for "a required value"', async ({
    db,
  }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create domain pg_temp.required_int as int not null`.execute(trx);
        await sql`select null::pg_temp.required_int`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({
      statusCode: 400,
      code: 'VALIDATION_FAILED',
      field: undefined,
      message: 'A required value must not be null',
    });
    expect(causeOf(error)).toMatchObject({ code: '23502' });
  });

  test('a failed check constraint nobody mapped is a ValidationError for "a checked field"', async ({ db }) => {
    const error = await failure(
      withTransaction(db, async (trx) => {
        await sql`create temp table prices (amount int constraint prices_positive check (amount > 0))`.execute(trx);
        await sql`insert into prices values (-5)`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({
      statusCode: 400,
      code: 'VALIDATION_FAILED',
      field: undefined,
      message: 'Invalid value for a checked field',
    });
    expect(causeOf(error)).toMatchObject({ code: '23514', constraint: 'prices_positive' });
  });
});

describe('isConnectionLost', () => {
  test('keeps a connection whose statement merely failed (a syntax error)', async ({ database }) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const error = await failure(client.query('selec 1'));
      expect(error).toMatchObject({ code: '42601', severity: 'ERROR' });
      expect(isConnectionLost(error)).toBe(false);
      // …and the connection indeed still works.
      expect((await client.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await client.end();
    }
  });

  test('drops a connection whose backend was terminated (FATAL 57P01)', async ({ database }) => {
    const victim = new pg.Client({ connectionString: database.url });
    victim.on('error', () => {});
    await victim.connect();
    const killer = new pg.Client({ connectionString: database.url });
    await killer.connect();
    try {
      const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
      const error = await failure(
        Promise.all([
          victim.query('select pg_sleep(10)'),
          killer.query('select pg_terminate_backend($1)', [rows[0]?.pid]),
        ]),
      );
      expect(error).toMatchObject({ code: '57P01', severity: 'FATAL' });
      expect(isConnectionLost(error)).toBe(true);
    } finally {
      await killer.end();
      await victim.end().catch(() => undefined);
    }
  });

  test('drops a connection on a connection-class SQLSTATE or a lost socket, and ignores what is not an error object', () => {
    expect(isConnectionLost({ code: '08006', message: 'connection failure' })).toBe(true);
    expect(isConnectionLost(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionLost('Connection terminated unexpectedly')).toBe(false);
    expect(isConnectionLost(null)).toBe(false);
    expect(translateDatabaseError({ code: '08006' })).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });
  });
});
