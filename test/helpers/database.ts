import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { inject, test as base } from 'vitest';
import type { DB } from '../../db-types/index.ts';
import { createDatabase, createPool, type PoolConfig } from '../../src/platform/db/database.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';

/**
 * Set by `npm run test:pgbouncer`: a PgBouncer in transaction mode in front of the test server.
 * Test databases are then reached through it (the harness's admin work — cloning, dropping — still
 * goes to the server directly), with the pool settings transaction mode requires.
 */
const PGBOUNCER_URL = process.env.TEST_PGBOUNCER_URL === '' ? undefined : process.env.TEST_PGBOUNCER_URL;

const POOL_MODE: Pick<PoolConfig, 'poolMode' | 'preparedStatements'> =
  PGBOUNCER_URL === undefined ? {} : { poolMode: 'transaction', preparedStatements: false };

/** Pool settings for tests: small, quick to give up; transaction pool mode behind PgBouncer. */
export const TEST_POOL = {
  poolMax: 4,
  connectionTimeoutMs: 5_000,
  idleTimeoutMs: 10_000,
  statementTimeoutMs: 10_000,
  applicationName: 'vitest',
  ...POOL_MODE,
} as const;

/**
 * The URL clients use for database `name`: through PgBouncer under `npm run test:pgbouncer`,
 * directly to the test server otherwise.
 */
export function clientUrl(name: string): string {
  return withDatabaseName(PGBOUNCER_URL ?? inject('adminUrl'), name);
}

/** Tables the leak check inspects: every table the migrations made (not the migrator's own). */
async function schemaTables(db: Kysely<DB>): Promise<(keyof DB)[]> {
  const tables = await db.introspection.getTables();
  return tables.filter((table) => !table.isView && table.schema === 'public').map((table) => table.name as keyof DB);
}

export interface TestDatabase {
  readonly url: string;
  readonly db: Kysely<DB>;
  readonly pool: pg.Pool;
}

/**
 * Clones the migrated template into `name` (replacing any previous one) and connects to it.
 * Nothing may be connected to the template while it is cloned; the harness never connects to it.
 */
export async function cloneTemplate(name: string): Promise<TestDatabase> {
  await dropDatabase(name);
  await adminQuery(`create database ${pg.escapeIdentifier(name)} template ${inject('templateDatabase')}`);
  const url = clientUrl(name);
  const pool = createPool({ ...TEST_POOL, url });
  return { url, pool, db: createDatabase({ ...TEST_POOL, url }, { pool }) };
}

export async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
}

/** Runs one statement as the test server's superuser, on a connection of its own (DDL on databases). */
export async function adminQuery(text: string): Promise<void> {
  const admin = new pg.Client({ connectionString: inject('adminUrl') });
  await admin.connect();
  try {
    await admin.query(text);
  } finally {
    await admin.end();
  }
}

/** A PostgreSQL URL on a port where nothing listens. */
export const UNREACHABLE_DATABASE_URL = 'postgres://nobody@127.0.0.1:1/none';

/**
 * A database on a port where nothing listens, for the "database is down" paths; destroyed when
 * the test ends.
 */
export function unreachableDatabase(onFinished: (fn: () => Promise<void>) => void): Kysely<DB> {
  const down = createDatabase({ ...TEST_POOL, url: UNREACHABLE_DATABASE_URL, connectionTimeoutMs: 2000 });
  onFinished(async () => {
    await down.destroy();
  });
  return down;
}

/**
 * A database of its own, committed data and all, for tests that need real concurrency (racing
 * requests on several connections, two app instances). Dropped when the test ends.
 *
 * @example
 * ```ts
 * it('lets exactly one of ten racing registrations win', async ({ onTestFinished }) => {
 *   const { db } = await isolatedDatabase(onTestFinished);
 * });
 * ```
 */
export async function isolatedDatabase(onFinished: (fn: () => Promise<void>) => void): Promise<TestDatabase> {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_iso_${randomBytes(4).toString('hex')}`;
  const database = await cloneTemplate(name);
  onFinished(async () => {
    await database.db.destroy();
    await dropDatabase(name);
  });
  return database;
}

/**
 * `test` with database fixtures:
 * - `database`: this file's database, cloned from the template for this worker. When the file is
 *   done it must hold no committed rows and no checked-out connections, or the file fails.
 * - `db`: a transaction opened before the test and rolled back after it. Code under test that opens
 *   its own unit of work on it gets a savepoint, so its "commit" is undone too.
 */
export const test = base
  .extend('database', { scope: 'file' }, async ({}, { onCleanup }) => {
    const database = await cloneTemplate(`test_w${process.env.VITEST_POOL_ID ?? '0'}`);
    onCleanup(async () => {
      const problems = await leftovers(database);
      await database.db.destroy();
      if (problems.length > 0) throw new Error(`This test file left state behind: ${problems.join('; ')}`);
    });
    return database;
  })
  .extend('db', async ({ database, task }, { onCleanup }) => {
    const trx = await database.db.startTransaction().execute();
    onCleanup(async () => {
      // Deferred constraints are checked now, so a violation fails the test instead of vanishing
      // with the rollback; an aborted transaction fails here too.
      const failure = await sql`set constraints all immediate`.execute(trx).then(
        () => undefined,
        (error: unknown) => error,
      );
      await trx.rollback().execute();
      if (failure !== undefined) {
        throw new Error(
          `"${task.name}" left its test transaction aborted or violating a deferred constraint. ` +
            'A statement that is expected to fail must run in withTransaction() so only its savepoint rolls back.',
          { cause: failure },
        );
      }
    });
    return trx;
  });

export { describe, expect } from 'vitest';

/**
 * What a file left behind that the next one would see: committed rows in any table, connections
 * still checked out. The `database` fixture fails the file when this is not empty.
 */
export async function leftovers(database: TestDatabase): Promise<string[]> {
  const problems: string[] = [];
  const busy = database.pool.totalCount - database.pool.idleCount;
  if (busy > 0) problems.push(`${busy} database connection(s) still checked out`);
  for (const table of await schemaTables(database.db)) {
    const { count } = await database.db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .executeTakeFirstOrThrow();
    if (Number(count) > 0) problems.push(`${count} committed row(s) in ${table}`);
  }
  return problems;
}
