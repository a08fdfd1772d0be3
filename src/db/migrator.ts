import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresAdapter, PostgresDialect, sql, type DialectAdapter, type LogEvent } from 'kysely';
import { FileMigrationProvider, Migrator, type MigrationResultSet } from 'kysely/migration';
import pg from 'pg';

/** `migrations/` at the project root: the one owner of the schema, shared with kysely-ctl. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export interface MigrationsOptions {
  /** Where the migration files are; `migrations/` unless a test brings its own. */
  readonly migrationFolder?: string;
}

/**
 * Kysely's Migrator over `migrations/`, with the default bookkeeping tables that kysely-ctl uses
 * too, so `npm run migrate:status` and the server agree on what is applied. Concurrent callers
 * serialise on the migrator's advisory lock: one applies, the others wait and find nothing to do.
 *
 * @example
 * ```ts
 * const { error, results } = await createMigrator(db).migrateToLatest();
 * ```
 */
export function createMigrator<T>(db: Kysely<T>, options: MigrationsOptions = {}): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: options.migrationFolder ?? MIGRATIONS_DIR }),
  });
}

/** The key of Kysely's own migration lock, so `npm run migrate` and starting servers exclude each other. */
const MIGRATION_LOCK_ID = 3853314791062309107n;

/**
 * Kysely's PostgreSQL adapter takes its migration lock with `pg_advisory_lock`: a session-level
 * lock, taken before and released after the migration transaction. Behind PgBouncer in transaction
 * mode those three steps may run on three different server connections, and a lock whose unlock
 * went elsewhere stays held by a pooled server connection. This adapter locks for the transaction
 * only; {@link migrateToLatest} takes the lock as its transaction's first statement, so every step
 * (creating the bookkeeping tables included) runs under it, and COMMIT or ROLLBACK releases it.
 */
class TransactionLockAdapter extends PostgresAdapter {
  override async acquireMigrationLock(db: Kysely<unknown>): Promise<void> {
    await lockForTransaction(db);
  }

  override async releaseMigrationLock(): Promise<void> {
    // Released by the end of the transaction.
  }
}

class TransactionLockDialect extends PostgresDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionLockAdapter();
  }
}

async function lockForTransaction(db: Kysely<unknown>): Promise<void> {
  // Re-entrant within a transaction; waits up to an hour for another migrator, like Kysely's.
  await sql`select set_config('lock_timeout', '3600000', true), pg_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_ID)})`.execute(
    db,
  );
}

/** Rolls the migration transaction back after Kysely reported (rather than threw) a failure. */
class RolledBack extends Error {
  readonly resultSet: MigrationResultSet;

  constructor(resultSet: MigrationResultSet) {
    super('migration failed');
    this.resultSet = resultSet;
  }
}

/**
 * Applies every pending migration on the database at `url` over a connection of its own. They run
 * in one transaction: when one fails, none of them stays applied. Concurrent callers (several
 * instances starting at once) serialise on a transaction-scoped advisory lock, so each migration
 * is applied once, directly or through PgBouncer in transaction mode.
 *
 * @example
 * ```ts
 * const applied = await migrateToLatest('postgres://localhost/app'); // ['20261126224500_create_users', …]
 * ```
 * @throws {MigrationError} naming the migration and the statement that failed, with the database error as `cause`.
 */
export async function migrateToLatest(url: string, options: MigrationsOptions = {}): Promise<string[]> {
  // Kysely reports a failed query with its SQL only to the log hook; keep it to name the statement.
  const failedStatements = new WeakMap<object, string>();
  const db = new Kysely<unknown>({
    dialect: new TransactionLockDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
    log: (event: LogEvent) => {
      if (event.level === 'error' && typeof event.error === 'object' && event.error !== null) {
        failedStatements.set(event.error, event.query.sql);
      }
    },
  });
  try {
    const resultSet = await db
      .transaction()
      .execute(async (trx) => {
        await lockForTransaction(trx);
        const result = await createMigrator(trx, options).migrateToLatest();
        if (result.error !== undefined) throw new RolledBack(result);
        return result;
      })
      .catch((error: unknown) => {
        if (error instanceof RolledBack) return error.resultSet;
        throw error;
      });
    return appliedNames(resultSet, (error) =>
      typeof error === 'object' && error !== null ? failedStatements.get(error) : undefined,
    );
  } finally {
    await db.destroy();
  }
}

/** Names of the migrations in `migrations/` that the database has not applied. */
export async function pendingMigrations<T>(db: Kysely<T>): Promise<string[]> {
  const migrations = await createMigrator(db).getMigrations();
  return migrations.filter((migration) => migration.executedAt === undefined).map((migration) => migration.name);
}

export interface AppliedMigration {
  readonly name: string;
  readonly executedAt: Date;
  /** False when the database ran a migration that `migrations/` does not have (another branch, a deleted file). */
  readonly known: boolean;
}

export interface MigrationStatus {
  /** In the order they were applied. */
  readonly applied: readonly AppliedMigration[];
  /** In the order they will be applied. */
  readonly pending: readonly string[];
}

/**
 * What the database at `url` has applied, and when, and what `migrations/` still holds for it.
 * Reads only: a database that was never migrated has everything pending.
 *
 * @example
 * ```ts
 * const { applied, pending } = await readMigrationStatus('postgres://localhost/app');
 * ```
 */
export async function readMigrationStatus(url: string, options: MigrationsOptions = {}): Promise<MigrationStatus> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
  });
  try {
    const migrations = await createMigrator(db, options).getMigrations();
    const known = new Set(migrations.map((migration) => migration.name));
    const applied = (await executedMigrations(db)).map((row) => ({ ...row, known: known.has(row.name) }));
    const appliedNames = new Set(applied.map((migration) => migration.name));
    return { applied, pending: [...known].filter((name) => !appliedNames.has(name)) };
  } finally {
    await db.destroy();
  }
}

/** Rows of Kysely's bookkeeping table, oldest first; none when it does not exist yet. */
async function executedMigrations(db: Kysely<unknown>): Promise<{ name: string; executedAt: Date }[]> {
  const {
    rows: [exists],
  } = await sql<{ exists: boolean }>`select to_regclass('kysely_migration') is not null as exists`.execute(db);
  if (exists?.exists !== true) return [];
  const { rows } = await sql<{ name: string; timestamp: string }>`select name, timestamp from kysely_migration`.execute(
    db,
  );
  return rows
    .map((row) => ({ name: row.name, executedAt: new Date(row.timestamp) }))
    .sort((a, b) => a.executedAt.getTime() - b.executedAt.getTime() || (a.name < b.name ? -1 : 1));
}

export class MigrationError extends Error {
  readonly migration: string | undefined;
  /** The SQL that failed, when a statement (not the migration's own code) failed. */
  readonly statement: string | undefined;

  constructor(migration: string | undefined, cause: unknown, statement?: string) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const where = statement === undefined ? '' : `\n  failed statement: ${statement}`;
    super(
      (migration === undefined ? `Migrating failed: ${reason}` : `Migration ${migration} failed: ${reason}`) + where,
      { cause },
    );
    this.name = 'MigrationError';
    this.migration = migration;
    this.statement = statement;
  }
}

function appliedNames(
  { error, results = [] }: MigrationResultSet,
  statementOf: (error: unknown) => string | undefined,
): string[] {
  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error');
    throw new MigrationError(failed?.migrationName, error, statementOf(error));
  }
  return results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
}
