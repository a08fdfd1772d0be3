import { loadConfig, loadEnvFile } from '../../src/platform/config.ts';
import { findEmbeddedPostgres } from '../../src/platform/db/embedded/admin.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { EMBEDDED_DATABASE_NAME } from '../../src/platform/db/target.ts';

// npm run db:url — the connection URL of the database `npm start` uses, password included, for
// psql or a GUI: `psql "$(npm run -s db:url)"`. Starts nothing: the embedded server's URL is
// read from DATA_DIR (its port is the running server's, or EMBEDDED_PG_PORT).
loadEnvFile();
const config = loadConfig();
if (config.database.url !== undefined) {
  process.stdout.write(`${config.database.url}\n`);
} else {
  const found = await findEmbeddedPostgres(config.dataDir, config.database.embeddedPort);
  if (found === undefined) {
    process.stderr.write(
      `db:url: there is no embedded PostgreSQL under ${config.dataDir} yet; \`npm start\` creates it.\n`,
    );
    process.exitCode = 1;
  } else {
    process.stdout.write(`${withDatabaseName(found.url, EMBEDDED_DATABASE_NAME)}\n`);
    if (!found.running)
      process.stderr.write('db:url: the embedded PostgreSQL is not running; `npm start` starts it.\n');
  }
}
