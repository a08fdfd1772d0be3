import { parseArgs } from 'node:util';
import { loadConfig } from '../../src/platform/config.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { migrationCount, pendingMigrations } from '../../src/platform/db/migrator.ts';
import { openDatabaseTarget } from '../../src/platform/db/target.ts';
import { MaintenanceJob, maintenanceSettings } from '../../src/platform/jobs/maintenance.ts';
import { displayUrl, errorMessage } from '../../src/platform/cli/target.ts';

const USAGE = `Usage: npm run db:prune -- [--json]
Runs the maintenance job once: deletes expired and revoked refresh tokens older than
REFRESH_TOKEN_GRACE_SECONDS (and whatever else src/platform/jobs/prune.repository.ts lists), in batches of
MAINTENANCE_BATCH_SIZE with MAINTENANCE_PAUSE_MS between them, or longer: at most
MAINTENANCE_MAX_BUSY_PERCENT of the run is spent deleting. For cron users, or deployments that
set MAINTENANCE_INTERVAL_SECONDS=0. Exits 0 when done, 0 with "skipped" when another instance was
pruning (it holds the lock), 1 on failure.
  --json   print the report as JSON`;

/**
 * npm run db:prune — one maintenance run from a terminal or cron.
 *
 * @example
 * ```sh
 * DATABASE_URL=postgres://app@db/app npm run db:prune
 * ```
 */
async function main(): Promise<number> {
  let values: { json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const config = loadConfig();
  const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
  const db = createDatabase({
    ...config.database,
    url: target.url,
    poolMax: 1,
    applicationName: `${config.database.applicationName} db:prune`,
  });
  try {
    // A database never migrated has no tables to prune: say so, not "Unexpected database error".
    const pending = await pendingMigrations(db);
    if (pending.length > 0) {
      const state =
        pending.length === (await migrationCount())
          ? 'has no tables yet (never migrated)'
          : `is ${pending.length} migration(s) behind`;
      process.stderr.write(
        `db:prune: ${displayUrl(target.url)} ${state}: run \`npm run migrate\`, then db:prune again\n`,
      );
      return 1;
    }
    const job = new MaintenanceJob({ db, ...maintenanceSettings(config.maintenance) });
    const report = await job.runOnce();
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ url: displayUrl(target.url), ...report })}\n`);
    } else if (report.outcome === 'skipped') {
      process.stdout.write(`Skipped: another instance is running maintenance on ${displayUrl(target.url)}\n`);
    } else {
      const lines = Object.entries(report.pruned).map(([rule, rows]) => `  ${rule}: ${rows} row(s) deleted`);
      process.stdout.write(
        `Pruned ${displayUrl(target.url)} in ${Math.round(report.durationMs)} ms (${report.batches} batch(es))\n${lines.join('\n')}\n`,
      );
    }
    return 0;
  } catch (error) {
    process.stderr.write(`db:prune failed: ${errorMessage(error)}\n`);
    return 1;
  } finally {
    await db.destroy();
    await target.close();
  }
}

process.exitCode = await main();
