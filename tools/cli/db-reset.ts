import { parseArgs } from 'node:util';
import { isProductionEnvironment, loadConfig, loadEnvFile } from '../../src/platform/config.ts';
import { dropDatabase, ensureDatabaseExists } from '../../src/platform/db/database-admin.ts';
import { migrateToLatest, migrationOptionsOf } from '../../src/platform/db/migrator.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { adminUrlOf, displayUrl, withTarget } from '../../src/platform/cli/target.ts';

const USAGE = `Usage: npm run db:reset [-- --force]
Drops the database npm start uses and migrates a new one: every row is lost.
Development only: refused with NODE_ENV=production, and with DATABASE_URL unless --force.`;

// npm run db:reset — a clean development database: drop it, create it, apply every migration.
try {
  process.exitCode = await main();
} catch (error) {
  reportFailure('db:reset', error, commandContext());
  process.exitCode = 1;
}

async function main(): Promise<number> {
  let force: boolean;
  try {
    force = parseArgs({ options: { force: { type: 'boolean', default: false } } }).values.force;
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    return 2;
  }
  loadEnvFile();
  if (isProductionEnvironment()) {
    process.stderr.write(`db:reset refused: NODE_ENV=production. It would drop every row.\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig();
  if (config.database.url !== undefined && !force) {
    process.stderr.write(
      `db:reset refused: DATABASE_URL is set (${displayUrl(config.database.url)}), and that database would be ` +
        'dropped. Pass `-- --force` if that is what you want.\n',
    );
    return 2;
  }
  return withTarget(async (target) => {
    const name = decodeURIComponent(new URL(target.url).pathname.slice(1));
    await dropDatabase(adminUrlOf(target), name);
    await ensureDatabaseExists(adminUrlOf(target), name);
    const applied = await migrateToLatest(target.url, migrationOptionsOf(config));
    process.stdout.write(`reset ${displayUrl(target.url)}: dropped, created, ${applied.length} migration(s) applied\n`);
    return 0;
  });
}
