import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import { FileMigrationProvider, Migrator, type MigrationResultSet } from 'kysely/migration';
import pg from 'pg';

/** `migrations/` at the project root: the one owner of the schema, shared with kysely-ctl. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Kysely's Migrator over `migrations/`, with the default bookkeeping tables that kysely-ctl uses
 * too, so `npm run migrate:status` and the server agree on what is applied. Concurrent callers
 * serialise on the migrator's lock row: one applies, the others wait and find nothing to do.
 *
 * @example
 * ```ts
 * const { error, results } = await createMigrator(db).migrateToLatest();
 * ```
 */
export function createMigrator<T>(db: Kysely<T>): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
  });
}

/**
 * Applies every pending migration on the database at `url` over a connection of its own.
 *
 * @example
 * ```ts
 * const applied = await migrateToLatest('postgres://localhost/app'); // ['20261126224500_create_users', …]
 * ```
 * @throws {MigrationError} naming the migration that failed, with the database error as `cause`.
 */
export async function migrateToLatest(url: string): Promise<string[]> {
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
  });
  try {
    return appliedNames(await createMigrator(db).migrateToLatest());
  } finally {
    await db.destroy();
  }
}

/** Names of the migrations in `migrations/` that the database has not applied. */
export async function pendingMigrations<T>(db: Kysely<T>): Promise<string[]> {
  const migrations = await createMigrator(db).getMigrations();
  return migrations.filter((migration) => migration.executedAt === undefined).map((migration) => migration.name);
}

export class MigrationError extends Error {
  readonly migration: string | undefined;

  constructor(migration: string | undefined, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(migration === undefined ? `Migrating failed: ${reason}` : `Migration ${migration} failed: ${reason}`, {
      cause,
    });
    this.name = 'MigrationError';
    this.migration = migration;
  }
}

function appliedNames({ error, results = [] }: MigrationResultSet): string[] {
  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error');
    throw new MigrationError(failed?.migrationName, error);
  }
  return results.filter((result) => result.status === 'Success').map((result) => result.migrationName);
}
