import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { removeDataDir } from '../helpers/data-dirs.ts';
import { freePort } from '../helpers/processes.ts';
import { ROOT, stopPostgresOf } from '../reliability/support.ts';

// docs/schema-changes.md "Adding a column", followed literally on a scratch copy of the project: a new
// migration, `npm run migrate`, `npm run db:types`, `npm run db:check`. If a step of the manual
// stops working, this fails.

const execFileAsync = promisify(execFile);
const copy = path.join(ROOT, '.data', `walkthrough-${randomBytes(4).toString('hex')}`);
const dataDir = path.join(copy, '.data');

async function npmRun(script: string, args: readonly string[], env: Record<string, string>) {
  return execFileAsync('npm', ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])], {
    cwd: copy,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    timeout: 180_000,
  });
}

describe('the docs/schema-changes.md walkthrough', { timeout: 600_000 }, () => {
  afterAll(async () => {
    await stopPostgresOf(dataDir);
    await removeDataDir(dataDir);
    await fs.rm(copy, { recursive: true, force: true });
  });

  it('adds a column: migrate:make, migrate, db:types (the types have it), db:check passes', async () => {
    await fs.mkdir(copy, { recursive: true });
    for (const entry of [
      'package.json',
      'tsconfig.json',
      'kysely.config.ts',
      'src',
      'tools',
      'migrations',
      'db-types',
    ]) {
      await fs.cp(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
    }
    await fs.symlink(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
    const env = { DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort(55800, 55899)) };

    const before = new Set(await fs.readdir(path.join(copy, 'migrations')));
    await npmRun('migrate:make', ['add_nickname'], env);
    const created = (await fs.readdir(path.join(copy, 'migrations'))).filter((name) => !before.has(name));
    expect(created).toHaveLength(1);
    expect(created[0]).toMatch(/^\d{14}_add_nickname\.ts$/);
    await fs.writeFile(
      path.join(copy, 'migrations', created[0] ?? ''),
      `import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('nickname', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('nickname').execute();
}
`,
    );

    await npmRun('migrate', [], env);
    expect((await npmRun('migrate:status', [], env)).stdout).toMatch(/applied .*_add_nickname[\s\S]*0 pending/);
    await npmRun('db:types', [], env);
    expect(await fs.readFile(path.join(copy, 'db-types', 'index.ts'), 'utf8')).toMatch(/nickname: string \| null;/);
    const check = await npmRun('db:check', [], env);
    expect(check.stdout).toMatch(/db:check passed/);
  });
});
