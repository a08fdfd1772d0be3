import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { FileMigrationProvider, NO_MIGRATIONS, type MigrationResultSet } from 'kysely/migration';
import { shortLivedPool } from './pool.ts';
import { MIGRATION_DEFAULTS } from '../config/database.ts';
import { type Config } from '../config.ts';
import { MigrationError, UneditedMigrationError } from './migration-runner/errors.ts';
import { SchemaMigrator, invalidIndexes, type RunnerOptions } from './migration-runner.ts';

export { MigrationError, UneditedMigrationError } from './migration-runner/errors.ts';
export { MIGRATION_LOCK_ID } from './migration-runner/lock.ts';

/** `migrations/` at the project root: the one owner of the schema, shared with kysely-ctl. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations', import.meta.url));

export interface MigrationsOptions extends Partial<RunnerOptions> {
  /** Where the migration files are; `migrations/` unless a test brings its own. */
  readonly migrationFolder?: string;
}

/**
 * The project's migrator over `migrations/` (see {@link SchemaMigrator}): Kysely's bookkeeping
 * tables, shared with kysely-ctl, so `npm run migrate:status` and the server agree on what is
 * applied; per-migration transaction mode; `lock_timeout` with bounded retries. Concurrent callers
 * serialise on a transaction-scoped advisory lock: one applies, the others wait and find nothing
 * to do. `db` must be able to lend two connections (the lock's and the migration's).
 *
 * @example
 * ```ts
 * const { error, results } = await createMigrator(db).migrateToLatest();
 * ```
 */
export function createMigrator<T>(db: Kysely<T>, options: MigrationsOptions = {}): SchemaMigrator {
  return new SchemaMigrator(
    db as unknown as Kysely<unknown>,
    new FileMigrationProvider({ fs, path, migrationFolder: options.migrationFolder ?? MIGRATIONS_DIR }),
    {
      lockTimeoutMs: options.lockTimeoutMs ?? MIGRATION_DEFAULTS.lockTimeoutMs,
      lockRetries: options.lockRetries ?? MIGRATION_DEFAULTS.lockRetries,
      retryDelayMs: options.retryDelayMs ?? MIGRATION_DEFAULTS.retryDelayMs,
      poolMode: options.poolMode ?? 'session',
      ...(options.onRetry === undefined ? {} : { onRetry: options.onRetry }),
      ...(options.onFailure === undefined ? {} : { onFailure: options.onFailure }),
    },
  );
}

/**
 * The migrator's settings from the environment: lock timeout and retries, the pool mode, and
 * where to tell about retries.
 *
 * @example
 * ```ts
 * await migrateToLatest(target.url, migrationOptionsOf(config, say));
 * ```
 */
export function migrationOptionsOf(
  config: Pick<Config, 'migrations' | 'database'>,
  say?: (message: string) => void,
): MigrationsOptions {
  return { ...config.migrations, poolMode: config.database.poolMode, ...(say === undefined ? {} : { onRetry: say }) };
}

/**
 * Applies every pending migration on the database at `url` over connections of its own.
 * Consecutive migrations run in one transaction: when one fails, none of its group stays
 * applied; a migration with `transaction = false` runs alone, after the groups before it
 * committed. Concurrent callers (several instances starting at once) serialise on a
 * transaction-scoped advisory lock, so each migration is applied once, directly or through
 * PgBouncer in transaction mode.
 *
 * @example
 * ```ts
 * const applied = await migrateToLatest('postgres://localhost/app'); // ['20261126224500_create_users', …]
 * ```
 * @throws {MigrationError} naming the migration and the statement that failed, with the database error as `cause`.
 */
export async function migrateToLatest(url: string, options: MigrationsOptions = {}): Promise<string[]> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: shortLivedPool(url, 2) }),
  });
  try {
    return appliedNames(await createMigrator(db, options).migrateToLatest());
  } finally {
    await db.destroy();
  }
}

/** What {@link rollBackMigrations} undoes: the last applied migration, all of them, or those applied after one. */
export type RollbackScope = 'last' | 'all' | { readonly after: string };

/**
 * Undoes migrations on the database at `url`, as {@link migrateToLatest} applies them.
 * Resolves to the names undone, latest first.
 *
 * @example
 * ```ts
 * await rollBackMigrations('postgres://localhost/app', 'last'); // ['20261201170000_account_tokens_outbox_prune_indexes']
 * ```
 * @throws {MigrationError} naming the migration and the statement that failed.
 */
export async function rollBackMigrations(
  url: string,
  scope: RollbackScope,
  options: MigrationsOptions = {},
): Promise<string[]> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: shortLivedPool(url, 2) }),
  });
  try {
    const migrator = createMigrator(db, options);
    const step =
      scope === 'last' ? migrator.migrateDown() : migrator.migrateTo(scope === 'all' ? NO_MIGRATIONS : scope.after);
    return appliedNames(await step);
  } finally {
    await db.destroy();
  }
}

/** How many migrations `migrations/` holds. */
export async function migrationCount(): Promise<number> {
  return (await fs.readdir(MIGRATIONS_DIR)).filter((file) => /\.(m?ts|m?js)$/.test(file) && !file.endsWith('.d.ts'))
    .length;
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
  /** Invalid indexes: left by a CREATE INDEX CONCURRENTLY that failed (its migration is pending). */
  readonly invalidIndexes: readonly string[];
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
    dialect: new PostgresDialect({ pool: shortLivedPool(url, 1) }),
  });
  try {
    const migrations = await createMigrator(db, options).getMigrations();
    const known = new Set(migrations.map((migration) => migration.name));
    const applied = (await executedMigrations(db)).map((row) => ({ ...row, known: known.has(row.name) }));
    const appliedNames = new Set(applied.map((migration) => migration.name));
    const pending = [...known].filter((name) => !appliedNames.has(name));
    return { applied, pending, invalidIndexes: await invalidIndexes(db) };
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

/** The names a run applied; a reported failure becomes a thrown {@link MigrationError}. */
function appliedNames({ error, results = [] }: MigrationResultSet): string[] {
  if (error !== undefined) {
    if (error instanceof MigrationError || error instanceof UneditedMigrationError) throw error;
    const failed = results.find((result) => result.status === 'Error');
    throw new MigrationError(failed?.migrationName, error);
  }
  return results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
}
