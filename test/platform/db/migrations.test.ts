import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { NO_MIGRATIONS, type MigrationResultSet } from 'kysely/migration';
import pg from 'pg';
import { describe, expect, inject, test } from 'vitest';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import {
  MIGRATIONS_DIR,
  MigrationError,
  createMigrator,
  migrateToLatest,
  readMigrationStatus,
} from '../../../src/platform/db/migrator.ts';
import { adminQuery } from '../../helpers/database.ts';
import { shortLivedPool } from '../../../src/platform/db/pool.ts';
import { readSchemaSnapshot } from '../../../tools/db-admin/schema-check.ts';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** Every migration in migrations/, in the order the Migrator applies them. */
const MIGRATIONS = (await readdir(MIGRATIONS_DIR))
  .filter((file) => /\.(m?ts|m?js)$/.test(file) && !file.endsWith('.d.ts'))
  .map((file) => file.replace(/\.[^.]+$/, ''))
  .sort();

interface EmptyDatabase {
  readonly name: string;
  readonly url: string;
  readonly db: Kysely<unknown>;
}

/** A database with nothing in it (not even Kysely's bookkeeping tables), dropped when the test ends. */
async function emptyDatabase(onFinished: (fn: () => Promise<void>) => void): Promise<EmptyDatabase> {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_empty_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  const url = withDatabaseName(inject('adminUrl'), name);
  const pool = shortLivedPool(url, 2);
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  onFinished(async () => {
    await db.destroy();
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  return { name, url, db };
}

/** `Up <name>` / `Down <name>` for each migration the step ran; a failed step fails the test. */
async function ran(step: Promise<MigrationResultSet>): Promise<string[]> {
  const { error, results = [] } = await step;
  if (error !== undefined) throw error instanceof Error ? error : new Error('migration step failed', { cause: error });
  return results.map((result) => `${result.direction} ${result.migrationName}`);
}

async function appliedRows(db: Kysely<unknown>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db);
  return rows.map((row) => row.name);
}

interface CliOutcome {
  readonly code: number;
  readonly output: string;
}

/**
 * How long one `npm run migrate` may take: seconds on a quiet machine, but a loaded 2-core CI
 * machine took over 10 s just to start two of them side by side.
 */
const NPM_RUN_TIMEOUT_MS = 45_000;

/** `npm run migrate` as a developer types it, against `url`. */
async function npmRunMigrate(url: string): Promise<CliOutcome> {
  // kysely-ctl's logger goes quiet under NODE_ENV=test; the developer's terminal is not a test.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', 'migrate'],
      { cwd: ROOT, env: { ...env, DATABASE_URL: url }, timeout: NPM_RUN_TIMEOUT_MS },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
          output: stdout + stderr,
        });
      },
    );
  });
}

/** Backends of database `name` waiting for a lock (a table lock or the migrator's advisory lock). */
async function lockWaiters(db: Kysely<unknown>, name: string): Promise<number> {
  const { rows } = await sql<{ count: number }>`
    select count(*)::int as count from pg_stat_activity where datname = ${name} and wait_event_type = 'Lock'
  `.execute(db);
  return rows[0]?.count ?? 0;
}

/**
 * Sessions of migrators that have asked for the migrators' lock: the one holding it (its last
 * statement the try that won), and each one still trying (a try, or the rollback after a try that
 * lost, outside any transaction).
 */
async function migratorSessions(db: Kysely<unknown>, name: string): Promise<number> {
  const { rows } = await sql<{ count: number }>`
    select count(*)::int as count from pg_stat_activity
    where datname = ${name} and pid <> pg_backend_pid()
      and (query like '%pg_try_advisory_xact_lock%' or (query = 'rollback' and state = 'idle'))
  `.execute(db);
  return rows[0]?.count ?? 0;
}

// Each test has a database of its own, and spends its time waiting on PostgreSQL: they run side by
// side (vitest's maxConcurrency, 5 at a time).
describe.concurrent('each migration, applied one step at a time on an empty database', () => {
  for (const [index, name] of MIGRATIONS.entries()) {
    const previous = MIGRATIONS[index - 1];

    test(`${name}: down leaves no trace of it, and up again rebuilds the identical schema`, async ({
      expect,
      onTestFinished,
    }) => {
      const { url, db } = await emptyDatabase(onTestFinished);
      const migrator = createMigrator(db);
      if (previous !== undefined) await ran(migrator.migrateTo(previous));
      const before = await readSchemaSnapshot(url);

      expect(await ran(migrator.migrateUp())).toEqual([`Up ${name}`]);
      const after = await readSchemaSnapshot(url);

      expect(await ran(migrator.migrateDown())).toEqual([`Down ${name}`]);
      expect(await readSchemaSnapshot(url)).toEqual(before);

      expect(await ran(migrator.migrateUp())).toEqual([`Up ${name}`]);
      expect(await readSchemaSnapshot(url)).toEqual(after);
    });
  }
});

describe.concurrent(
  'two `npm run migrate` processes started at the same moment',
  { timeout: 2 * NPM_RUN_TIMEOUT_MS },
  () => {
    test('one applies every migration; the other waits for it, then finds nothing to do', async ({
      onTestFinished,
    }) => {
      const { name, url, db } = await emptyDatabase(onTestFinished);
      // A no-op run creates the bookkeeping tables, so a third connection can hold one of them and
      // line both processes up behind it, whatever their start-up times.
      await ran(createMigrator(db).migrateTo(NO_MIGRATIONS));
      const gate = new pg.Client({ connectionString: url });
      await gate.connect();
      await gate.query('begin');
      await gate.query('lock table kysely_migration in access exclusive mode');

      const runs = Promise.all([npmRunMigrate(url), npmRunMigrate(url)]);
      try {
        // One holds the migrator's lock and waits for the table; the other keeps trying for the
        // migrator's lock (it polls, each try a transaction of its own, so between tries it is in
        // none that CREATE INDEX CONCURRENTLY would wait on).
        const lined = async () => ({
          waiters: await lockWaiters(db, name),
          migrators: await migratorSessions(db, name),
        });
        const deadline = Date.now() + NPM_RUN_TIMEOUT_MS;
        let seen = await lined();
        while ((seen.waiters < 1 || seen.migrators < 2) && Date.now() < deadline) {
          await sleep(50);
          seen = await lined();
        }
        expect(seen).toEqual({ waiters: 1, migrators: 2 });
      } finally {
        await gate.end();
      }

      const outcomes = await runs;
      expect(outcomes.map((outcome) => outcome.code)).toEqual([0, 0]);
      const outputs = outcomes.map((outcome) => outcome.output);
      expect(outputs.filter((output) => output.includes(`Applied ${MIGRATIONS.length} migration(s)`))).toHaveLength(1);
      expect(outputs.filter((output) => output.includes('Nothing to apply'))).toHaveLength(1);
      expect(await appliedRows(db)).toEqual(MIGRATIONS);
    });

    test('both succeed on a brand-new database, racing to create the bookkeeping tables too', async ({
      onTestFinished,
    }) => {
      const { url, db } = await emptyDatabase(onTestFinished);

      const outcomes = await Promise.all([npmRunMigrate(url), npmRunMigrate(url)]);

      expect(outcomes, outcomes.map((outcome) => outcome.output).join('\n')).toMatchObject([{ code: 0 }, { code: 0 }]);
      expect(await appliedRows(db)).toEqual(MIGRATIONS);
    });
  },
);

describe.concurrent('a failing migration', () => {
  test('rolls back whole, with the rest of its batch, and the error names the migration and the statement', async ({
    onTestFinished,
  }) => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'broken-migrations-'));
    onTestFinished(() => rm(folder, { recursive: true, force: true }));
    await writeFile(
      path.join(folder, '001_create_widgets.ts'),
      `export async function up(db) { await db.schema.createTable('widgets').addColumn('id', 'integer').execute(); }`,
    );
    await writeFile(
      path.join(folder, '002_index_widget_owner.ts'),
      `export async function up(db) {
        await db.schema.createTable('owners').addColumn('id', 'integer').execute();
        await db.schema.createIndex('widgets_owner_idx').on('widgets').column('owner').execute();
      }`,
    );
    const { url } = await emptyDatabase(onTestFinished);

    const error: unknown = await migrateToLatest(url, { migrationFolder: folder }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(MigrationError);
    expect(error).toMatchObject({
      migration: '002_index_widget_owner',
      statement: 'create index "widgets_owner_idx" on "widgets" ("owner")',
      cause: { code: '42703' },
    });
    expect((error as Error).message).toMatch(/^Migration 002_index_widget_owner failed: column "owner" does not exist/);
    expect((await readSchemaSnapshot(url)).tables).toEqual({});
    expect(await readMigrationStatus(url, { migrationFolder: folder })).toEqual({
      applied: [],
      pending: ['001_create_widgets', '002_index_widget_owner'],
      invalidIndexes: [],
    });
  });
});

describe.concurrent('migration status', () => {
  test('lists applied migrations with the time they ran, then the pending ones', async ({ onTestFinished }) => {
    const { url, db } = await emptyDatabase(onTestFinished);
    const [first, ...rest] = MIGRATIONS;
    if (first === undefined) throw new Error('migrations/ is empty');
    const start = Date.now();
    await ran(createMigrator(db).migrateTo(first));

    const status = await readMigrationStatus(url);

    expect(status).toEqual({
      applied: [{ name: first, executedAt: expect.any(Date), known: true }],
      pending: rest,
      invalidIndexes: [],
    });
    expect(status.applied[0]?.executedAt.getTime()).toBeGreaterThanOrEqual(start - 1000);
  });

  test('flags an applied migration that migrations/ does not have', async ({ onTestFinished }) => {
    const { url, db } = await emptyDatabase(onTestFinished);
    await ran(createMigrator(db).migrateToLatest());
    await sql`insert into kysely_migration (name, timestamp) values ('29990101000000_from_another_branch', ${new Date().toISOString()})`.execute(
      db,
    );

    const status = await readMigrationStatus(url);

    expect(status.pending).toEqual([]);
    expect(status.applied.map(({ name, known }) => ({ name, known }))).toEqual([
      ...MIGRATIONS.map((name) => ({ name, known: true })),
      { name: '29990101000000_from_another_branch', known: false },
    ]);
  });
});
