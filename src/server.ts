import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import type { FastifyBaseLogger } from 'fastify';
import { createDatabase, createPool } from './db/database.ts';
import { migrateToLatest, pendingMigrations } from './db/migrator.ts';
import { createReadDatabase } from './db/replicas.ts';
import { openDatabaseTarget } from './db/target.ts';
import { UserChangeFeed } from './db/user-changes.ts';
import { AppMetrics } from './plugins/metrics.ts';
import type { AuthenticatedUser } from './services/auth.ts';
import { PrincipalCache } from './services/principal-cache.ts';
import type { LiveSession } from './services/sessions.ts';
import { lowerWorkerThreadPriority } from './thread-priority.ts';

/**
 * The process entry (`npm start`): validate the environment, start or reach PostgreSQL, migrate
 * when asked (refuse to serve a schema that is behind otherwise), listen, and on SIGINT/SIGTERM
 * finish in-flight requests within the grace period before closing the pool and the embedded server.
 */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  const say = (message: string) => process.stderr.write(`${message}\n`);
  const target = await openDatabaseTarget(config, say);
  try {
    if (config.migrateOnStart) {
      const applied = await migrateToLatest(target.url);
      if (applied.length > 0) say(`applied migrations: ${applied.join(', ')}`);
    }
  } catch (error) {
    await target.close();
    throw error;
  }

  const metrics = new AppMetrics();
  // The app's logger exists only once the app is built; queries before that are not logged.
  const queryLog: { logger?: FastifyBaseLogger } = {};
  const pool = createPool({ ...config.database, url: target.url });
  const db = createDatabase(
    { ...config.database, url: target.url },
    { pool, ...metrics.databaseHooks(() => queryLog.logger, config.database) },
  );
  const pending = await pendingMigrations(db).catch(async (error: unknown) => {
    await db.destroy();
    await target.close();
    throw error;
  });
  if (pending.length > 0) {
    await db.destroy();
    await target.close();
    say(
      `Refusing to start: ${pending.length} pending migration(s) (${pending.join(', ')}). ` +
        'Run `npm run migrate`, or set MIGRATE_ON_START=true.',
    );
    process.exit(1);
  }

  // Reads that may be slightly stale (the user listing) go to a replica when one is usable.
  const readDb = createReadDatabase(db, {
    replicaUrls: config.database.replicaUrls,
    maxLagMs: config.database.replicaMaxLagMs,
    checkIntervalMs: config.database.replicaCheckIntervalMs,
    pool: config.database,
    databaseOptions: metrics.databaseHooks(() => queryLog.logger, config.database),
    events: metrics.replicaEvents,
  });

  // Authenticated users' rows are cached and dropped as soon as they change (LISTEN/NOTIFY).
  const principals = await startPrincipalCache(config, target.url);

  const app = await buildApp({
    config,
    db,
    ...(config.database.replicaUrls.length > 0 ? { readDb } : {}),
    jwtSecret: await resolveJwtSecret(config),
    prettyLogs: process.stdout.isTTY,
    metrics,
    ...(principals === undefined ? {} : { principals: principals.cache, liveSessions: principals.sessions }),
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: config.database.poolMax,
    }),
  });
  queryLog.logger = app.log;
  const nice = config.auth.hashThreadNice;
  const threads = await lowerWorkerThreadPriority(nice);
  if (threads > 0) app.log.info({ threads, nice }, 'worker threads (password hashing) run below the event loop');

  const graceOptions = {
    delay: config.shutdownGraceMs,
    logger: app.log,
    // The grace period ran out and the process exits at once: the embedded server must not be
    // left behind, so it is stopped synchronously (its in-flight queries are cut off).
    onTimeout: () => {
      app.log.error({ graceMs: config.shutdownGraceMs }, 'requests still running after the grace period; exiting');
      target.embedded?.stopSync();
    },
  };
  closeWithGrace(graceOptions, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error');
    else app.log.info({ signal }, 'shutting down');
    // close() stops accepting connections and waits for in-flight requests.
    await app.close();
    await principals?.feed.close();
    await readDb.destroy();
    await db.destroy();
    await target.close();
  });

  await app.listen({ host: config.host, port: config.port });
}

/** The principal cache and the change feed that keeps it fresh; none when PRINCIPAL_CACHE_SECONDS=0. */
async function startPrincipalCache(
  config: Config,
  url: string,
): Promise<
  { cache: PrincipalCache<AuthenticatedUser>; sessions: PrincipalCache<LiveSession>; feed: UserChangeFeed } | undefined
> {
  if (config.auth.principalCacheSeconds === 0) return undefined;
  const feed: UserChangeFeed = new UserChangeFeed(
    {
      url,
      applicationName: `${config.database.applicationName}:user-changes`,
      heartbeatTimeoutMs: config.auth.changeFeedHeartbeatTimeoutMs,
    },
    {
      onChange: (id) => {
        cache.invalidate(id);
      },
      onSessionEnded: (sid) => {
        sessions.invalidate(sid);
      },
      onReset: () => {
        cache.clear();
        sessions.clear();
      },
    },
  );
  const cache = new PrincipalCache<AuthenticatedUser>({
    ttlMs: config.auth.principalCacheSeconds * 1000,
    maxEntries: config.auth.principalCacheMaxEntries,
    isLive: () => feed.live,
  });
  const sessions = new PrincipalCache<LiveSession>({
    ttlMs: config.auth.principalCacheSeconds * 1000,
    maxEntries: config.auth.sessionCacheMaxEntries,
    isLive: () => feed.live,
  });
  await feed.start();
  return { cache, sessions, feed };
}

/**
 * JWT_SECRET when set (required in production); otherwise a random secret generated once and
 * kept under DATA_DIR, so tokens survive restarts of a development server.
 */
async function resolveJwtSecret(config: Config): Promise<string> {
  if (config.auth.jwtSecret !== undefined) return config.auth.jwtSecret;
  const file = path.join(config.dataDir, 'jwt-secret');
  try {
    const existing = (await fs.readFile(file, 'utf8')).trim();
    if (Buffer.byteLength(existing) >= 32) return existing;
  } catch {
    // not generated yet
  }
  const secret = randomBytes(48).toString('base64url');
  await fs.mkdir(config.dataDir, { recursive: true });
  await fs.writeFile(file, secret, { mode: 0o600 });
  return secret;
}

await main();
