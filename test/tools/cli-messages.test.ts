import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { MIGRATIONS_DIR, migrateToLatest, rollBackMigrations } from '../../src/platform/db/migrator.ts';
import { SEED_ADMIN } from '../../tools/seed.ts';
import { adminQuery, isolatedDatabase } from '../helpers/database.ts';

// Each operator command run as a developer types it (`npm run …`), on a database of the test's
// own: what it says must be one line of what happened and what to do, never a framework's help
// text, a generic error, or a list of things that did not happen.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MIGRATIONS = (await readdir(MIGRATIONS_DIR))
  .filter((file) => /\.(m?ts|m?js)$/.test(file) && !file.endsWith('.d.ts'))
  .map((file) => file.replace(/\.[^.]+$/, ''))
  .sort();
const LAST = MIGRATIONS.at(-1) ?? '';

type OnFinished = (fn: () => Promise<void>) => void;

/** `npm run <script> -- <args>` with DATABASE_URL (when given), its exit code and everything it printed. */
function npmRun(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
  input = '',
): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise((resolve) => {
    const child = execFile(
      'npm',
      ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
      },
    );
    child.stdin?.end(input);
  });
}

/** A database with nothing in it, never migrated; dropped when the test ends. */
async function emptyDatabase(onFinished: OnFinished): Promise<string> {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_cli_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  onFinished(async () => {
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  return withDatabaseName(inject('adminUrl'), name);
}

/** The lines a command printed, without blank ones. */
function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim() !== '');
}

describe.concurrent('what the operator commands say', { timeout: 60_000 }, () => {
  it('db:prune on a database never migrated says it has no tables yet and to run npm run migrate', async ({
    onTestFinished,
  }) => {
    const url = await emptyDatabase(onTestFinished);
    const { code, stdout, stderr } = await npmRun('db:prune', [], { DATABASE_URL: url });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(lines(stderr)).toHaveLength(1);
    expect(stderr).toMatch(/^db:prune: postgres:\/\/\S+ has no tables yet \(never migrated\): run `npm run migrate`/);
    expect(stderr).not.toContain('Unexpected database error');
  });

  it('db:seed says the admin existed and its password was left unchanged, instead of printing one that does not work', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    expect(
      (
        await npmRun(
          'user:create',
          ['--email', SEED_ADMIN.email, '--name', 'Mine'],
          { DATABASE_URL: url },
          'my own passphrase here\n',
        )
      ).code,
    ).toBe(0);

    const { code, stdout } = await npmRun('db:seed', [], { DATABASE_URL: url });
    expect(code, stdout).toBe(0);
    const adminLine = lines(stdout).find((line) => line.includes(SEED_ADMIN.email)) ?? '';
    expect(adminLine).toMatch(/existed already, so its password was left unchanged/);
    expect(stdout).not.toContain(SEED_ADMIN.password);
  });

  it('migrate lists only the migrations it applied, and says when there was nothing to apply', async ({
    onTestFinished,
  }) => {
    const url = await emptyDatabase(onTestFinished);
    await migrateToLatest(url);
    await rollBackMigrations(url, 'last');

    const first = await npmRun('migrate', [], { DATABASE_URL: url });
    expect(first.code, first.stderr).toBe(0);
    expect(lines(first.stdout)).toEqual([
      expect.stringMatching(/^Applied 1 migration\(s\) to postgres:\/\/\S+:$/),
      `  ${LAST}`,
    ]);

    const again = await npmRun('migrate', [], { DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(lines(again.stdout)).toEqual([
      expect.stringMatching(/^Nothing to apply: postgres:\/\/\S+ has every migration/),
    ]);
  });

  it('migrate:rollback lists only the migration it undid', async ({ onTestFinished }) => {
    const url = await emptyDatabase(onTestFinished);
    await migrateToLatest(url);

    const { code, stdout, stderr } = await npmRun('migrate:rollback', [], { DATABASE_URL: url });
    expect(code, stderr).toBe(0);
    expect(lines(stdout)).toEqual([
      expect.stringMatching(/^Undid 1 migration\(s\) on postgres:\/\/\S+ \(`npm run migrate` applies them again\):$/),
      `  ${LAST}`,
    ]);
  });

  it.each([
    ['no name', [], /^migrate:make: no name given\. Run: npm run migrate:make -- NAME/],
    [
      'a name that is not snake_case',
      ['Add Nick Name!'],
      /^migrate:make: "Add Nick Name!" is not snake_case .*try: npm run migrate:make -- add_nick_name$/,
    ],
  ] as const)(
    'migrate:make with %s says so in one line, without colour codes, and creates no file',
    async (_name, args, message) => {
      const before = await readdir(MIGRATIONS_DIR);
      const { code, stdout, stderr } = await npmRun('migrate:make', args);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(lines(stderr)).toEqual([expect.stringMatching(message)]);
      // eslint-disable-next-line no-control-regex
      expect(stderr).not.toMatch(/\u001b\[/);
      expect(await readdir(MIGRATIONS_DIR)).toEqual(before);
    },
  );

  it.each([
    ['without --name', ['--email', 'a@example.com'], /--name is missing/],
    ['without --email and --name', [], /--email and --name are missing/],
    [
      'with an unknown role',
      ['--email', 'a@example.com', '--name', 'A', '--role', 'root'],
      /--role must be admin or user, not "root"/,
    ],
    ['with an unknown option', ['--emial', 'a@example.com'], /Unknown option '--emial'/],
  ] as const)(
    'user:create %s says what is wrong and the command that works, in one line',
    async (_name, args, what) => {
      const { code, stdout, stderr } = await npmRun('user:create', args);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(lines(stderr)).toHaveLength(1);
      expect(stderr).toMatch(what);
      expect(stderr).toContain('Run: npm run user:create -- --email EMAIL --name NAME [--role admin|user]');
    },
  );

  it('migrate:status -- --json prints the status as JSON, and refuses an option it does not know', async ({
    onTestFinished,
  }) => {
    const url = await emptyDatabase(onTestFinished);
    await migrateToLatest(url);
    await rollBackMigrations(url, 'last');

    const json = await npmRun('migrate:status', ['--json'], { DATABASE_URL: url });
    expect(json.code, json.stderr).toBe(0);
    const status = JSON.parse(json.stdout) as {
      applied: { name: string }[];
      pending: string[];
      invalidIndexes: string[];
    };
    expect(status.applied.map((migration) => migration.name)).toEqual(MIGRATIONS.slice(0, -1));
    expect(status.pending).toEqual([LAST]);
    expect(status.invalidIndexes).toEqual([]);

    const unknown = await npmRun('migrate:status', ['--jsn'], { DATABASE_URL: url });
    expect(unknown.code).toBe(2);
    expect(lines(unknown.stderr)).toEqual([
      expect.stringMatching(/^migrate:status: Unknown option '--jsn'\. Usage: npm run migrate:status \[-- --json\]$/),
    ]);
  });

  it("the email try-it of docs/accounts.md says the link's token is POSTed to /auth/email/verify", async () => {
    const manual = await readFile(path.join(ROOT, 'docs/accounts.md'), 'utf8');
    const tryIt = /- \*\*Try it\*\*: `npm start`, register with curl[\s\S]*?\n- \*\*/.exec(manual)?.[0] ?? '';
    expect(tryIt).toMatch(/POST its\s+token to the API: `curl -s "\$API\/auth\/email\/verify"/);
  });
});
