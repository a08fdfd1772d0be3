import { readdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  MIGRATIONS_DIR,
  migrationOptionsOf,
  rollBackMigrations,
  type RollbackScope,
} from '../../src/platform/db/migrator.ts';
import { configOrExit } from './migration-command.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { displayUrl, errorMessage, withTarget } from '../../src/platform/cli/target.ts';

// npm run migrate:rollback [-- --all | --to NAME] — undoes the last migration, everything applied
// after NAME, or everything, with the project's migrator, and lists only what it undid.
const USAGE = `Usage: npm run migrate:rollback [-- --all | --to NAME]
  (no option)  undo the last applied migration
  --all        undo every applied migration
  --to NAME    undo every migration applied after NAME (NAME stays applied);
               NAME may omit the timestamp prefix when it is unambiguous`;

/** A mistake in how the command was called: one line, then the usage. */
class UsageError extends Error {}

process.exitCode = await main();

async function main(): Promise<number> {
  let scope: RollbackScope;
  try {
    const chosen = await scopeAsked();
    if (chosen === undefined) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    scope = chosen;
  } catch (error) {
    process.stderr.write(`migrate:rollback: ${errorMessage(error)}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
  const config = configOrExit('migrate:rollback');
  if (config === undefined) return 1;
  try {
    return await withTarget(async (database) => {
      const say = (message: string) => process.stderr.write(`${message}\n`);
      const undone = await rollBackMigrations(database.url, scope, migrationOptionsOf(config, say));
      const where = displayUrl(database.url);
      process.stdout.write(
        undone.length === 0
          ? `Nothing to undo: ${where} has no migration applied${typeof scope === 'object' ? ` after ${scope.after}` : ''}.\n`
          : `Undid ${undone.length} migration(s) on ${where} (\`npm run migrate\` applies them again):\n` +
              undone.map((name) => `  ${name}\n`).join(''),
      );
      return 0;
    });
  } catch (error) {
    reportFailure('migrate:rollback', error, commandContext());
    return 1;
  }
}

/** What to undo, from the options; undefined for --help. */
async function scopeAsked(): Promise<RollbackScope | undefined> {
  // Without `--`, npm keeps the options for itself (--all becomes npm's own, --to is expanded to
  // --token-description) and runs the script bare, which would undo one migration instead of the
  // ones asked for.
  if (process.env.npm_config_all === 'true' || process.env.npm_config_token_description !== undefined) {
    throw new UsageError(`npm took the option for itself; pass it after \`--\`.\n${USAGE}`);
  }
  const values = parseOptions();
  if (values.help === true) return undefined;
  if (values.all === true && values.to !== undefined)
    throw new UsageError(`--all and --to exclude each other.\n${USAGE}`);
  if (values.all === true) return 'all';
  if (values.to !== undefined) return { after: await migrationNamed(values.to) };
  return 'last';
}

function parseOptions(): { all?: boolean; to?: string; help?: boolean } {
  try {
    return parseArgs({
      options: { all: { type: 'boolean' }, to: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values;
  } catch (error) {
    throw new UsageError(`${errorMessage(error)}\n${USAGE}`, { cause: error });
  }
}

/** The migration in migrations/ called `name`, or ending in `_name`; an unknown name is an error, not a no-op. */
async function migrationNamed(name: string): Promise<string> {
  const names = (await readdir(MIGRATIONS_DIR))
    .filter((file) => /\.(m?ts|m?js)$/.test(file) && !file.endsWith('.d.ts'))
    .map((file) => file.replace(/\.[^.]+$/, ''));
  const matches = names.filter((candidate) => candidate === name || candidate.endsWith(`_${name}`));
  if (matches.length === 1 && matches[0] !== undefined) return matches[0];
  throw new UsageError(
    `${matches.length === 0 ? 'No migration' : 'More than one migration'} matches "${name}" in migrations/:\n` +
      names.map((candidate) => `  ${candidate}`).join('\n'),
  );
}
