import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MIGRATIONS_DIR } from '../db/migrator.ts';
import { runKyselyCtl } from './kysely-ctl.ts';

// npm run migrate:make NAME — kysely-ctl names and creates the file; its template types the
// database as `Kysely<any>`, which this project's lint rejects, so the new file gets ours.
const TEMPLATE = `import type { Kysely } from 'kysely';

// Migrations are frozen in time: they take an untyped Kysely, never the generated DB interface.
// \`down\` must undo \`up\` completely: test/integration/migrations.test.ts checks the round trip.
export async function up(db: Kysely<unknown>): Promise<void> {
  // await db.schema.alterTable('users').addColumn('nickname', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // await db.schema.alterTable('users').dropColumn('nickname').execute();
}
`;

const before = new Set(await readdir(MIGRATIONS_DIR));
const code = await runKyselyCtl(['migrate:make', ...process.argv.slice(2)]);
for (const file of await readdir(MIGRATIONS_DIR)) {
  const created = path.join(MIGRATIONS_DIR, file);
  if (before.has(file) || !file.endsWith('.ts') || !(await readFile(created, 'utf8')).includes('Kysely<any>')) continue;
  await writeFile(created, TEMPLATE);
  process.stdout.write(
    `Filled migrations/${file} with the project's template. Next: write up and down, then \`npm run migrate\`.\n`,
  );
}
process.exitCode = code;
