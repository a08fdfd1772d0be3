/**
 * `npm run test:pgbouncer [-- <vitest files or options>]`: the API's integration suite with every
 * application and repository connection going through a real PgBouncer in transaction mode.
 *
 * 1. The test server: TEST_DATABASE_URL's, or an embedded PostgreSQL under TEST_DATA_DIR
 *    (default .data/test-pgbouncer) on TEST_EMBEDDED_PG_PORT (default 54333).
 * 2. PgBouncer (transaction mode, on 127.0.0.1:TEST_PGBOUNCER_PORT, default a free port in
 *    6432–6440) in front of it,
 *    configured in a temporary directory, run as `postgres` when root.
 * 3. vitest with TEST_PGBOUNCER_URL set: test/helpers/database.ts then connects the test databases
 *    through PgBouncer with DB_POOL_MODE=transaction settings (no named prepared statements, no
 *    statement_timeout startup parameter). The harness's own admin work (cloning the template,
 *    dropping databases) still talks to the server directly.
 * 4. PgBouncer's own statistics must show it served the suite's transactions; then everything stops,
 *    on failure and on Ctrl-C too. The whole run is bounded by TEST_PGBOUNCER_TIMEOUT_MS (15 min).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deleteEmbeddedCluster } from '../../src/platform/db/embedded/admin.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { startPgBouncer, type PgBouncer } from './pgbouncer.ts';
import { freePort, stopProcess } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The suites that exercise the application and its repositories over the pool. Not
 * database-errors.test.ts: it logs in as roles of its own, which this PgBouncer does not know, to
 * provoke server-side login errors that PgBouncer reports in its own words.
 */
const DEFAULT_FILES = [
  // The HTTP-level suites of every feature (the keys' CLI test runs the command on its own database).
  'test/auth',
  'test/sessions',
  'test/users',
  'test/account-emails',
  'test/audit',
  'test/mfa',
  'test/passkeys',
  'test/oauth',
  'test/client',
  'test/keys/tokens.test.ts',
  'test/keys/signing-keys.test.ts',
  'test/keys/key-rotation.test.ts',
  'test/keys/introspection.test.ts',
  'test/platform/http',
  'test/platform/limits',
  'test/platform/email',
  'test/platform/server/two-instances.test.ts',
  'test/users/user-repository.test.ts',
  'test/platform/db/transactions.test.ts',
  'test/platform/db/pool-mode.test.ts',
];

const env = process.env;
const say = (message: string) => process.stderr.write(`[test:pgbouncer] ${message}\n`);

let embedded: EmbeddedPostgres | undefined;
let bouncer: PgBouncer | undefined;
let vitest: ChildProcess | undefined;

const dataDir = path.resolve(ROOT, env.TEST_DATA_DIR ?? '.data/test-pgbouncer');

async function cleanUp(): Promise<void> {
  if (vitest !== undefined) await stopProcess(vitest, 'SIGTERM', 10_000);
  await bouncer?.stop();
  await embedded?.stop();
  // Relocated under /var/lib/pg-fastify-backend (root, a checkout the postgres user cannot reach),
  // nothing else would ever remove it: it goes, as the main suite's does.
  if (embedded !== undefined && !embedded.clusterDir.startsWith(`${dataDir}${path.sep}`)) {
    await deleteEmbeddedCluster(dataDir);
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping`);
    void cleanUp().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const external = env.TEST_DATABASE_URL === '' ? undefined : env.TEST_DATABASE_URL;
  if (external === undefined) {
    embedded = await startEmbeddedPostgres({
      dataDir,
      port: Number(env.TEST_EMBEDDED_PG_PORT ?? 54333),
      log: say,
    });
  }
  const serverUrl = withDatabaseName(embedded?.url ?? external ?? '', 'postgres');
  const port = env.TEST_PGBOUNCER_PORT === undefined ? await freePort(6432, 6440) : Number(env.TEST_PGBOUNCER_PORT);
  bouncer = await startPgBouncer({ serverUrl, port, poolMode: 'transaction' });
  say(`PgBouncer ${port} (transaction mode) -> ${new URL(serverUrl).host}`);

  const args = process.argv.slice(2);
  const files = args.some((arg) => !arg.startsWith('-')) ? [] : DEFAULT_FILES;
  const timeoutMs = Number(env.TEST_PGBOUNCER_TIMEOUT_MS ?? 15 * 60_000);
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', ...files, ...args], {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...env, TEST_DATABASE_URL: serverUrl, TEST_PGBOUNCER_URL: bouncer.url('postgres') },
  });
  vitest = child;
  const watchdog = setTimeout(() => {
    say(`still running after ${timeoutMs} ms: stopping vitest`);
    void stopProcess(child, 'SIGTERM', 10_000);
  }, timeoutMs);
  const code = await new Promise<number>((resolve) => {
    child.once('exit', (exitCode) => {
      resolve(exitCode ?? 1);
    });
  });
  clearTimeout(watchdog);
  vitest = undefined;

  const totals = await bouncer.totals();
  say(`PgBouncer served ${totals.transactions} transactions and ${totals.queries} queries`);
  if (totals.transactions === 0) {
    say('no traffic went through PgBouncer: the harness did not pick up TEST_PGBOUNCER_URL');
    return 1;
  }
  return code;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  say(error instanceof Error ? (error.stack ?? error.message) : String(error));
} finally {
  await cleanUp();
}
process.exit(exitCode);
