import { buildApp, type App } from './app.ts';
import { createLogger } from './platform/http/fastify.ts';
import type { Config } from './platform/config.ts';
import { resolveEncryptionKey, resolveJwtSecret } from './platform/secrets.ts';
import { watchAvailability } from './platform/db/availability.ts';
import { createDatabase, createPool } from './platform/db/database.ts';
import { describeSyncStop } from './platform/db/embedded.ts';
import { migrateToLatest, migrationOptionsOf, pendingMigrations } from './platform/db/migrator.ts';
import { createReadDatabase } from './platform/db/replicas.ts';
import { openDatabaseTarget } from './platform/db/target.ts';
import { UserRepository } from './users/users.repository.ts';
import { AppMetrics } from './platform/metrics/metrics.ts';
import { UnreadableSigningKeyError } from './keys/signing-keys.ts';
import { startEmailDispatcher } from './platform/email/start.ts';
import { openCaches } from './sessions/caches.ts';
import { lowerWorkerThreadPriority } from './platform/thread-priority.ts';
import { startMaintenance } from './platform/jobs/start.ts';

/** The steps of start-up, in order. Each one's resources are closed if a later one fails. */
export const STARTUP_STEPS = [
  'database',
  'migrations',
  'change-feed',
  'pool',
  'pending-migrations',
  'replicas',
  'jwt-secret',
  'email-dispatcher',
  'app',
  'thread-priority',
  'workers',
  'listen',
] as const;

export type StartupStep = (typeof STARTUP_STEPS)[number];

/** A refusal to start that is the operator's to fix: reported as its message alone. */
export class StartupRefusedError extends Error {
  override readonly name = 'StartupRefusedError';
}

export interface OpenServerOptions {
  /** Start-up messages (before the app's logger exists). */
  readonly say: (message: string) => void;
  readonly prettyLogs?: boolean;
  /** Aborting (a signal during start-up) stops at the next step and closes what was opened. */
  readonly signal?: AbortSignal;
  /** Runs after each step; a test throws here to inject a failure at that step. */
  readonly afterStep?: (step: StartupStep) => void | Promise<void>;
  /**
   * Runs once the database is reachable, with a blocking stop of it: a forced exit during
   * start-up (or shutdown) stops the embedded PostgreSQL this way before the process goes.
   */
  readonly onDatabase?: (stopSync: () => string) => void;
}

export interface RunningServer {
  readonly app: App;
  /**
   * Stops accepting connections, lets in-flight requests finish, then closes what start-up opened
   * in reverse order: change feed, replicas, pool, embedded PostgreSQL. Idempotent.
   */
  close(): Promise<void>;
  /**
   * The last resort when the grace period ran out: stops the embedded PostgreSQL synchronously,
   * and says in a clause what became of it.
   */
  stopDatabaseSync(): string;
}

/**
 * Starts the API as `npm start` runs it: reach (or start) PostgreSQL, migrate when asked, refuse
 * a schema that is behind, open the pool, replicas and change feed, build the app and listen.
 * Every resource goes on one disposal stack the moment it exists, so a failure at any step
 * closes exactly what was opened, in reverse order, and `close()` does the same on shutdown.
 *
 * @example
 * ```ts
 * const server = await openServer(loadConfig(), { say: console.error });
 * // …
 * await server.close();
 * ```
 */
export async function openServer(config: Config, options: OpenServerOptions): Promise<RunningServer> {
  const { say } = options;
  const step = async (name: StartupStep) => {
    options.signal?.throwIfAborted();
    await options.afterStep?.(name);
  };
  if (config.email.transport === undefined) {
    throw new StartupRefusedError(
      'Refusing to start: NODE_ENV=production needs SMTP_URL to send email ' +
        '(or EMAIL_TRANSPORT=log to write emails, links included, to the log on purpose).',
    );
  }
  await using stack = new AsyncDisposableStack();

  const target = await openDatabaseTarget(config, say);
  stack.defer(() => target.close());
  const stopDatabaseSync = () =>
    target.embedded === undefined
      ? 'the database at DATABASE_URL was left as it is (this process did not start it)'
      : describeSyncStop(target.embedded.stopSync());
  options.onDatabase?.(stopDatabaseSync);
  await step('database');

  if (config.migrateOnStart) {
    const applied = await migrateToLatest(target.url, migrationOptionsOf(config, say));
    if (applied.length > 0) say(`applied migrations: ${applied.join(', ')}`);
  }
  await step('migrations');

  // Authenticated users' rows and live sessions are cached, and dropped as soon as they change or
  // end (LISTEN/NOTIFY); a unit of work that changed one waits until the feed has heard it.
  const caches = await openCaches(config, target.url, stack);
  await step('change-feed');

  const metrics = new AppMetrics();
  const log = createLogger(config, { pretty: options.prettyLogs });
  const databaseConfig = { ...config.database, url: target.url };
  const pool = createPool(databaseConfig);
  const hooks = metrics.databaseHooks(() => log, config.database);
  const db = createDatabase(databaseConfig, {
    pool,
    ...hooks,
    ...(caches === undefined ? {} : { changes: caches.feed }),
    ...watchAvailability(hooks, () => log, target.url, target.embedded ? 'the embedded PostgreSQL' : 'DATABASE_URL', {
      quietUntilReached: true,
    }),
  });
  stack.defer(() => db.destroy());
  await step('pool');

  const pending = await pendingMigrations(db);
  if (pending.length > 0) {
    throw new StartupRefusedError(
      `Refusing to start: ${pending.length} pending migration(s) (${pending.join(', ')}). ` +
        'Run `npm run migrate`, or set MIGRATE_ON_START=true.',
    );
  }
  await step('pending-migrations');
  if (config.env === 'development' && (await new UserRepository(db).list(1)).length === 0) {
    say('the database has no users yet: `npm run db:seed` adds an admin and 36 users (and prints how to log in)');
  }

  // Reads that may be slightly stale (the user listing) go to a replica when one is usable.
  const readDb = createReadDatabase(db, {
    replicaUrls: config.database.replicaUrls,
    maxLagMs: config.database.replicaMaxLagMs,
    checkIntervalMs: config.database.replicaCheckIntervalMs,
    pool: config.database,
    databaseOptions: metrics.databaseHooks(() => log, config.database),
    events: metrics.replicaEvents,
  });
  stack.defer(() => readDb.destroy());
  await step('replicas');

  const encryptionKey = await resolveEncryptionKey(config);
  const jwtSecret = await resolveJwtSecret(config, encryptionKey);
  await step('jwt-secret');

  const dispatcher = startEmailDispatcher(config, db, log, metrics, stack);
  await step('email-dispatcher');

  const app = await buildApp({
    config,
    db,
    logger: log,
    onEmailQueued: () => {
      dispatcher.wake();
    },
    ...(config.database.replicaUrls.length > 0 ? { readDb } : {}),
    jwtSecret,
    encryptionKey,
    metrics,
    ...(caches === undefined ? {} : { principals: caches.principals, liveSessions: caches.sessions }),
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: config.database.poolMax,
    }),
  });
  // close() stops accepting connections and waits for in-flight requests, before the pool goes.
  stack.defer(() => app.close());
  // The first signing key is created now (or JWT_ALGORITHM's change scheduled), not by a request.
  await ensureSigningKeys(config, app, say);
  await step('app');

  const nice = config.auth.hashThreadNice;
  const threads = await lowerWorkerThreadPriority(nice);
  if (threads > 0) app.log.info({ threads, nice }, 'worker threads (password hashing) run below the event loop');
  await step('thread-priority');

  // Background work of this instance; stopped before the app and the pool close.
  const maintenance = startMaintenance(config, db, metrics, app.log);
  if (maintenance !== undefined) stack.defer(() => maintenance.stop());
  await step('workers');

  await app.listen({ host: config.host, port: config.port });
  await step('listen');

  const opened = stack.move();
  return {
    app,
    close: async () => {
      if (!opened.disposed) await opened.disposeAsync();
    },
    stopDatabaseSync,
  };
}

/**
 * Creates the first signing key (or schedules JWT_ALGORITHM's change) now rather than on a
 * request, and refuses to start when ENCRYPTION_KEY cannot open the active key, except in
 * development, where a new key takes over (say so).
 */
async function ensureSigningKeys(config: Config, app: App, say: (message: string) => void): Promise<void> {
  if (config.auth.jwtAlgorithm === 'HS256' || app.signingKeys === undefined) return;
  const development = config.env !== 'production';
  try {
    const before = (await app.signingKeys.list()).length;
    await app.signingKeys.ensure({ replaceUnreadable: development });
    const after = await app.signingKeys.list();
    if (development && before > 0 && after.length > before && after.at(-1)?.state === 'active') {
      say('the encryption key under DATA_DIR does not open the signing keys in the database: a new key signs from now');
    }
  } catch (error) {
    if (error instanceof UnreadableSigningKeyError)
      throw new StartupRefusedError(`Refusing to start: ${error.message}`);
    throw error;
  }
}
