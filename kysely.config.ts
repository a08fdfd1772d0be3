import { Kysely, PostgresDialect } from 'kysely';
import { defineConfig, getKnexTimestampPrefix } from 'kysely-ctl';
import pg from 'pg';
import { loadConfig } from './src/config.ts';
import { createMigrator } from './src/db/migrator.ts';
import { openDatabaseTarget } from './src/db/target.ts';

const config = loadConfig();

// kysely-ctl (npm run migrate, migrate:rollback, migrate:status, migrate:make) works on the same
// database as `npm start`: DATABASE_URL, or the embedded PostgreSQL under .data/, started for the
// command and stopped after it unless the server already runs it.
export default defineConfig({
  kysely: async () => {
    if (config.database.poolMode === 'transaction') {
      // Kept an operator's command: it talks to PostgreSQL itself, where nothing of a session can leak.
      throw new Error(
        'kysely-ctl needs a session of PostgreSQL itself: run it with DB_POOL_MODE=session and DATABASE_URL pointing at PostgreSQL itself ' +
          '(not PgBouncer in transaction mode), or let the server migrate (MIGRATE_ON_START=true, which works through PgBouncer).',
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
          connect: () => pool.connect(),
          end: async () => {
            await pool.end();
            await target.close();
          },
        },
      }),
    });
  },
  migrations: {
    // The project's migrator (src/db/migration-runner.ts): per-migration transaction mode, lock
    // timeouts, refusal of the unedited template, and errors that name the statement.
    migrator: (db) =>
      createMigrator(db, {
        ...config.migrations,
        onRetry: (message) => process.stderr.write(`${message}\n`),
      }),
    getMigrationPrefix: getKnexTimestampPrefix,
  },
});
