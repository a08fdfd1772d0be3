import { parseArgs } from 'node:util';
import { migrateToLatest, migrationOptionsOf } from '../../src/platform/db/migrator.ts';
import { configOrExit } from './migration-command.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { displayUrl, errorMessage, withTarget } from '../../src/platform/cli/target.ts';

// npm run migrate — applies every pending migration to the database `npm start` uses, and lists
// the ones it applied (kysely-ctl's migrate:latest listed every migration as if each had run).
const USAGE = 'Usage: npm run migrate (applies every pending migration in migrations/; no options)';

process.exitCode = await main();

async function main(): Promise<number> {
  let help: boolean | undefined;
  try {
    ({
      values: { help },
    } = parseArgs({ options: { help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`migrate: ${errorMessage(error)}. ${USAGE}\n`);
    return 2;
  }
  if (help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = configOrExit('migrate');
  if (config === undefined) return 1;
  try {
    return await withTarget(async (target) => {
      const say = (message: string) => process.stderr.write(`${message}\n`);
      const applied = await migrateToLatest(target.url, migrationOptionsOf(config, say));
      const where = displayUrl(target.url);
      process.stdout.write(
        applied.length === 0
          ? `Nothing to apply: ${where} has every migration in migrations/.\n`
          : `Applied ${applied.length} migration(s) to ${where}:\n${applied.map((name) => `  ${name}\n`).join('')}`,
      );
      return 0;
    });
  } catch (error) {
    reportFailure('migrate', error, commandContext());
    return 1;
  }
}
