import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { describe, expect, inject, test } from 'vitest';
import { createMigrator } from '../../src/platform/db/migrator.ts';
import {
  compareSchemas,
  diffSchemas,
  formatDifference,
  readSchemaSnapshot,
} from '../../tools/db-admin/schema-check.ts';
import { withScratchDatabase } from '../../tools/db-admin/scratch.ts';
import { isolatedDatabase } from '../helpers/database.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The tables of the `DB` interface in db-types/index.ts, sorted: what `npm run db:types` found. */
async function generatedTableNames(): Promise<string[]> {
  const types = await readFile(`${ROOT}/db-types/index.ts`, 'utf8');
  const body = /^export interface DB \{\n([^}]*)^\}/m.exec(types)?.[1] ?? '';
  return [...body.matchAll(/^\s+(\w+):/gm)].map((match) => match[1] ?? '').sort();
}

/** The schema check as db:check runs it: `url` against a scratch database migrated from migrations/. */
async function driftFromMigrations(url: string): Promise<string[]> {
  const differences = await withScratchDatabase(inject('adminUrl'), (scratchUrl) => compareSchemas(scratchUrl, url));
  return differences.map(formatDifference);
}

/** `npm run db:check` (node tools/cli/db-check.ts) with DATABASE_URL pointing at `url`. */
async function dbCheck(url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['tools/cli/db-check.ts'],
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: url }, timeout: 15_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
      },
    );
  });
}

describe('the schema check', () => {
  test('finds nothing on a database migrated from migrations/', async ({ onTestFinished }) => {
    const { url } = await isolatedDatabase(onTestFinished);

    expect(await driftFromMigrations(url)).toEqual([]);
  });

  test('reports an extra column, a dropped index and a changed default, one precise line each', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    await sql`alter table users add column nickname varchar(40)`.execute(db);
    await sql`drop index users_created_at_id_idx`.execute(db);
    await sql`alter table users alter column role set default 'admin'`.execute(db);

    expect(await driftFromMigrations(url)).toEqual([
      'extra   column users.nickname: character varying(40), nullable',
      "changed column users.role default: expected 'user'::text, found 'admin'::text",
      'missing index users_created_at_id_idx: CREATE INDEX ON users USING btree (created_at DESC, id DESC)',
    ]);
  });

  test('reports changed types, nullability and constraints, and extra tables, sequences and views', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    await sql`alter table refresh_tokens alter column token_hash type varchar(64)`.execute(db);
    await sql`alter table users alter column last_login_at set not null`.execute(db);
    await sql`alter table users drop constraint users_name_length`.execute(db);
    await sql`alter table users add constraint users_name_length check (char_length(name) <= 50)`.execute(db);
    await sql`alter table refresh_tokens drop constraint refresh_tokens_user_id_fkey`.execute(db);
    await sql`create table notes (id serial primary key, body text not null default '')`.execute(db);
    await sql`create view admins as select id from users where role = 'admin'`.execute(db);

    expect(await driftFromMigrations(url)).toEqual([
      "extra   table notes: (body text, not null, default ''::text; id integer, not null, default nextval('notes_id_seq'::regclass))",
      'changed column refresh_tokens.token_hash type: expected text, found character varying(64)',
      'missing constraint refresh_tokens.refresh_tokens_user_id_fkey: FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE',
      'changed column users.last_login_at nullability: expected nullable, found not null',
      'changed constraint users.users_name_length: expected CHECK (((char_length(name) >= 1) AND (char_length(name) <= 100))), ' +
        'found CHECK ((char_length(name) <= 50))',
      'extra   sequence notes_id_seq: integer start 1 increment 1',
      // pg_get_viewdef qualifies column names up to PostgreSQL 15, not from 16 on.
      expect.stringMatching(
        /^extra {3}view admins: SELECT (users\.)?id FROM users WHERE \(\(?(users\.)?role = 'admin'::text\)?\);$/,
      ),
    ]);
  });

  test('reads the same snapshot from two databases built alike, whatever their names', async ({ onTestFinished }) => {
    const [first, second] = await Promise.all([isolatedDatabase(onTestFinished), isolatedDatabase(onTestFinished)]);

    const [a, b] = await Promise.all([readSchemaSnapshot(first.url), readSchemaSnapshot(second.url)]);

    expect(a).toEqual(b);
    expect(diffSchemas(a, b)).toEqual([]);
    // Every table kysely-codegen found in the migrated schema (db-types/index.ts's DB), and no other.
    expect(Object.keys(a.tables)).toEqual(await generatedTableNames());
  });
});

describe('npm run db:check', () => {
  test('passes on a database migrated from migrations/', async ({ onTestFinished }) => {
    const { url } = await isolatedDatabase(onTestFinished);

    const { code, stdout } = await dbCheck(url);

    expect(stdout).toContain('✓ db-types/ is what kysely-codegen generates from migrations/');
    expect(stdout).toContain('has the schema migrations/ builds');
    expect(code).toBe(0);
  });

  test('fails on drift, printing each difference on a line of its own', async ({ onTestFinished }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    await sql`alter table users add column nickname text`.execute(db);

    const { code, stdout, stderr } = await dbCheck(url);

    expect(stdout).toContain('has drifted from the schema migrations/ builds (1 difference)');
    expect(stdout).toContain('    extra   column users.nickname: text, nullable\n');
    expect(stdout + stderr).not.toMatch(/\n\s+at /);
    expect(code).toBe(1);
  });

  test('reports pending migrations as such instead of comparing', async ({ onTestFinished }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { results = [] } = await createMigrator(db).migrateDown();
    const undone = results.map((result) => result.migrationName);

    const { code, stdout } = await dbCheck(url);

    expect(undone).toHaveLength(1);
    expect(stdout).toContain('has 1 pending migration; run `npm run migrate` first');
    expect(stdout).toContain(`    ${undone.join('')}\n`);
    expect(stdout).not.toContain('drifted');
    expect(code).toBe(1);
  });
});
