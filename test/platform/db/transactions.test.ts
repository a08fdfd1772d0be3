import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { DB } from '../../../db-types/index.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import {
  ConflictError,
  DatabaseError,
  SerializationError,
  ServiceUnavailableError,
  UniqueConstraintError,
} from '../../../src/platform/errors/index.ts';
import { UserRepository } from '../../../src/users/users.repository.ts';
import { causeOf, failure } from '../../helpers/assertions.ts';
import { waitFor } from '../../helpers/processes.ts';
import {
  describe,
  expect,
  isolatedDatabase,
  test as base,
  TEST_POOL,
  type TestDatabase,
} from '../../helpers/database.ts';

const user = (email: string) => ({ email, name: 'Ada Lovelace', passwordHash: 'hash' });

/**
 * `committed`: a database of this file's own, for tests whose transactions commit and race on
 * separate connections. Cloned once per file, dropped at its end, and emptied after every test.
 */
const test = base
  .extend('sharedCommitted', { scope: 'file' }, ({}, { onCleanup }) => isolatedDatabase(onCleanup))
  .extend('committed', ({ sharedCommitted }, { onCleanup }) => {
    onCleanup(async () => {
      await withTransaction(sharedCommitted.db, (trx) => sql`truncate users cascade`.execute(trx), {
        statementTimeoutMs: 5_000,
      });
    });
    return sharedCommitted;
  });

/** Committed emails, read on a connection of their own. */
async function committedEmails(db: Kysely<DB>): Promise<string[]> {
  const rows = await db.selectFrom('users').select('email').orderBy('email').execute();
  return rows.map((row) => row.email);
}

async function backendPid(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
  const pid = rows[0]?.pid;
  if (pid === undefined) throw new Error('No backend pid');
  return pid;
}

async function setting(db: Kysely<DB>, name: 'transaction_isolation' | 'transaction_read_only' | 'statement_timeout') {
  const { rows } = await sql<{ value: string }>`select current_setting(${name}) as value`.execute(db);
  return rows[0]?.value;
}

/** Every connection of the pool is back and idle, and nobody waits for one. */
function expectPoolIdle({ pool }: TestDatabase): void {
  expect({ waiting: pool.waitingCount, busy: pool.totalCount - pool.idleCount }).toEqual({ waiting: 0, busy: 0 });
}

/**
 * Commits a change to the user's name from another connection, in a serializable transaction of
 * its own: a transaction that read the row before and updates it after can no longer be serialized.
 */
async function concurrentRename(db: Kysely<DB>, id: string, name: string): Promise<void> {
  await withTransaction(db, (other) => other.updateTable('users').set({ name }).where('id', '=', id).execute(), {
    isolationLevel: 'serializable',
  });
}

describe('withTransaction on the root database', () => {
  test('commits the work when the callback resolves, and returns its result', async ({ committed }) => {
    const { db } = committed;
    const created = await withTransaction(db, (trx) => new UserRepository(trx).create(user('ada@example.com')));
    expect(created.email).toBe('ada@example.com');
    expect(await committedEmails(db)).toEqual(['ada@example.com']);
  });

  test('rolls back all the work when the callback throws, and rethrows the same error', async ({ committed }) => {
    const { db } = committed;
    const boom = new Error('boom');
    const error = await failure(
      withTransaction(db, async (trx) => {
        await new UserRepository(trx).create(user('ada@example.com'));
        throw boom;
      }),
    );
    expect(error).toBe(boom);
    expect(await committedEmails(db)).toEqual([]);
  });

  test('reports a failure at commit (a deferred constraint) as its AppError and releases the connection', async ({
    database,
  }) => {
    const error = await failure(
      withTransaction(database.db, async (trx) => {
        await sql`
          create temp table seats (seat int constraint seats_seat_uq unique deferrable initially deferred) on commit drop
        `.execute(trx);
        await sql`insert into seats (seat) values (1), (1)`.execute(trx);
        return 'committed';
      }),
    );
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect(error).toMatchObject({ statusCode: 409, field: 'seat' });
    expect(causeOf(error)).toMatchObject({ code: '23505' });
    expectPoolIdle(database);
  });

  test('does not commit a unit that swallowed a failed statement, and reports a 500', async ({ committed }) => {
    const iso = committed;
    const error = await failure(
      withTransaction(iso.db, async (trx) => {
        await new UserRepository(trx).create(user('ada@example.com'));
        await sql`select 1/0`.execute(trx).catch(() => undefined);
        return 'committed';
      }),
    );
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ statusCode: 500, code: 'INTERNAL' });
    expect(causeOf(error)).toMatchObject({ name: 'AbortedTransactionError' });
    expect(await committedEmails(iso.db)).toEqual([]);
    expectPoolIdle(iso);
  });

  test('starts the transaction at the requested isolation level, read committed by default', async ({ database }) => {
    expect(await withTransaction(database.db, (trx) => setting(trx, 'transaction_isolation'))).toBe('read committed');
    for (const isolationLevel of ['repeatable read', 'serializable'] as const) {
      const level = await withTransaction(database.db, (trx) => setting(trx, 'transaction_isolation'), {
        isolationLevel,
      });
      expect(level).toBe(isolationLevel);
    }
  });

  test('starts a read-only transaction when asked, in which a write fails', async ({ database }) => {
    const readOnly = await withTransaction(database.db, (trx) => setting(trx, 'transaction_read_only'), {
      accessMode: 'read only',
    });
    expect(readOnly).toBe('on');
    expect(await withTransaction(database.db, (trx) => setting(trx, 'transaction_read_only'))).toBe('off');

    const error = await failure(
      withTransaction(database.db, (trx) => new UserRepository(trx).create(user('ada@example.com')), {
        accessMode: 'read only',
      }),
    );
    expect(error).toBeInstanceOf(DatabaseError);
    expect(causeOf(error)).toMatchObject({ code: '25006' });
    expectPoolIdle(database);
  });
});

describe('nested units of work', () => {
  test('rolls back only a failing inner unit; the outer goes on and commits its own work', async ({ committed }) => {
    const { db } = committed;
    await withTransaction(db, async (outer) => {
      const users = new UserRepository(outer);
      await users.create(user('outer-before@example.com'));
      const inner = await failure(
        withTransaction(outer, async (trx) => {
          await new UserRepository(trx).create(user('inner@example.com'));
          await new UserRepository(trx).create(user('OUTER-BEFORE@example.com'));
        }),
      );
      expect(inner).toBeInstanceOf(UniqueConstraintError);
      await users.create(user('outer-after@example.com'));
    });
    expect(await committedEmails(db)).toEqual(['outer-after@example.com', 'outer-before@example.com']);
  });

  test('keeps a successful inner unit when the outer commits', async ({ committed }) => {
    const { db } = committed;
    const inner = await withTransaction(db, async (outer) => {
      await new UserRepository(outer).create(user('outer@example.com'));
      return withTransaction(outer, (trx) => new UserRepository(trx).create(user('inner@example.com')));
    });
    expect(inner.email).toBe('inner@example.com');
    expect(await committedEmails(db)).toEqual(['inner@example.com', 'outer@example.com']);
  });

  test('rolls back everything, a released inner savepoint included, when the outer fails', async ({ committed }) => {
    const { db } = committed;
    const boom = new Error('outer failed after the inner unit succeeded');
    const error = await failure(
      withTransaction(db, async (outer) => {
        await new UserRepository(outer).create(user('outer@example.com'));
        await withTransaction(outer, (trx) => new UserRepository(trx).create(user('inner@example.com')));
        expect(await committedEmails(db)).toEqual([]);
        throw boom;
      }),
    );
    expect(error).toBe(boom);
    expect(await committedEmails(db)).toEqual([]);
  });

  test('unwinds three levels: a failure rolls back its own level and those inside it, nothing more', async ({
    committed,
  }) => {
    const { db } = committed;
    const create = (trx: Kysely<DB>, email: string) => new UserRepository(trx).create(user(email));
    await withTransaction(db, async (first) => {
      await create(first, 'a@example.com');
      await withTransaction(first, async (second) => {
        await create(second, 'b@example.com');
        await failure(
          withTransaction(second, async (third) => {
            await create(third, 'c@example.com');
            throw new Error('third level fails');
          }),
        );
        await create(second, 'd@example.com');
      });
      await failure(
        withTransaction(first, async (second) => {
          await create(second, 'e@example.com');
          await withTransaction(second, (third) => create(third, 'f@example.com'));
          throw new Error('second level fails after its inner unit succeeded');
        }),
      );
      await create(first, 'g@example.com');
    });
    expect(await committedEmails(db)).toEqual(['a@example.com', 'b@example.com', 'd@example.com', 'g@example.com']);
  });

  test('nests as a savepoint inside a transaction it did not open (the test transaction)', async ({ db }) => {
    const users = new UserRepository(db);
    await users.create(user('kept@example.com'));
    const error = await failure(
      withTransaction(db, async (trx) => {
        await new UserRepository(trx).create(user('undone@example.com'));
        throw new Error('inner fails');
      }),
    );
    expect(error).toMatchObject({ message: 'inner fails' });
    expect(await users.findByEmail('kept@example.com')).toBeDefined();
    expect(await users.findByEmail('undone@example.com')).toBeUndefined();
  });

  test('refuses to nest inside a plain Kysely transaction, which has no savepoints', async ({ database }) => {
    const error = await failure(
      database.db.transaction().execute((trx) => withTransaction(trx, () => Promise.resolve('nested'))),
    );
    expect(error).toBeInstanceOf(TypeError);
    expectPoolIdle(database);
  });
});

describe('retries', () => {
  test('retries a serialization failure and then succeeds', async ({ committed }) => {
    const { db } = committed;
    const { id } = await new UserRepository(db).create(user('ada@example.com'));
    const retries: Array<{ attempt: number; error: unknown }> = [];
    let attempts = 0;

    const name = await withTransaction(
      db,
      async (trx) => {
        attempts++;
        const { name: current } = await trx
          .selectFrom('users')
          .select('name')
          .where('id', '=', id)
          .executeTakeFirstOrThrow();
        if (attempts === 1) await concurrentRename(db, id, 'Concurrent');
        const renamed = `${current} (renamed)`;
        await trx.updateTable('users').set({ name: renamed }).where('id', '=', id).execute();
        return renamed;
      },
      {
        isolationLevel: 'serializable',
        retryBaseDelayMs: 1,
        onRetry: (attempt, error) => retries.push({ attempt, error }),
      },
    );

    expect(attempts).toBe(2);
    expect(name).toBe('Concurrent (renamed)');
    expect((await new UserRepository(db).findById(id))?.name).toBe('Concurrent (renamed)');
    expect(retries).toHaveLength(1);
    expect(retries[0]?.attempt).toBe(1);
    expect(retries[0]?.error).toBeInstanceOf(SerializationError);
    expect(causeOf(retries[0]?.error)).toMatchObject({ code: '40001' });
  });

  test('retries a deadlock and then succeeds', async ({ database }) => {
    const [lockA, lockB] = [randomInt(1, 2 ** 31), randomInt(1, 2 ** 31)];
    const retries: unknown[] = [];
    let attempts = 0;
    let rival: Promise<void> | undefined;

    const result = await withTransaction(
      database.db,
      async (trx) => {
        attempts++;
        // This side runs the deadlock check, quickly; the rival would wait for ever.
        await sql`select set_config('deadlock_timeout', '20ms', true)`.execute(trx);
        await sql`select pg_advisory_xact_lock(${lockA})`.execute(trx);
        if (attempts === 1) {
          const { promise: rivalHoldsB, resolve } = Promise.withResolvers<number>();
          rival = withTransaction(database.db, async (other) => {
            await sql`select set_config('deadlock_timeout', '10s', true)`.execute(other);
            await sql`select pg_advisory_xact_lock(${lockB})`.execute(other);
            resolve(await backendPid(other));
            await sql`select pg_advisory_xact_lock(${lockA})`.execute(other);
          });
          const rivalPid = await rivalHoldsB;
          await waitFor(
            'the rival to wait for lock A',
            async () => {
              const { rows } = await sql<{ waiting: boolean }>`
              select exists (select from pg_stat_activity where pid = ${rivalPid} and wait_event_type = 'Lock') as waiting
            `.execute(database.db);
              return rows[0]?.waiting === true;
            },
            2_000,
            10,
          );
        }
        await sql`select pg_advisory_xact_lock(${lockB})`.execute(trx);
        return 'done';
      },
      { retryBaseDelayMs: 1, onRetry: (_attempt, error) => retries.push(error) },
    );
    await rival;

    expect(result).toBe('done');
    expect(attempts).toBe(2);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toBeInstanceOf(SerializationError);
    expect(causeOf(retries[0])).toMatchObject({ code: '40P01' });
    expectPoolIdle(database);
  });

  test('gives up after maxAttempts on a permanent serialization failure with a 409 SerializationError', async ({
    committed,
  }) => {
    const { db } = committed;
    const { id } = await new UserRepository(db).create(user('ada@example.com'));
    const retried: number[] = [];
    let attempts = 0;

    const error = await failure(
      withTransaction(
        db,
        async (trx) => {
          attempts++;
          await trx.selectFrom('users').select('name').where('id', '=', id).execute();
          await concurrentRename(db, id, `Concurrent ${attempts}`);
          await trx.updateTable('users').set({ name: 'Never' }).where('id', '=', id).execute();
        },
        {
          isolationLevel: 'serializable',
          maxAttempts: 3,
          retryBaseDelayMs: 1,
          onRetry: (attempt) => retried.push(attempt),
        },
      ),
    );

    expect(attempts).toBe(3);
    expect(retried).toEqual([1, 2]);
    expect(error).toBeInstanceOf(SerializationError);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ statusCode: 409, code: 'SERIALIZATION_FAILURE' });
    const cause = causeOf(error);
    expect(cause).toBeInstanceOf(pg.DatabaseError);
    expect(cause).toMatchObject({ code: '40001' });
    expect((await new UserRepository(db).findById(id))?.name).toBe('Concurrent 3');
  });

  test('retries the whole outermost unit, running a nested unit once per attempt', async ({ committed }) => {
    const { db } = committed;
    const { id } = await new UserRepository(db).create(user('ada@example.com'));
    let outerRuns = 0;
    let innerRuns = 0;

    await withTransaction(
      db,
      async (outer) => {
        outerRuns++;
        await outer.selectFrom('users').select('name').where('id', '=', id).execute();
        await withTransaction(
          outer,
          async (inner) => {
            innerRuns++;
            if (outerRuns === 1) await concurrentRename(db, id, 'Concurrent');
            await inner.updateTable('users').set({ name: 'Inner' }).where('id', '=', id).execute();
          },
          { maxAttempts: 5 },
        );
      },
      { isolationLevel: 'serializable', retryBaseDelayMs: 1 },
    );

    expect({ outerRuns, innerRuns }).toEqual({ outerRuns: 2, innerRuns: 2 });
    expect((await new UserRepository(db).findById(id))?.name).toBe('Inner');
  });

  test('never retries a nested unit: its serialization failure reaches the caller after one run', async ({
    committed,
  }) => {
    const { db } = committed;
    const { id } = await new UserRepository(db).create(user('ada@example.com'));
    const outer = await db.startTransaction().setIsolationLevel('serializable').execute();
    let runs = 0;
    const retried: number[] = [];
    try {
      await outer.selectFrom('users').select('name').where('id', '=', id).execute();
      const error = await failure(
        withTransaction(
          outer,
          async (inner) => {
            runs++;
            await concurrentRename(db, id, `Concurrent ${runs}`);
            await inner.updateTable('users').set({ name: 'Inner' }).where('id', '=', id).execute();
          },
          { maxAttempts: 5, retryBaseDelayMs: 1, onRetry: (attempt) => retried.push(attempt) },
        ),
      );
      expect(error).toBeInstanceOf(SerializationError);
      expect(runs).toBe(1);
      expect(retried).toEqual([]);
    } finally {
      await outer.rollback().execute();
    }
  });

  test('does not retry errors other than serialization failures and deadlocks', async ({ database }) => {
    let runs = 0;
    const retried: number[] = [];
    const error = await failure(
      withTransaction(
        database.db,
        async (trx) => {
          runs++;
          const users = new UserRepository(trx);
          await users.create(user('ada@example.com'));
          await users.create(user('ada@example.com'));
        },
        { onRetry: (attempt) => retried.push(attempt) },
      ),
    );
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect({ runs, retried }).toEqual({ runs: 1, retried: [] });
  });
});

describe('statement timeouts and connection hygiene', () => {
  test('ends a slow statement as QUERY_TIMEOUT, without retrying, and leaves the pool healthy', async ({
    database,
  }) => {
    let runs = 0;
    const started = performance.now();
    const error = await failure(
      withTransaction(
        database.db,
        async (trx) => {
          runs++;
          await sql`select pg_sleep(5)`.execute(trx);
        },
        { statementTimeoutMs: 50 },
      ),
    );
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'QUERY_TIMEOUT' });
    expect(causeOf(error)).toMatchObject({ code: '57014' });
    expect(runs).toBe(1);

    expectPoolIdle(database);
    // The SET LOCAL ended with the transaction: pooled connections keep the pool's own timeout
    // (behind PgBouncer in transaction mode the pool sets none per session: the server's default).
    const after = await setting(database.db, 'statement_timeout');
    if (TEST_POOL.poolMode === 'transaction') expect(after).not.toBe('50ms');
    else expect(after).toBe('10s');
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.db);
    expect(rows).toEqual([{ one: 1 }]);
  });

  test('applies statementTimeoutMs to a nested unit and undoes it with the failed savepoint', async ({ db }) => {
    const inside = await withTransaction(db, (trx) => setting(trx, 'statement_timeout'), { statementTimeoutMs: 1_500 });
    expect(inside).toBe('1500ms');
    const error = await failure(
      withTransaction(db, (trx) => sql`select pg_sleep(5)`.execute(trx), { statementTimeoutMs: 50 }),
    );
    expect(error).toMatchObject({ code: 'QUERY_TIMEOUT' });
    // A released savepoint keeps its SET LOCAL until the transaction ends; a rolled-back one does not.
    expect(await setting(db, 'statement_timeout')).toBe('1500ms');
  });

  test('returns the connection to the pool every time the callback throws', async ({ database }) => {
    const max = database.pool.options.max;
    for (let i = 0; i < max + 2; i++) {
      const error = await failure(
        withTransaction(database.db, async (trx) => {
          await sql`select 1`.execute(trx);
          throw new Error(`failure ${i}`);
        }),
      );
      expect(error).toMatchObject({ message: `failure ${i}` });
    }
    expectPoolIdle(database);
  });

  test('releases a connection killed mid-transaction, reports DATABASE_UNAVAILABLE, and serves the next query', async ({
    database,
  }) => {
    let killed: number | undefined;
    const error = await failure(
      withTransaction(database.db, async (trx) => {
        killed = await backendPid(trx);
        await sql`select pg_terminate_backend(${killed}, 2000)`.execute(database.db);
        // Let the driver see the connection close while the unit of work holds it, between queries.
        await sleep(50);
        await sql`select 1`.execute(trx);
      }),
    );
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'DATABASE_UNAVAILABLE' });

    expectPoolIdle(database);
    const pid = await backendPid(database.db);
    expect(pid).not.toBe(killed);
  });
});
