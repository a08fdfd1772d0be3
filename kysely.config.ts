import { Kysely, PostgresDialect } from 'kysely';
import { defineConfig, getKnexTimestampPrefix } from 'kysely-ctl';
import pg from 'pg';
import { commandContext, exitOnConnectionFailure } from './src/cli/report.ts';
import { loadConfig, loadEnvFile } from './src/config.ts';
import { openDatabaseTarget } from './src/db/target.ts';

// kysely-ctl (npm run migrate, migrate:rollback, migrate:status, migrate:make) works on the same
// database as `npm start`: DATABASE_URL, or the embedded PostgreSQL under .data/, started for the
// command and stopped after it unless the server already runs it.
export default defineConfig({
  kysely: async () => {
    loadEnvFile();
    const config = loadConfig();
    if (config.database.poolMode === 'transaction') {
      // kysely-ctl holds Kysely's session-level advisory lock across the migration transaction; behind
      // PgBouncer in transaction mode the unlock may reach another server connection and the lock leak.
      throw new Error(
        'kysely-ctl needs a session: run it with DB_POOL_MODE=session and DATABASE_URL pointing at PostgreSQL itself ' +
          '(not PgBouncer in transaction mode), or let the server migrate (MIGRATE_ON_START=true locks per transaction).',
      );
    }
    const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
    // kysely-ctl exits the process at once when a migration fails, before `end` below can run.
    process.once('exit', () => target.embedded?.stopSync());
    const pool = new pg.Pool({ connectionString: target.url, max: 1 });
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
      // kysely-ctl names the migration that failed; this names the statement.
      log: (event) => {
        if (event.level === 'error') process.stderr.write(`failed statement: ${event.query.sql}\n`);
      },
    });
  },
  migrations: {
    migrationFolder: 'migrations',
    getMigrationPrefix: getKnexTimestampPrefix,
  },
});
