import { ConfigError } from '../../src/platform/config/reader.ts';
import { loadConfig, loadEnvFile, type Config } from '../../src/platform/config.ts';

/**
 * The configuration for an operator's migration command, or undefined after saying in one line
 * why it cannot run: an invalid environment, or PgBouncer in transaction mode.
 */
export function configOrExit(command: string): Config | undefined {
  let config: Config;
  try {
    loadEnvFile();
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${command} failed: ${error.message}\n`);
    return undefined;
  }
  if (config.database.poolMode === 'transaction') {
    // An operator's command talks to PostgreSQL itself; the server's MIGRATE_ON_START is the PgBouncer path.
    process.stderr.write(
      `${command} refused: DB_POOL_MODE=transaction, but this command needs a session of its own: run it with ` +
        'DB_POOL_MODE=session and DATABASE_URL pointing at PostgreSQL itself (not PgBouncer in transaction mode), ' +
        'or let the server migrate (MIGRATE_ON_START=true locks per transaction).\n',
    );
    return undefined;
  }
  return config;
}
