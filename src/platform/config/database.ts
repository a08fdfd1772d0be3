import type { EnvReader, SectionContext } from './reader.ts';

export interface DatabaseConfig {
  /** `undefined` means: start the embedded PostgreSQL under `dataDir`. */
  readonly url: string | undefined;
  readonly embeddedPort: number;
  readonly poolMax: number;
  /** How long a query may wait for a free pooled connection before POOL_EXHAUSTED. */
  readonly connectionTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Server-side `statement_timeout` for every connection; 0 disables it. */
  readonly statementTimeoutMs: number;
  readonly applicationName: string;
  /** Named prepared statements; always off in `transaction` pool mode. */
  readonly preparedStatements: boolean;
  /**
   * How the connections reach PostgreSQL. `session`: directly, or through a pooler in session
   * mode, so a connection's session state is the application's. `transaction`: through PgBouncer
   * in transaction mode, where consecutive transactions of one client may run on different server
   * connections: no named prepared statements, no startup parameters besides the ones PgBouncer
   * tracks, session settings only with SET LOCAL inside a transaction.
   */
  readonly poolMode: PoolMode;
  /** Read replicas for reads that may be slightly stale (the user listing); empty: none. */
  readonly replicaUrls: readonly string[];
  /** A replica further behind the primary than this is skipped (reads go to the primary). */
  readonly replicaMaxLagMs: number;
  /** How long a replica's health and lag, once measured, are trusted. */
  readonly replicaCheckIntervalMs: number;
  /** Queries slower than this are logged at warn. */
  readonly slowQueryMs: number;
  /** Log every query at debug. */
  readonly logQueries: boolean;
}

export type PoolMode = 'session' | 'transaction';

const POOL_MODES = ['session', 'transaction'] as const;

/** DB_POOL_MODE, which other sections depend on. */
export function readPoolMode(reader: EnvReader): PoolMode {
  return reader.oneOf('DB_POOL_MODE', POOL_MODES, 'session');
}

export function readDatabaseConfig(reader: EnvReader, { env, poolMode }: SectionContext): DatabaseConfig {
  const url = reader.url('DATABASE_URL');
  const preparedStatements = reader.boolean('DB_PREPARED_STATEMENTS', poolMode === 'session');
  if (poolMode === 'transaction' && preparedStatements) {
    reader.problem(
      'DB_PREPARED_STATEMENTS=true cannot be used with DB_POOL_MODE=transaction: PgBouncer in transaction mode ' +
        'does not keep named prepared statements across transactions (unset it, or set it to false)',
    );
  }
  return {
    url,
    embeddedPort: reader.integer('EMBEDDED_PG_PORT', 54329, 1024, 65535),
    poolMax: reader.integer('DB_POOL_MAX', 10, 1, 1000),
    connectionTimeoutMs: reader.integer('DB_CONNECTION_TIMEOUT_MS', 5000, 1, 600_000),
    idleTimeoutMs: reader.integer('DB_IDLE_TIMEOUT_MS', 30_000, 0, 3_600_000),
    statementTimeoutMs: reader.integer('DB_STATEMENT_TIMEOUT_MS', 10_000, 0, 3_600_000),
    applicationName: reader.string('DB_APPLICATION_NAME') ?? 'pg-fastify-backend',
    preparedStatements: poolMode === 'session' && preparedStatements,
    poolMode,
    replicaUrls: reader.urlList('DATABASE_REPLICA_URLS'),
    replicaMaxLagMs: reader.integer('DB_REPLICA_MAX_LAG_MS', 5000, 0, 3_600_000),
    replicaCheckIntervalMs: reader.integer('DB_REPLICA_CHECK_INTERVAL_MS', 1000, 50, 600_000),
    slowQueryMs: reader.integer('SLOW_QUERY_MS', 100, 0, 3_600_000),
    logQueries: reader.boolean('LOG_QUERIES', env === 'development'),
  };
}

export interface MigrationConfig {
  /** `lock_timeout` of migration statements: how long one may queue the table's queries behind it. */
  readonly lockTimeoutMs: number;
  /** How many times a migration that timed out waiting for a lock is rolled back and retried. */
  readonly lockRetries: number;
  /** Pause before the first retry, doubled for each next one. */
  readonly retryDelayMs: number;
}

/** Defaults of {@link MigrationConfig}, also used by migrators built without a config (tests, scratch databases). */
export const MIGRATION_DEFAULTS: MigrationConfig = { lockTimeoutMs: 3000, lockRetries: 5, retryDelayMs: 1000 };

export function readMigrationConfig(reader: EnvReader): MigrationConfig {
  return {
    lockTimeoutMs: reader.integer('MIGRATION_LOCK_TIMEOUT_MS', MIGRATION_DEFAULTS.lockTimeoutMs, 1, 600_000),
    lockRetries: reader.integer('MIGRATION_LOCK_RETRIES', MIGRATION_DEFAULTS.lockRetries, 0, 100),
    retryDelayMs: MIGRATION_DEFAULTS.retryDelayMs,
  };
}
