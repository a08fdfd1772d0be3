import { parseArgs } from 'node:util';
import { readMigrationStatus } from '../../src/platform/db/migrator.ts';
import { displayUrl, errorMessage, withTarget } from '../../src/platform/cli/target.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';

// npm run migrate:status [-- --json] — kysely-ctl's migrate:list without the times, so read them
// here: applied migrations with when they ran, then the pending ones in the order they will run.
const USAGE = 'Usage: npm run migrate:status [-- --json]';

process.exitCode = await main();

async function main(): Promise<number> {
  let values: { json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`migrate:status: ${errorMessage(error).split('. ')[0] ?? ''}. ${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n  --json   print the status as one JSON object\n`);
    return 0;
  }
  try {
    await withTarget(async (target) => {
      const status = await readMigrationStatus(target.url);
      process.stdout.write(
        values.json === true
          ? `${JSON.stringify({ url: displayUrl(target.url), ...status })}\n`
          : `${statusLines(displayUrl(target.url), status).join('\n')}\n`,
      );
    });
    return 0;
  } catch (error) {
    reportFailure('migrate:status', error, commandContext());
    return 1;
  }
}

function statusLines(
  url: string,
  { applied, pending, invalidIndexes }: Awaited<ReturnType<typeof readMigrationStatus>>,
) {
  return [
    `Migrations of ${url}:`,
    ...applied.map(
      ({ name, executedAt, known }) =>
        `  applied  ${formatTime(executedAt)}  ${name}${known ? '' : '  (not in migrations/: another branch?)'}`,
    ),
    ...pending.map((name) => `  pending  ${' '.repeat(23)}  ${name}`),
    `${applied.length} applied, ${pending.length} pending.${pending.length > 0 ? ' Run `npm run migrate` to apply.' : ''}`,
    // A failed CREATE INDEX CONCURRENTLY leaves one; its migration stays pending, and IF NOT EXISTS would skip it.
    ...invalidIndexes.map(
      (index) =>
        `  invalid index ${index}: left by a failed migration; DROP INDEX CONCURRENTLY ${index}, then migrate again`,
    ),
  ];
}

/** `2026-11-27 10:02:03 UTC`: one zone for everyone reading the same database. */
function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
