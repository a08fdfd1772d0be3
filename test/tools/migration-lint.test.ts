import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, test } from 'vitest';
import { formatFinding, lintMigrations } from '../../tools/migration-lint/index.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Fixture migrations (JavaScript that may import kysely: the folder is inside the project) and fixture "application code". */
async function fixture(
  onFinished: (fn: () => Promise<void>) => void,
  migrations: Record<string, string>,
  code: string,
): Promise<{ folder: string; sourceDir: string }> {
  await mkdir(path.join(ROOT, '.data'), { recursive: true });
  const root = await mkdtemp(path.join(ROOT, '.data', 'lint-'));
  onFinished(() => rm(root, { recursive: true, force: true }));
  const folder = path.join(root, 'migrations');
  const sourceDir = path.join(root, 'src');
  await mkdir(folder);
  await mkdir(sourceDir);
  for (const [name, body] of Object.entries(migrations)) {
    await writeFile(path.join(folder, `${name}.js`), `import { sql } from 'kysely';\n${body}`);
  }
  await writeFile(path.join(sourceDir, 'repository.ts'), code);
  return { folder, sourceDir };
}

const up = (statements: string[], header = '') =>
  `${header}\nexport async function up(db) {\n${statements.map((s) => `  await sql.raw(${JSON.stringify(s)}).execute(db);`).join('\n')}\n}`;

describe('npm run db:lint, on what each migration executed', () => {
  test('flags each unsafe operation on an existing table, with the migration, the statement, why, and the safe pattern', async ({
    onTestFinished,
  }) => {
    const { folder, sourceDir } = await fixture(
      onTestFinished,
      {
        // A table created in the same migration is not "existing": indexing it is harmless.
        '001_create_users': up([
          'create table users (id int primary key, email text, name text, nickname text)',
          'create index users_name_idx on users (name)',
        ]),
        '002_unsafe': up([
          'create index users_email_idx on users (email)',
          'alter table users add column token uuid default gen_random_uuid()',
          'alter table users add column created_at timestamptz default now()',
          'alter table users alter column name set not null',
          'alter table users alter column nickname type varchar(300)',
          'alter table users add constraint users_email_length check (char_length(email) > 2)',
          'create table teams (id int primary key)',
          'alter table users add column team_id int',
          'alter table users add constraint users_team_fkey foreign key (team_id) references teams (id) not valid',
        ]),
        '003_drop_and_rename': up([
          'alter table users drop column email',
          'alter table users rename column nickname to handle',
        ]),
      },
      // The application still reads email, no longer nickname.
      `export const columns = ['id', 'email'];\n`,
    );

    const findings = await lintMigrations(inject('adminUrl'), folder, { sourceDir });

    expect(findings.map(({ migration, rule, statement }) => ({ migration, rule, statement }))).toEqual([
      {
        migration: '002_unsafe',
        rule: 'create-index-not-concurrently',
        statement: 'create index users_email_idx on users (email)',
      },
      {
        migration: '002_unsafe',
        rule: 'add-column-volatile-default',
        statement: 'alter table users add column token uuid default gen_random_uuid()',
      },
      { migration: '002_unsafe', rule: 'set-not-null', statement: 'alter table users alter column name set not null' },
      {
        migration: '002_unsafe',
        rule: 'column-type-change',
        statement: 'alter table users alter column nickname type varchar(300)',
      },
      {
        migration: '002_unsafe',
        rule: 'add-constraint-validated',
        statement: 'alter table users add constraint users_email_length check (char_length(email) > 2)',
      },
      {
        migration: '003_drop_and_rename',
        rule: 'drop-column-still-read',
        statement: 'alter table users drop column email',
      },
    ]);
    const [first] = findings;
    if (first === undefined) throw new Error('no finding');
    expect(first.why).toContain('SHARE lock');
    expect(first.safe).toContain('CONCURRENTLY');
    expect(findings[5]?.why).toMatch(/Read by .*repository\.ts:1\./);
    expect(formatFinding(first)).toBe(
      [
        '002_unsafe: create-index-not-concurrently',
        '  statement: create index users_email_idx on users (email)',
        `  why: ${first.why}`,
        `  instead: ${first.safe}`,
        '  deliberate? add `// db-lint-ignore: create-index-not-concurrently <reason>` to the migration.',
      ].join('\n'),
    );
  });

  test('accepts the safe patterns and a finding acknowledged in the migration', async ({ onTestFinished }) => {
    const { folder, sourceDir } = await fixture(
      onTestFinished,
      {
        '001_create_users': up(['create table users (id int primary key, email text, name text)']),
        '002_index_concurrently': up(
          ['create index concurrently if not exists users_email_idx on users (email)'],
          'export const transaction = false;',
        ),
        '003_check_not_valid': up([
          'alter table users add constraint users_name_not_null check (name is not null) not valid',
          "alter table users add column tag text default 'none'",
        ]),
        '004_validate': up(['alter table users validate constraint users_name_not_null']),
        // SET NOT NULL after a validated check: PostgreSQL uses the check instead of scanning.
        '005_set_not_null': up(['alter table users alter column name set not null']),
        '006_acknowledged': up(
          ['create index users_name_idx on users (name)'],
          '// db-lint-ignore: create-index-not-concurrently users has ten rows in every environment',
        ),
      },
      `export const columns = ['id', 'email', 'name'];\n`,
    );

    expect(await lintMigrations(inject('adminUrl'), folder, { sourceDir })).toEqual([]);
  });
});
