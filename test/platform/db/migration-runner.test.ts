import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import { NO_MIGRATIONS } from 'kysely/migration';
import pg from 'pg';
import { describe, expect, inject, test } from 'vitest';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { createMigrator, MIGRATION_LOCK_ID, MigrationError } from '../../../src/platform/db/migrator.ts';
import { adminQuery } from '../../helpers/database.ts';

// The migrator's other directions (`npm run migrate:rollback`, kysely-ctl's up/down/to, all
// through src/platform/db/migration-runner.ts): stepping up and down one migration, migrating to a named
// one in either direction or to none, and what it says when undoing cannot be done.
// test/platform/db/migration-modes.test.ts covers migrating to the latest.

type OnFinished = (fn: () => Promise<void>) => void;
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** An empty database, a Kysely and a client on it, and a migrator over `files`; all gone when the test ends. */
async function setup(onFinished: OnFinished, files: Record<string, string>) {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_runner_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  const url = withDatabaseName(inject('adminUrl'), name);
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 3 }) }),
  });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await mkdir(path.join(ROOT, '.data'), { recursive: true });
  const folder = await mkdtemp(path.join(ROOT, '.data', 'migrations-'));
  for (const [file, source] of Object.entries(files)) await writeFile(path.join(folder, `${file}.js`), source);
  onFinished(async () => {
    await client.end();
    await db.destroy();
    await rm(folder, { recursive: true, force: true });
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  const failures: Error[] = [];
  const migrator = createMigrator(db, { migrationFolder: folder, onFailure: (error) => failures.push(error) });
  const tables = async () =>
    (
      await client.query<{ name: string }>(
        `select table_name as name from information_schema.tables where table_schema = 'public' and table_name like 't\\_%' order by 1`,
      )
    ).rows.map((row) => row.name);
  const applied = async () =>
    (await client.query<{ name: string }>('select name from kysely_migration order by name')).rows.map(
      (row) => row.name,
    );
  return { migrator, tables, applied, failures, url };
}

const table = (
  name: string,
) => `export async function up(db) { await db.schema.createTable('${name}').addColumn('id', 'integer').execute(); }
export async function down(db) { await db.schema.dropTable('${name}').execute(); }`;

const THREE = { '001_a': table('t_a'), '002_b': table('t_b'), '003_c': table('t_c') };

describe('stepping and migrating to a named migration', () => {
  test('up applies one pending migration at a time; down undoes the last applied one', async ({ onTestFinished }) => {
    const { migrator, tables, applied } = await setup(onTestFinished, THREE);
    expect((await migrator.migrateUp()).results).toEqual([
      { migrationName: '001_a', direction: 'Up', status: 'Success' },
    ]);
    await migrator.migrateUp();
    expect(await tables()).toEqual(['t_a', 't_b']);
    expect((await migrator.migrateDown()).results).toEqual([
      { migrationName: '002_b', direction: 'Down', status: 'Success' },
    ]);
    expect(await tables()).toEqual(['t_a']);
    expect(await applied()).toEqual(['001_a']);
  });

  test('to a pending migration applies up to it; to an applied one undoes those after it; to none undoes all', async ({
    onTestFinished,
  }) => {
    const { migrator, tables, applied } = await setup(onTestFinished, THREE);
    expect((await migrator.migrateTo('002_b')).results?.map((r) => r.migrationName)).toEqual(['001_a', '002_b']);
    expect(await tables()).toEqual(['t_a', 't_b']);
    await migrator.migrateToLatest();
    const back = await migrator.migrateTo('001_a');
    expect(back.results).toEqual([
      { migrationName: '003_c', direction: 'Down', status: 'Success' },
      { migrationName: '002_b', direction: 'Down', status: 'Success' },
    ]);
    expect(await applied()).toEqual(['001_a']);
    // Already there: nothing to do.
    expect((await migrator.migrateTo('001_a')).results).toEqual([]);
    await migrator.migrateTo(NO_MIGRATIONS);
    expect(await tables()).toEqual([]);
    expect(await applied()).toEqual([]);
  });

  test('to a migration that does not exist: an error, reported, and nothing run', async ({ onTestFinished }) => {
    const { migrator, tables, failures } = await setup(onTestFinished, THREE);
    const { error, results } = await migrator.migrateTo('004_nope');
    expect(String(error)).toContain('migration "004_nope" doesn\'t exist');
    expect(results).toBeUndefined();
    expect(failures.map((failure) => failure.message)).toEqual(['migration "004_nope" doesn\'t exist']);
    expect(await tables()).toEqual([]);
  });
});

describe('what undoing says when it cannot be done', () => {
  test('a migration without down(): named, with the direction, and it stays applied', async ({ onTestFinished }) => {
    const { migrator, applied, failures } = await setup(onTestFinished, {
      '001_a': table('t_a'),
      '002_no_down': `export async function up(db) { await db.schema.createTable('t_kept').addColumn('id', 'integer').execute(); }`,
    });
    await migrator.migrateToLatest();
    const { error, results } = await migrator.migrateDown();
    expect(error).toBeInstanceOf(MigrationError);
    expect((error as MigrationError).message).toBe(
      'Undoing migration 002_no_down failed: migration 002_no_down has no down() to undo it',
    );
    expect((error as MigrationError).statement).toBeUndefined();
    expect(results).toEqual([{ migrationName: '002_no_down', direction: 'Down', status: 'Error' }]);
    expect(failures).toEqual([error]);
    expect(await applied()).toEqual(['001_a', '002_no_down']);
  });

  test('a non-transactional migration whose down() fails: still applied, what it left, and to run migrate:rollback again', async ({
    onTestFinished,
  }) => {
    const { migrator, applied } = await setup(onTestFinished, {
      '001_a': table('t_a'),
      '002_alone': `import { sql } from 'kysely';
        export const transaction = false;
        export async function up(db) { await sql\`create index concurrently t_a_id on t_a (id)\`.execute(db); }
        export async function down(db) { await sql\`drop index concurrently t_a_no_such_index\`.execute(db); }`,
    });
    await migrator.migrateToLatest();
    const { error } = await migrator.migrateDown();
    const message = (error as MigrationError).message;
    expect(message).toContain('Undoing migration 002_alone failed: index "t_a_no_such_index" does not exist');
    expect(message).toContain('failed statement: drop index concurrently t_a_no_such_index');
    expect(message).toContain('what it did before the failure stays, and it is still applied.');
    expect(message).toContain('then run `npm run migrate:rollback` again.');
    expect(await applied()).toEqual(['001_a', '002_alone']);
  });

  test('an up() that throws something other than an Error: its text, no statement (the migration’s own code failed)', async ({
    onTestFinished,
  }) => {
    const { migrator, applied } = await setup(onTestFinished, {
      '001_throws': `export async function up() { throw 'the data is not what I expected'; }`,
    });
    const { error } = await migrator.migrateToLatest();
    expect(error).toBeInstanceOf(MigrationError);
    expect((error as MigrationError).message).toBe('Migration 001_throws failed: the data is not what I expected');
    expect(await applied()).toEqual([]);
  });
});

describe('waiting for another migrator', () => {
  test('waits outside any transaction between tries, so a CREATE INDEX CONCURRENTLY of the holder never waits for it', async ({
    onTestFinished,
  }) => {
    const { migrator, tables, url } = await setup(onTestFinished, { '001_a': table('t_a') });
    // Another migrator: holds the lock in an open transaction.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    onTestFinished(async () => {
      await other.end();
    });
    await other.query('begin');
    await other.query(`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID.toString()})`);
    const waiting = migrator.migrateToLatest();

    // The waiter's backend, sampled while it waits. One that stays in one transaction (polling
    // inside it, or blocked in pg_advisory_xact_lock) is never seen outside it, and always in the
    // same transaction. This one is outside any transaction between tries, and each try is a
    // transaction of its own. (How often a sample lands inside a try depends on the machine's
    // load, so the test asks for what no single long transaction can show, not for a ratio.)
    const samples: { state: string; xactStart: string | null }[] = [];
    const deadline = Date.now() + 15_000;
    while ((samples.length < 20 || !samples.some((s) => s.xactStart === null)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 37));
      const { rows } = await other.query<{ state: string; xact_start: string | null }>(
        `select state, xact_start::text from pg_stat_activity where datname = current_database()
         and pid <> pg_backend_pid() and backend_type = 'client backend'
         and query ~ 'pg_try_advisory_xact_lock|^rollback$'`,
      );
      samples.push(...rows.map((row) => ({ state: row.state, xactStart: row.xact_start })));
    }
    expect(samples.length).toBeGreaterThanOrEqual(20);
    expect(samples.filter((sample) => sample.state === 'idle' && sample.xactStart === null).length).toBeGreaterThan(0);
    const transactions = new Set(samples.flatMap((sample) => (sample.xactStart === null ? [] : [sample.xactStart])));
    if (samples.filter((sample) => sample.xactStart !== null).length > 1) expect(transactions.size).toBeGreaterThan(1);
    expect(await tables()).toEqual([]);

    await other.query('commit');
    expect((await waiting).error).toBeUndefined();
    expect(await tables()).toEqual(['t_a']);
  });
});
