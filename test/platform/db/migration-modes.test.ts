import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, inject, test } from 'vitest';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import {
  MigrationError,
  UneditedMigrationError,
  migrateToLatest,
  readMigrationStatus,
} from '../../../src/platform/db/migrator.ts';
import { adminQuery } from '../../helpers/database.ts';

type OnFinished = (fn: () => Promise<void>) => void;

/** An empty database of its own and a client on it, dropped when the test ends. */
async function scratch(onFinished: OnFinished): Promise<{ url: string; client: pg.Client }> {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_modes_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  const url = withDatabaseName(inject('adminUrl'), name);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onFinished(async () => {
    await client.end();
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  return { url, client };
}

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/**
 * A migrations folder holding `files` (name → JavaScript source, which may import kysely: the
 * folder is inside the project), removed when the test ends.
 */
async function folderOf(onFinished: OnFinished, files: Record<string, string>): Promise<string> {
  await mkdir(path.join(ROOT, '.data'), { recursive: true });
  const folder = await mkdtemp(path.join(ROOT, '.data', 'migrations-'));
  onFinished(() => rm(folder, { recursive: true, force: true }));
  for (const [name, source] of Object.entries(files)) await writeFile(path.join(folder, `${name}.js`), source);
  return folder;
}

const CREATE_USERS = `export async function up(db) {
  await db.schema.createTable('users').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('email', 'text').execute();
  await db.insertInto('users').values([{ id: 1, email: 'a@example.com' }, { id: 2, email: 'a@example.com' }]).execute();
}
export async function down(db) { await db.schema.dropTable('users').execute(); }`;

async function indexes(client: pg.Client): Promise<{ name: string; valid: boolean }[]> {
  const { rows } = await client.query<{ name: string; valid: boolean }>(
    `select c.relname as name, i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid
     join pg_class t on t.oid = i.indrelid where t.relname = 'users' and not i.indisprimary order by 1`,
  );
  return rows;
}

describe('a migration that exports transaction = false', () => {
  test('runs outside a transaction (CREATE INDEX CONCURRENTLY works), between the transactional groups around it', async ({
    onTestFinished,
  }) => {
    const { url, client } = await scratch(onTestFinished);
    const folder = await folderOf(onTestFinished, {
      '001_create_users': CREATE_USERS,
      '002_index_email': `import { sql } from 'kysely';
        export const transaction = false;
        export async function up(db) { await sql\`create index concurrently if not exists users_email_idx on users (email)\`.execute(db); }`,
      '003_add_name': `export async function up(db) { await db.schema.alterTable('users').addColumn('name', 'text').execute(); }`,
    });

    expect(await migrateToLatest(url, { migrationFolder: folder })).toEqual([
      '001_create_users',
      '002_index_email',
      '003_add_name',
    ]);
    expect(await indexes(client)).toEqual([{ name: 'users_email_idx', valid: true }]);
  });

  test('failing halfway is reported with the invalid index it left and what to do, and stays pending', async ({
    onTestFinished,
  }) => {
    const { url, client } = await scratch(onTestFinished);
    const folder = await folderOf(onTestFinished, {
      '001_create_users': CREATE_USERS,
      // The two rows share an email: the unique index fails after it was created, invalid.
      '002_unique_email': `import { sql } from 'kysely';
        export const transaction = false;
        export async function up(db) { await sql\`create unique index concurrently users_email_unique on users (email)\`.execute(db); }`,
    });

    const error: unknown = await migrateToLatest(url, { migrationFolder: folder }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(MigrationError);
    expect(error).toMatchObject({
      migration: '002_unique_email',
      statement: 'create unique index concurrently users_email_unique on users (email)',
      invalidIndexes: ['users_email_unique'],
      cause: { code: '23505' },
    });
    const message = (error as Error).message;
    expect(message).toContain('runs outside a transaction');
    expect(message).toContain('DROP INDEX CONCURRENTLY users_email_unique');
    expect(await indexes(client)).toEqual([{ name: 'users_email_unique', valid: false }]);
    const status = await readMigrationStatus(url, { migrationFolder: folder });
    expect(status.applied.map((migration) => migration.name)).toEqual(['001_create_users']);
    expect(status.pending).toEqual(['002_unique_email']);
    expect(status.invalidIndexes).toEqual(['users_email_unique']);
  });

  test('holds the migrators’ lock while it runs: a second migrator waits, then finds nothing to do', async ({
    onTestFinished,
  }) => {
    const { url, client } = await scratch(onTestFinished);
    const folder = await folderOf(onTestFinished, {
      '001_create_users': CREATE_USERS,
      '002_slow': `import { sql } from 'kysely';
        export const transaction = false;
        export async function up(db) { await sql\`select pg_sleep(1.5)\`.execute(db); }`,
    });

    const first = migrateToLatest(url, { migrationFolder: folder });
    // The second starts while the first is inside its non-transactional step.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const { rows } = await client.query(
        `select 1 from pg_stat_activity where query like 'select pg_sleep(1.5)%' and pid <> pg_backend_pid()`,
      );
      if (rows.length > 0) break;
      await sleep(20);
    }
    const second = migrateToLatest(url, { migrationFolder: folder });

    expect((await Promise.all([first, second])).map((applied) => applied.length).sort()).toEqual([0, 2]);
    const { rows } = await client.query<{ name: string }>('select name from kysely_migration order by name');
    expect(rows.map((row) => row.name)).toEqual(['001_create_users', '002_slow']);
  });
});

describe('an unedited `npm run migrate:make` template', () => {
  test('is refused by name, and nothing of the run is applied', async ({ onTestFinished }) => {
    const { url } = await scratch(onTestFinished);
    const folder = await folderOf(onTestFinished, {
      '001_create_users': CREATE_USERS,
      '002_add_nickname': `// \`down\` must undo \`up\` completely.
export async function up(db) {
  // await db.schema.alterTable('users').addColumn('nickname', 'text').execute();
}

export async function down(db) {
  // await db.schema.alterTable('users').dropColumn('nickname').execute();
}`,
    });

    const error: unknown = await migrateToLatest(url, { migrationFolder: folder }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(UneditedMigrationError);
    expect((error as Error).message).toMatch(/^Migration 002_add_nickname is the unedited template/);
    expect((await readMigrationStatus(url, { migrationFolder: folder })).pending).toEqual([
      '001_create_users',
      '002_add_nickname',
    ]);
  });
});

describe('a migration that needs a lock another session holds', () => {
  const ADD_NICKNAME = `export async function up(db) { await db.schema.alterTable('users').addColumn('nickname', 'text').execute(); }
    export async function down(db) { await db.schema.alterTable('users').dropColumn('nickname').execute(); }`;

  /**
   * Reads users every 20 ms on a connection of its own until `stop`: `progress` counts the answers
   * so far, `result` gives the count and the slowest answer once `stop` settled.
   */
  function readUsersUntil(url: string, stop: Promise<unknown>) {
    const progress = { answered: 0, slowestMs: 0 };
    const result = (async () => {
      const reader = new pg.Client({ connectionString: url });
      await reader.connect();
      const state = { done: false };
      void stop.finally(() => {
        state.done = true;
      });
      try {
        while (!state.done) {
          const started = performance.now();
          await reader.query('select count(*) from users');
          progress.slowestMs = Math.max(progress.slowestMs, performance.now() - started);
          progress.answered += 1;
          await sleep(20);
        }
      } finally {
        await reader.end();
      }
      return { ...progress };
    })();
    return { progress, result };
  }

  async function migratedWithHolder(onTestFinished: OnFinished) {
    const { url, client } = await scratch(onTestFinished);
    const folder = await folderOf(onTestFinished, { '001_create_users': CREATE_USERS });
    await migrateToLatest(url, { migrationFolder: folder });
    await writeFile(path.join(folder, '002_add_nickname.js'), ADD_NICKNAME);
    // A long transaction that read users: ALTER TABLE must wait for it, and every query on users
    // arriving after the ALTER queues behind the ALTER.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    onTestFinished(() => holder.end());
    await holder.query('begin');
    await holder.query('select * from users');
    return { url, client, folder, holder };
  }

  test('gives up after its lock timeout and bounded retries while application queries keep being answered', async ({
    onTestFinished,
  }) => {
    const { url, client, folder } = await migratedWithHolder(onTestFinished);
    const retries: string[] = [];
    const started = performance.now();

    const migration = migrateToLatest(url, {
      migrationFolder: folder,
      lockTimeoutMs: 300,
      lockRetries: 2,
      retryDelayMs: 200,
      onRetry: (message) => retries.push(message),
    }).catch((error: unknown) => error);
    const reads = await readUsersUntil(url, migration).result;
    const error = await migration;

    expect(error).toBeInstanceOf(MigrationError);
    expect(error).toMatchObject({ migration: '002_add_nickname', cause: { code: '55P03' } });
    expect((error as Error).message).toContain('lock_timeout 300 ms, 2 retries');
    expect((error as Error).message).toContain('failed statement: alter table "users" add column "nickname" text');
    expect(retries).toHaveLength(2);
    // 3 attempts of 300 ms and 200 + 400 ms between them, not the holder's lifetime.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(reads.answered).toBeGreaterThan(5);
    // A query waits at most one lock timeout behind the queued ALTER (and machine noise).
    expect(reads.slowestMs).toBeLessThan(300 + 1_000);
    const { rows } = await client.query(`select 1 from information_schema.columns where column_name = 'nickname'`);
    expect(rows).toEqual([]);
    expect((await readMigrationStatus(url, { migrationFolder: folder })).pending).toEqual(['002_add_nickname']);
  });

  test('succeeds on a retry once the holder commits', async ({ onTestFinished }) => {
    const { url, client, folder, holder } = await migratedWithHolder(onTestFinished);
    const retries: string[] = [];

    const migration = migrateToLatest(url, {
      migrationFolder: folder,
      lockTimeoutMs: 300,
      lockRetries: 10,
      retryDelayMs: 100,
      onRetry: (message) => retries.push(message),
    });
    const migrating = { pending: true };
    const settled = () => {
      migrating.pending = false;
    };
    migration.then(settled, settled);
    const reads = readUsersUntil(
      url,
      migration.catch(() => undefined),
    );
    // The holder keeps its lock until the migration gave up once and application reads were
    // answered after that while it still waited: a migration that queued every read behind its
    // ALTER for good would never get here.
    const deadline = performance.now() + 15_000;
    while (migrating.pending && retries.length === 0 && performance.now() < deadline) await sleep(20);
    const atFirstRetry = reads.progress.answered;
    while (migrating.pending && reads.progress.answered < atFirstRetry + 5 && performance.now() < deadline) {
      await sleep(20);
    }
    expect(migrating.pending).toBe(true);
    expect(retries.length).toBeGreaterThan(0);
    expect(reads.progress.answered).toBeGreaterThanOrEqual(atFirstRetry + 5);
    await holder.query('commit');

    expect(await migration).toEqual(['002_add_nickname']);
    await reads.result;
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]).toMatch(/^Migration 002_add_nickname could not get a lock within 300 ms/);
    const { rows } = await client.query(`select 1 from information_schema.columns where column_name = 'nickname'`);
    expect(rows).toHaveLength(1);
  });
});

/** `npm run <script>` as a developer types it, against `url`, with `env` on top. */
async function npmRun(
  script: string,
  url: string,
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<{ code: number; output: string }> {
  // kysely-ctl's logger goes quiet under NODE_ENV=test; the developer's terminal is not a test.
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])],
      { cwd: ROOT, env: { ...base, DATABASE_URL: url, ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
          output: stdout + stderr,
        });
      },
    );
  });
}

describe('npm run migrate:rollback whose down fails', () => {
  test(
    'prints one message naming the migration and the statement, no stack, and undoes nothing',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, client } = await scratch(onTestFinished);
      const INDEXES = '20261201140000_users_prefix_search_indexes';
      const all = await migrateToLatest(url);
      // Later migrations are undone first, so the CONCURRENTLY one is the last applied.
      const undo = await npmRun('migrate:rollback', url, {}, ['--to', INDEXES]);
      expect(undo.code, undo.output).toBe(0);
      const applied = all.slice(0, all.indexOf(INDEXES) + 1);
      expect(applied.at(-1)).toBe(INDEXES);
      // A session building an index holds SHARE on users: DROP INDEX CONCURRENTLY cannot get its lock.
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      onTestFinished(() => holder.end());
      await holder.query('begin');
      await holder.query('lock table users in share mode');

      const { code, output } = await npmRun('migrate:rollback', url, { MIGRATION_LOCK_TIMEOUT_MS: '200' });

      expect(code).toBe(1);
      expect(output).toContain(
        'Undoing migration 20261201140000_users_prefix_search_indexes failed: canceling statement due to lock timeout',
      );
      expect(output).toContain('failed statement: DROP INDEX CONCURRENTLY IF EXISTS users_name_prefix_idx');
      expect(output.match(/Undoing migration/g)).toHaveLength(1);
      expect(output).not.toMatch(/^\s+at /m);
      expect(output.trim().split('\n').length).toBeLessThan(12);
      const { rows } = await client.query<{ name: string }>('select name from kysely_migration order by name');
      expect(rows.map((row) => row.name)).toEqual(applied);
    },
  );
});
