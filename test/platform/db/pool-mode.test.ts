import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { inject } from 'vitest';
import type { DB } from '../../../db-types/index.ts';
import { createDatabase } from '../../../src/platform/db/database.ts';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { MIGRATIONS_DIR, migrateToLatest } from '../../../src/platform/db/migrator.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import { ServiceUnavailableError } from '../../../src/platform/errors/index.ts';
import { UserRepository } from '../../../src/users/users.repository.ts';
import {
  adminQuery,
  clientUrl,
  describe,
  dropDatabase,
  expect,
  isolatedDatabase,
  test,
  TEST_POOL,
} from '../../helpers/database.ts';

// Everything here holds directly against PostgreSQL and, under `npm run test:pgbouncer`, through a
// real PgBouncer in transaction mode: there the URLs the harness hands out lead through PgBouncer,
// which refuses a connection that sends statement_timeout at startup and gives consecutive
// transactions of one client whatever server connection is free.

/** A database in transaction pool mode on `url`, destroyed when the test ends. */
function transactionModeDatabase(
  url: string,
  onFinished: (fn: () => Promise<void>) => void,
  statementTimeoutMs: number,
): Kysely<DB> {
  const db = createDatabase({ ...TEST_POOL, url, poolMode: 'transaction', statementTimeoutMs });
  onFinished(async () => {
    await db.destroy();
  });
  return db;
}

async function setting(db: Kysely<DB>, name: string): Promise<string> {
  const { rows } = await sql<{ value: string }>`select current_setting(${name}) as value`.execute(db);
  return rows[0]?.value ?? '';
}

describe('DB_POOL_MODE=transaction', () => {
  test('sends no statement_timeout at connection startup, and sets it with SET LOCAL in every unit of work', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const db = transactionModeDatabase(url, onTestFinished, 1234);

    expect(await setting(db, 'statement_timeout')).not.toBe('1234ms');
    expect(await withTransaction(db, (trx) => setting(trx, 'statement_timeout'))).toBe('1234ms');
    // SET LOCAL ended with the transaction: the server connection goes back to PgBouncer clean.
    expect(await setting(db, 'statement_timeout')).not.toBe('1234ms');
    // A unit of work that asks for its own timeout gets it.
    expect(await withTransaction(db, (trx) => setting(trx, 'statement_timeout'), { statementTimeoutMs: 5000 })).toBe(
      '5s',
    );
  });

  test('cancels a statement that overruns the per-transaction timeout: 503 QUERY_TIMEOUT, in well under its sleep', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const db = transactionModeDatabase(url, onTestFinished, 200);
    const started = performance.now();

    const error = await withTransaction(db, (trx) => sql`select pg_sleep(5)`.execute(trx)).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error).toMatchObject({ statusCode: 503, code: 'QUERY_TIMEOUT' });
    expect(performance.now() - started).toBeLessThan(3000);
  });

  test('prepares no named statements, so the next transaction may run on any server connection', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const db = transactionModeDatabase(url, onTestFinished, 10_000);

    const prepared = await withTransaction(db, async (trx) => {
      const users = new UserRepository(trx);
      await users.create({ email: 'ada@example.com', name: 'Ada', passwordHash: 'x' });
      await users.findByEmail('ada@example.com');
      await users.findByEmail('ada@example.com');
      await users.list(10);
      const { rows } = await sql<{ count: number }>`select count(*)::int as count from pg_prepared_statements`.execute(
        trx,
      );
      await sql`delete from users`.execute(trx);
      return rows[0]?.count;
    });

    expect(prepared).toBe(0);
  });

  test('in session mode, the same work does prepare named statements (the control for the test above)', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    // Always straight to the server: named statements must never reach a transaction-mode PgBouncer.
    const direct = withDatabaseName(inject('adminUrl'), new URL(url).pathname.slice(1));
    const db = createDatabase({ ...TEST_POOL, url: direct, poolMode: 'session', preparedStatements: true });
    onTestFinished(async () => {
      await db.destroy();
    });

    const prepared = await withTransaction(db, async (trx) => {
      await new UserRepository(trx).findByEmail('ada@example.com');
      const { rows } = await sql<{ count: number }>`select count(*)::int as count from pg_prepared_statements`.execute(
        trx,
      );
      return rows[0]?.count;
    });

    expect(prepared).toBeGreaterThan(0);
  });

  test('refuses to be built with named prepared statements', () => {
    expect(() =>
      createDatabase({ ...TEST_POOL, url: 'postgres://unused/db', poolMode: 'transaction', preparedStatements: true }),
    ).toThrow(/prepared statements cannot be used in transaction pool mode/i);
  });
});

describe('migrations from several instances starting at once', () => {
  test('apply each migration exactly once and leave no advisory lock held by any server connection', async ({
    onTestFinished,
  }) => {
    const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_deploy_${randomBytes(4).toString('hex')}`;
    await adminQuery(`create database ${name}`);
    onTestFinished(() => dropDatabase(name));
    const migrations = (await readdir(MIGRATIONS_DIR))
      .filter((file) => file.endsWith('.ts'))
      .map((file) => file.replace(/\.ts$/, ''));

    const applied = await Promise.all([1, 2, 3].map(() => migrateToLatest(clientUrl(name))));

    expect(applied.flat().sort()).toEqual([...migrations].sort());
    const observer = new pg.Client({ connectionString: withDatabaseName(inject('adminUrl'), name) });
    await observer.connect();
    try {
      const { rows: recorded } = await observer.query<{ name: string }>(
        'select name from kysely_migration order by name',
      );
      expect(recorded.map((row) => row.name)).toEqual([...migrations].sort());
      const { rows: locks } = await observer.query<{ count: number }>(
        `select count(*)::int as count from pg_locks l join pg_database d on d.oid = l.database
          where l.locktype = 'advisory' and d.datname = $1`,
        [name],
      );
      expect(locks[0]?.count).toBe(0);
    } finally {
      await observer.end();
    }
  });
});

describe('npm run migrate (an operator command, which holds a session-level lock)', () => {
  test('refuses to run with DB_POOL_MODE=transaction, saying how to run it instead, and touches nothing', async ({
    onTestFinished,
  }) => {
    const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_ctl_${randomBytes(4).toString('hex')}`;
    await adminQuery(`create database ${name}`);
    onTestFinished(() => dropDatabase(name));
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));

    const outcome = await new Promise<{ failed: boolean; output: string }>((resolve) => {
      execFile(
        'npm',
        ['run', '--silent', 'migrate'],
        {
          cwd: fileURLToPath(new URL('../../..', import.meta.url)),
          env: { ...env, DATABASE_URL: clientUrl(name), DB_POOL_MODE: 'transaction' },
          timeout: 20_000,
        },
        (error, stdout, stderr) => {
          resolve({ failed: error !== null, output: stdout + stderr });
        },
      );
    });

    expect(outcome.failed).toBe(true);
    expect(outcome.output).toContain('needs a session of its own');
    expect(outcome.output).toContain('MIGRATE_ON_START=true');
    const observer = new pg.Client({ connectionString: withDatabaseName(inject('adminUrl'), name) });
    await observer.connect();
    try {
      const { rows } = await observer.query<{ exists: boolean }>(
        "select to_regclass('kysely_migration') is not null as exists",
      );
      expect(rows[0]?.exists).toBe(false);
    } finally {
      await observer.end();
    }
  });
});
