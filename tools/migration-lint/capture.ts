import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { FileMigrationProvider, type Migration, type MigrationProvider } from 'kysely/migration';
import { adminQuery } from '../db-admin/scratch.ts';
import { shortLivedPool } from '../../src/platform/db/pool.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { MIGRATION_DEFAULTS } from '../../src/platform/config/database.ts';
import { SchemaMigrator } from '../../src/platform/db/migration-runner.ts';
import { type ProjectMigration } from '../../src/platform/db/migration-runner/plan.ts';

/** What one migration's up() executed, in order, and the database it ran on before it started. */
export interface CapturedMigration {
  readonly name: string;
  /** The migration file's source: where `db-lint-ignore` comments are read from. */
  readonly source: string;
  readonly statements: readonly string[];
  /** `table.column` pairs with a validated `CHECK (column IS NOT NULL)` before the migration ran. */
  readonly notNullChecks: ReadonlySet<string>;
  /** Tables that existed before the migration ran. */
  readonly existingTables: ReadonlySet<string>;
}

/**
 * Runs every migration of `migrationFolder` on a throw-away database of the server at `adminUrl`
 * (created empty, dropped afterwards) and records the SQL each one actually executed — whatever
 * builder or raw `sql` wrote it — with the state it started from.
 *
 * @example
 * ```ts
 * const { migrations, volatileFunctions } = await captureMigrations(adminUrl, MIGRATIONS_DIR);
 * ```
 * @throws when a migration fails: a migration that does not run cannot be linted.
 */
export async function captureMigrations(
  adminUrl: string,
  migrationFolder: string,
): Promise<{ migrations: CapturedMigration[]; volatileFunctions: ReadonlySet<string> }> {
  const name = `lint_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `create database ${name}`);
  const captured: {
    name: string;
    source: string;
    statements: string[];
    notNullChecks: Set<string>;
    existingTables: Set<string>;
  }[] = [];
  let current: (typeof captured)[number] | undefined;
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({
      pool: shortLivedPool(withDatabaseName(adminUrl, name), 2),
    }),
    log: (event) => {
      if (event.level === 'query') current?.statements.push(event.query.sql);
    },
  });
  const files = new FileMigrationProvider({ fs, path, migrationFolder });
  const provider: MigrationProvider = {
    getMigrations: async () => {
      const migrations: Record<string, Migration> = {};
      for (const [migrationName, migration] of Object.entries(await files.getMigrations())) {
        const source = await readSource(migrationFolder, migrationName);
        const wrapped: ProjectMigration = {
          ...migration,
          up: async (trx) => {
            const entry = { name: migrationName, source, statements: [], ...(await stateOf(trx)) };
            captured.push(entry);
            current = entry;
            try {
              await migration.up(trx);
            } finally {
              current = undefined;
            }
          },
        };
        migrations[migrationName] = wrapped;
      }
      return migrations;
    },
  };
  try {
    const { error } = await new SchemaMigrator(db, provider, {
      ...MIGRATION_DEFAULTS,
      poolMode: 'session',
    }).migrateToLatest();
    if (error !== undefined) throw error instanceof Error ? error : new Error('a migration failed', { cause: error });
    const { rows } = await sql<{
      name: string;
    }>`select distinct proname as name from pg_proc where provolatile = 'v'`.execute(db);
    return { migrations: captured, volatileFunctions: new Set(rows.map((row) => row.name)) };
  } finally {
    await db.destroy();
    await adminQuery(adminUrl, `drop database if exists ${name} with (force)`);
  }
}

async function stateOf(db: Kysely<unknown>): Promise<{ notNullChecks: Set<string>; existingTables: Set<string> }> {
  const { rows: tables } = await sql<{ name: string }>`
    select relname as name from pg_class where relkind in ('r', 'p') and relnamespace = current_schema()::regnamespace
      and relname not like 'kysely_migration%'
  `.execute(db);
  const { rows: checks } = await sql<{ table: string; definition: string }>`
    select conrelid::regclass::text as table, pg_get_constraintdef(oid) as definition from pg_constraint
    where contype = 'c' and convalidated and connamespace = current_schema()::regnamespace
  `.execute(db);
  const notNullChecks = new Set<string>();
  for (const check of checks) {
    const match = /^CHECK \(\(?"?(\w+)"? IS NOT NULL\)?\)$/.exec(check.definition);
    if (match?.[1] !== undefined) notNullChecks.add(`${check.table.replace(/"/g, '')}.${match[1]}`);
  }
  return { notNullChecks, existingTables: new Set(tables.map((table) => table.name)) };
}

async function readSource(folder: string, name: string): Promise<string> {
  for (const extension of ['.ts', '.mts', '.js', '.mjs']) {
    const source = await fs.readFile(path.join(folder, name + extension), 'utf8').catch(() => undefined);
    if (source !== undefined) return source;
  }
  return '';
}
