import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MIGRATIONS_DIR } from '../../src/platform/db/migrator.ts';
import { runKyselyCtl } from './kysely-ctl.ts';

// npm run migrate:make NAME — the name checked here (one snake_case word), then kysely-ctl names and creates the file; its template types the
// database as `Kysely<any>`, which this project's lint rejects, so the new file gets ours.
const TEMPLATE = `import type { Kysely } from 'kysely';

// Migrations are frozen in time: they take an untyped Kysely, never the generated DB interface.
// \`down\` must undo \`up\` completely: test/platform/db/migrations.test.ts checks the round trip.
export async function up(db: Kysely<unknown>): Promise<void> {
  // await db.schema.alterTable('users').addColumn('nickname', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // await db.schema.alterTable('users').dropColumn('nickname').execute();
}
`;

const USAGE = 'npm run migrate:make -- NAME, NAME in snake_case (a-z, 0-9, _), e.g. add_users_nickname';

/**
 * The migration's name, or undefined after saying in one line what is wrong with the arguments:
 * none (kysely-ctl would print its whole help), several, or not snake_case (it becomes the file
 * name: "Add Nick Name!" is refused, with the name it would have been).
 */
function migrationName(args: readonly string[]): string | undefined {
  const [name, ...rest] = args;
  if (name === undefined || name.trim() === '') {
    process.stderr.write(`migrate:make: no name given. Run: ${USAGE}\n`);
    return undefined;
  }
  if (rest.length > 0 || name.startsWith('-')) {
    process.stderr.write(`migrate:make: expected one name, got ${JSON.stringify(args.join(' '))}. Run: ${USAGE}\n`);
    return undefined;
  }
  if (!/^[a-z][a-z0-9_]*$/.test(name)) {
    const suggested = name
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^[_0-9]+|_+$/g, '');
    process.stderr.write(
      `migrate:make: ${JSON.stringify(name)} is not snake_case (a-z, 0-9, _, starting with a letter)` +
        `${suggested === '' ? '' : `; try: npm run migrate:make -- ${suggested}`}\n`,
    );
    return undefined;
  }
  return name;
}

const name = migrationName(process.argv.slice(2));
if (name === undefined) process.exit(2);
const before = new Set(await readdir(MIGRATIONS_DIR));
const code = await runKyselyCtl(['migrate:make', name]);
for (const file of await readdir(MIGRATIONS_DIR)) {
  const created = path.join(MIGRATIONS_DIR, file);
  if (before.has(file) || !file.endsWith('.ts') || !(await readFile(created, 'utf8')).includes('Kysely<any>')) continue;
  await writeFile(created, TEMPLATE);
  process.stdout.write(
    `Filled migrations/${file} with the project's template. Next: write up and down, then \`npm run migrate\`.\n`,
  );
}
process.exitCode = code;
