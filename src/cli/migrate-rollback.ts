import { readdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MIGRATIONS_DIR } from '../db/migrator.ts';
import { runKyselyCtl } from './kysely-ctl.ts';

// npm run migrate:rollback [-- --all | --to NAME] — kysely-ctl underneath: `migrate:down` undoes
// the last migration, `migrate:down NAME` everything applied after NAME, `migrate:rollback --all`
// everything. kysely-ctl prints what it undid.
const USAGE = `Usage: npm run migrate:rollback [-- --all | --to NAME]
  (no option)  undo the last applied migration
  --all        undo every applied migration
  --to NAME    undo every migration applied after NAME (NAME stays applied);
               NAME may omit the timestamp prefix when it is unambiguous`;

try {
  process.exitCode = await runKyselyCtl(await kyselyCtlArgs());
} catch (error) {
  process.stderr.write(`migrate:rollback: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}

async function kyselyCtlArgs(): Promise<string[]> {
  // Without `--`, npm keeps the options for itself (--all becomes npm's own, --to is expanded to
  // --token-description) and runs the script bare, which would undo one migration instead of the
  // ones asked for.
  if (process.env.npm_config_all === 'true' || process.env.npm_config_token_description !== undefined) {
    throw new Error(`npm took the option for itself; pass it after \`--\`.\n${USAGE}`);
  }
  const values = parseOptions();
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (values.all === true && values.to !== undefined) throw new Error(`--all and --to exclude each other.\n${USAGE}`);
  if (values.all === true) return ['migrate:rollback', '--all'];
  if (values.to !== undefined) return ['migrate:down', await migrationNamed(values.to)];
  return ['migrate:down'];
}

function parseOptions(): { all?: boolean; to?: string; help?: boolean } {
  try {
    return parseArgs({
      options: { all: { type: 'boolean' }, to: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values;
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`, { cause: error });
  }
}

/** The migration in migrations/ called `name`, or ending in `_name`; an unknown name is an error, not a no-op. */
async function migrationNamed(name: string): Promise<string> {
  const names = (await readdir(MIGRATIONS_DIR))
    .filter((file) => /\.(m?ts|m?js)$/.test(file) && !file.endsWith('.d.ts'))
    .map((file) => file.replace(/\.[^.]+$/, ''));
  const matches = names.filter((candidate) => candidate === name || candidate.endsWith(`_${name}`));
  if (matches.length === 1 && matches[0] !== undefined) return matches[0];
  throw new Error(
    `${matches.length === 0 ? 'No migration' : 'More than one migration'} matches "${name}" in migrations/:\n` +
      names.map((candidate) => `  ${candidate}`).join('\n'),
  );
}
