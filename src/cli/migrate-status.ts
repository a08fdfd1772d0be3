import { readMigrationStatus } from '../db/migrator.ts';
import { displayUrl, withTarget } from './target.ts';
import { commandContext, reportFailure } from './report.ts';

// npm run migrate:status — kysely-ctl's migrate:list without the times, so read them here:
// applied migrations with when they ran, then the pending ones in the order they will run.
try {
  await withTarget(async (target) => {
    const { applied, pending, invalidIndexes } = await readMigrationStatus(target.url);
    const lines = [
      `Migrations of ${displayUrl(target.url)}:`,
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
    process.stdout.write(`${lines.join('\n')}\n`);
  });
} catch (error) {
  reportFailure('migrate:status', error, commandContext());
  process.exitCode = 1;
}

/** `2026-11-27 10:02:03 UTC`: one zone for everyone reading the same database. */
function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
