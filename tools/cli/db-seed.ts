import { isProductionEnvironment, loadConfig, loadEnvFile } from '../../src/platform/config.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { migrateToLatest, migrationOptionsOf, pendingMigrations } from '../../src/platform/db/migrator.ts';
import { openDatabaseTarget } from '../../src/platform/db/target.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { SEED_ADMIN, SEED_USER_PASSWORD, seedDevelopmentData } from '../seed.ts';
import { databaseOf, reportFailure } from '../../src/platform/cli/report.ts';

// npm run db:seed — development data (an admin and 36 users, with sessions and audit events) in the
// database `npm start` uses.
// Idempotent; refused when NODE_ENV=production; exit code 1 on any failure.
const USERS = 36;

process.exitCode = await main();

async function main(): Promise<number> {
  loadEnvFile();
  if (isProductionEnvironment()) {
    process.stderr.write('db:seed refused: NODE_ENV=production. Seeds are development data with known passwords.\n');
    return 2;
  }
  const config = loadConfig();
  await using stack = new AsyncDisposableStack();
  try {
    const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
    stack.defer(() => target.close());
    if (config.migrateOnStart) await migrateToLatest(target.url, migrationOptionsOf(config));
    const db = createDatabase({ ...config.database, url: target.url, poolMax: 1 });
    stack.defer(() => db.destroy());
    const pending = await pendingMigrations(db);
    if (pending.length > 0) throw new Error(`${pending.length} pending migration(s): run \`npm run migrate\` first`);
    const { created, total, sessions, events, adminCreated } = await seedDevelopmentData(
      { db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) },
      { users: USERS, sessionTtlSeconds: config.auth.refreshTokenTtlSeconds },
    );
    process.stdout.write(
      `db:seed: ${created} of ${total} accounts created (${total - created} already there), ` +
        `with ${sessions} sessions and ${events} audit events.\n` +
        (adminCreated
          ? `  admin: ${SEED_ADMIN.email} / ${SEED_ADMIN.password}\n`
          : `  admin: ${SEED_ADMIN.email} existed already, so its password was left unchanged: log in with the ` +
            'password it has, or run `npm run db:reset` then `npm run db:seed` for the seeded one\n') +
        `  users: user01@example.com … user${USERS}@example.com / ${SEED_USER_PASSWORD}\n`,
    );
    return 0;
  } catch (error) {
    reportFailure('db:seed', error, { logLevel: config.logLevel, database: databaseOf(config.database.url) });
    return 1;
  }
}
