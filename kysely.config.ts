import { Kysely, PostgresDialect } from 'kysely';
import { defineConfig, getKnexTimestampPrefix } from 'kysely-ctl';
import pg from 'pg';
import { commandContext, exitOnConnectionFailure } from './src/platform/cli/report.ts';
import { loadConfig, loadEnvFile } from './src/platform/config.ts';
import { createMigrator, migrationOptionsOf } from './src/platform/db/migrator.ts';
import { openDatabaseTarget } from './src/platform/db/target.ts';

// kysely-ctl (npm run migrate:make, and kysely's own commands) works on the same
// database as `npm start`: DATABASE_URL, or the embedded PostgreSQL under .data/, started for the
// command and stopped after it unless the server already runs it.
export default defineConfig({
  kysely: async () => {
    loadEnvFile();
    const config = loadConfig();
    if (config.database.poolMode === 'transaction') {
      // An operator's command talks to PostgreSQL itself; the server's MIGRATE_ON_START is the PgBouncer path.
      throw new Error(
        'kysely-ctl needs a session: run it with DB_POOL_MODE=session and DATABASE_URL pointing at PostgreSQL itself ' +
          '(not PgBouncer in transaction mode), or let the server migrate (MIGRATE_ON_START=true locks per transaction).',
      );
    }
    const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
    // kysely-ctl exits the process at once when a migration fails, before `end` below can run.
    process.once('exit', () => target.embedded?.stopSync());
    // Two connections: one holds the migration lock for the whole run, the other migrates.
    const pool = new pg.Pool({ connectionString: target.url, max: 2 });
    return new Kysely<unknown>({
      dialect: new PostgresDialect({
        pool: {
          options: pool.options,
          // kysely-ctl would print a bare `connect ECONNREFUSED` and a stack: say which server and what to check.
          connect: () =>
            pool.connect().catch((error: unknown) => exitOnConnectionFailure('migrate', error, commandContext())),
          end: async () => {
            await pool.end();
            await target.close();
          },
        },
      }),
    });
  },
  migrations: {
    // The project's migrator (src/platform/db/migration-runner.ts): per-migration transaction mode, lock
    // timeouts with retries, refusal of the unedited template, failures that name the statement.
    migrator: (db) => {
      const config = loadConfig();
      const say = (message: string) => process.stderr.write(`${message}\n`);
      return createMigrator(db, {
        ...migrationOptionsOf(config, say),
        // kysely-ctl would print the error's stack, and again with its cause: one message instead.
        onFailure: (error) => {
          say(
            config.logLevel === 'debug' || config.logLevel === 'trace' ? (error.stack ?? error.message) : error.message,
          );
          process.exit(1);
        },
      });
    },
    getMigrationPrefix: getKnexTimestampPrefix,
  },
});
