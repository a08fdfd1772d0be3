import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseEncryptionKey } from './secret-box.ts';
import type { ThrottlePolicy } from './limits/throttle.ts';
import { DEFAULT_MEMORY_MAX_KEYS } from './limits/throttle-store.ts';
import { parseOAuthConfig, type OAuthConfig } from '../oauth/config.ts';

/**
 * The whole environment of the process, read and validated once.
 *
 * Nothing else in `src/` reads `process.env`: entry points call {@link loadConfig} and pass the
 * result (or the parts of it they need) down as arguments.
 */
export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly host: string;
  readonly port: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `pretty` (pino-pretty) or `json` lines; `undefined`: pretty when stdout is a terminal. */
  readonly logFormat: 'pretty' | 'json' | undefined;
  /** Where the embedded PostgreSQL, its password and the generated JWT secret live. */
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  /** Apply pending migrations when the server starts. */
  readonly migrateOnStart: boolean;
  readonly migrations: MigrationConfig;
  readonly auth: AuthConfig;
  readonly http: HttpConfig;
  readonly metrics: MetricsConfig;
  readonly docs: DocsConfig;
  /** The shared store of state several instances must agree on (rate-limit counters). */
  readonly redis: RedisConfig;
  readonly maintenance: MaintenanceConfig;
  readonly email: EmailConfig;
  /** Sign-in through other identity providers (OIDC_PROVIDERS, OIDC_<ID>_*, API_URL, OAUTH_REDIRECT_ALLOWLIST). */
  readonly oauth: OAuthConfig;
  /** How long in-flight requests get to finish after SIGINT/SIGTERM. */
  readonly shutdownGraceMs: number;
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

export type JwtAlgorithm = 'EdDSA' | 'ES256' | 'HS256';

export interface AuthConfig {
  /**
   * What signs access tokens: an asymmetric key kept in the database and published at
   * /.well-known/jwks.json (EdDSA, the default; ES256), or JWT_SECRET (HS256).
   */
  readonly jwtAlgorithm: JwtAlgorithm;
  /**
   * ENCRYPTION_KEY: encrypts private signing keys (and other secrets) at rest. `undefined`
   * outside production means: generate one and keep it under `dataDir`.
   */
  readonly encryptionKey: Uint8Array | undefined;
  /** `max-age` of the JWKS; a rotated key starts signing only after verifiers' copies expired. */
  readonly jwksMaxAgeSeconds: number;
  /** Bearer secrets accepted by POST /auth/introspect (several during their own rotation); empty: no route. */
  readonly introspectionTokens: readonly string[];
  /** Verified access tokens remembered until they expire (about 1 KB each); 0 verifies every request's signature. */
  readonly verifiedTokenCacheEntries: number;
  /** MFA_REQUIRED_ROLES: users of these roles must enrol a second factor before anything else works. */
  readonly mfaRequiredRoles: readonly ('user' | 'admin')[];
  /**
   * The WebAuthn relying party for passkeys (PASSKEYS_ENABLED, default true; WEBAUTHN_RP_ID,
   * WEBAUTHN_RP_NAME, WEBAUTHN_ORIGINS), or `undefined` when passkeys are disabled.
   */
  readonly webauthn:
    { readonly rpId: string; readonly rpName: string; readonly origins: readonly string[] } | undefined;
  /** `undefined` outside production means: generate one and keep it under `dataDir`. */
  readonly jwtSecret: string | undefined;
  /**
   * Secrets that signed tokens before the last rotation: still accepted for verification (picked
   * by the token's `kid`) during the overlap, never used to sign.
   */
  readonly jwtPreviousSecrets: readonly string[];
  readonly jwtIssuer: string;
  readonly jwtAudience: string;
  readonly accessTokenTtlSeconds: number;
  readonly refreshTokenTtlSeconds: number;
  /**
   * Flood caps: requests per client address (IPv6 /64) within the window, whatever their outcome.
   * Sized for many users behind one NAT; failed attempts are throttled by `throttle` much sooner.
   */
  readonly loginRateLimit: number;
  readonly registerRateLimit: number;
  readonly refreshRateLimit: number;
  readonly logoutRateLimit: number;
  /** Every other route that checks a password or a token (password change, deletion, email tokens). */
  readonly credentialRateLimit: number;
  readonly rateLimitWindowMs: number;
  /** Failed-attempt throttling (api.md "Login throttling"), in milliseconds. */
  readonly throttle: ThrottlePolicy;
  /**
   * Counters (flood caps, failures, lockouts) held at most in memory when REDIS_URL is unset. None
   * is evicted before its window ends: at the bound, requests that need a new counter get 503.
   */
  readonly throttleMemoryMaxKeys: number;
  /** Concurrent argon2 hashes; more wait in a bounded queue. */
  readonly hashConcurrency: number;
  readonly hashQueueLimit: number;
  /**
   * Slots plus queue places one caller (an account, a client address) may hold at once, so one
   * caller cannot starve everyone else's logins. Default: a quarter of concurrency + queue.
   */
  readonly hashCallerShare: number;
  /**
   * Nice value of libuv's worker threads, where the hashes run (Linux; 0, the default, leaves them
   * alone). Above 0 the event loop outranks them: other requests wait less during a burst of
   * logins, but under a storm of refused logins the hashes starve (README, Design notes).
   */
  readonly hashThreadNice: number;
  /**
   * How long an authenticated user's row may serve later requests (0: read it on every request).
   * Entries are dropped as soon as the row changes (LISTEN/NOTIFY), so this only bounds the
   * worst case. Session pool mode only.
   */
  readonly principalCacheSeconds: number;
  /** Entries the principal cache keeps at most (least recently used evicted). */
  readonly principalCacheMaxEntries: number;
  /** Entries the live-session cache keeps at most (least recently used evicted). */
  readonly sessionCacheMaxEntries: number;
  /**
   * How long after a refresh token's rotation it may be presented again and get the same
   * successor back (0: never; reuse then ends the session at once).
   */
  readonly refreshReuseIntervalSeconds: number;
  /**
   * A change feed that has not heard its own heartbeat for this long is treated as down: the
   * caches it keeps fresh are not trusted until it is back.
   */
  readonly changeFeedHeartbeatTimeoutMs: number;
  /** Refuse logins (403 EMAIL_NOT_VERIFIED, after a correct password) until the address is verified. */
  readonly requireVerifiedEmail: boolean;
  /** Requests to each email route (verify, re-send, forgot, reset) per client address and per account, per window. */
  readonly emailRateLimit: number;
  /**
   * REGISTRATION_ENUMERATION_SAFE: register answers 202 `{status: "accepted"}` for a new and a taken
   * address alike (the taken address's owner gets a notice), and an email change to a taken
   * address is answered like any other. Off by default: v2 clients expect 201 `{user}` and 409.
   */
  readonly registrationEnumerationSafe: boolean;
}

export interface EmailConfig {
  /**
   * `smtp` (SMTP_URL set), `log` (each email written to the log at info: development, or
   * EMAIL_TRANSPORT=log on purpose), or undefined: production without SMTP_URL, where the server
   * refuses to start.
   */
  readonly transport: 'smtp' | 'log' | undefined;
  /** smtp:// (STARTTLS when offered) or smtps:// (TLS from the start), with credentials if any. */
  readonly smtpUrl: string | undefined;
  /** Refuse to send unless the server upgrades the connection with STARTTLS. */
  readonly smtpRequireTls: boolean;
  /** Check the SMTP server's certificate (turn off only for a test server with a self-signed one). */
  readonly smtpTlsRejectUnauthorized: boolean;
  readonly from: string;
  /** The client application's base URL: links are APP_URL/verify-email?token=… and APP_URL/reset-password?token=…. */
  readonly appUrl: string;
  readonly verificationTtlSeconds: number;
  readonly passwordResetTtlSeconds: number;
  readonly dispatcher: DispatcherConfig;
}

export interface DispatcherConfig {
  /** How often the outbox is polled when nothing woke the dispatcher. */
  readonly pollIntervalMs: number;
  /** Messages claimed (and sent concurrently) at once. */
  readonly batchSize: number;
  /** A send that has not finished by then counts as failed and is retried. */
  readonly sendTimeoutMs: number;
  /** A claim older than this is taken back by any dispatcher (its owner died); longer than a send. */
  readonly claimLeaseMs: number;
  /** Attempts before a message is marked failed. */
  readonly maxAttempts: number;
  /** The first retry waits about this long, each further one twice as long (with jitter), up to the max. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export interface HttpConfig {
  readonly bodyLimitBytes: number;
  /** A request body must have fully arrived this long after the request began (else 408). */
  readonly bodyTimeoutMs: number;
  readonly corsOrigins: readonly string[];
  /** Passed to Fastify's `trustProxy`: false, true, a hop count or a list of addresses. */
  readonly trustProxy: boolean | number | string;
}

export interface MetricsConfig {
  /** When set, `GET /metrics` requires `Authorization: Bearer <token>`. */
  readonly bearerToken: string | undefined;
  /** METRICS_PUBLIC=true: no token on purpose (production refuses to start without one otherwise). */
  readonly public: boolean;
}

export interface DocsConfig {
  /** Serve /docs and /docs/json (default: everywhere except production). */
  readonly enabled: boolean;
}

/** The maintenance job that deletes rows no longer needed (src/platform/jobs/maintenance.ts). */
export interface MaintenanceConfig {
  /** Seconds between runs in each server process; 0: the server runs none (use `npm run db:prune`). */
  readonly intervalSeconds: number;
  /** Rows deleted per statement: each batch is one short transaction. */
  readonly batchSize: number;
  /** Pause between batches, so pruning a backlog leaves the database to the requests. */
  readonly pauseMs: number;
  /**
   * At most this share (percent) of a run is spent deleting: after a batch that took t ms the job
   * pauses at least t × (100 / share − 1) ms, so slower batches (a loaded server) mean longer pauses.
   */
  readonly maxBusyPercent: number;
  /** Expired and revoked refresh tokens are kept this long before they are deleted. */
  readonly refreshTokenGraceSeconds: number;
  /** Audit events older than this many days are deleted. */
  readonly auditRetentionDays: number;
  /** Outbox messages that are done (sent, skipped, given up) and older than this many days are deleted. */
  readonly emailOutboxRetentionDays: number;
}

export interface RedisConfig {
  /** `undefined`: rate-limit counters live in this process's memory (one instance only). */
  readonly url: string | undefined;
  /** Prefix of every key this application writes, so several deployments can share one Redis. */
  readonly keyPrefix: string;
}

/** Thrown when the environment is invalid; the message names every bad variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`Invalid environment:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const NODE_ENVS = ['development', 'production', 'test'] as const;
const POOL_MODES = ['session', 'transaction'] as const;
const LOG_FORMATS = ['pretty', 'json'] as const;

/**
 * Loads `<cwd>/.env` into the environment when the process runs as an npm script (`npm start`,
 * `npm run migrate`, …) and the file exists; variables already set win over the file. Processes
 * started otherwise (a test's child server, a process manager) get exactly the environment they
 * were given. Returns the file that was read, if any.
 *
 * @example
 * ```ts
 * loadEnvFile(); // '/srv/app/.env' when `npm start` found one
 * const config = loadConfig();
 * ```
 */
export function loadEnvFile(cwd: string = process.cwd()): string | undefined {
  const file = path.join(cwd, '.env');
  if (process.env.npm_lifecycle_event === undefined || !existsSync(file)) return undefined;
  process.loadEnvFile(file);
  return file;
}

/**
 * Reads and validates the environment.
 *
 * @example
 * ```ts
 * const config = loadConfig({ PORT: '8080', DATABASE_URL: 'postgres://localhost/app' });
 * config.port; // 8080
 * ```
 * @throws {ConfigError} listing every variable that is malformed or missing.
 */
/**
 * Whether NODE_ENV names production, read before (and whatever the outcome of) the full
 * validation: development-only commands refuse production first, even where a production
 * configuration would be incomplete.
 */
export function isProductionEnvironment(env: Env = process.env): boolean {
  return env.NODE_ENV === 'production';
}

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const reader = new EnvReader(env);

  const nodeEnv = reader.oneOf('NODE_ENV', NODE_ENVS, 'development');
  const databaseUrl = reader.url('DATABASE_URL');
  const jwtSecret = reader.string('JWT_SECRET');
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    reader.problem('JWT_SECRET must be at least 32 bytes long');
  }
  const jwtAlgorithm = reader.oneOf('JWT_ALGORITHM', ['EdDSA', 'ES256', 'HS256'] as const, 'EdDSA');
  if (nodeEnv === 'production' && jwtSecret === undefined && jwtAlgorithm === 'HS256') {
    reader.problem('JWT_SECRET is required when NODE_ENV=production and JWT_ALGORITHM=HS256');
  }
  const encryptionKeyText = reader.string('ENCRYPTION_KEY');
  const encryptionKey = encryptionKeyText === undefined ? undefined : parseEncryptionKey(encryptionKeyText);
  if (encryptionKeyText !== undefined && encryptionKey === undefined) {
    reader.problem('ENCRYPTION_KEY must be 32 random bytes in base64 (generate one: openssl rand -base64 32)');
  }
  if (nodeEnv === 'production' && encryptionKeyText === undefined) {
    reader.problem('ENCRYPTION_KEY is required when NODE_ENV=production (generate one: openssl rand -base64 32)');
  }
  const mfaRequiredRoles = reader.list('MFA_REQUIRED_ROLES').flatMap((role): ('user' | 'admin')[] => {
    if (role === 'user' || role === 'admin') return [role];
    reader.problem(`MFA_REQUIRED_ROLES lists roles among user, admin (got "${role}")`);
    return [];
  });
  // Passkeys are on unless switched off; production names its relying party rather than
  // guessing it from APP_URL (a wrong RP ID silently orphans every passkey registered under it).
  const passkeysEnabled = reader.boolean('PASSKEYS_ENABLED', true);
  const rpId = reader.string('WEBAUTHN_RP_ID');
  const rpOrigins = reader.list('WEBAUTHN_ORIGINS');
  if (passkeysEnabled && nodeEnv === 'production' && (rpId === undefined || rpOrigins.length === 0)) {
    reader.problem(
      'WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS are required when NODE_ENV=production (or set PASSKEYS_ENABLED=false)',
    );
  }
  for (const origin of rpOrigins) {
    if (!/^https?:\/\/[^/]+$/.test(origin))
      reader.problem(`WEBAUTHN_ORIGINS lists origins like https://app.example.com (got "${origin}")`);
  }
  const appOrigin = originOf(reader.string('APP_URL') ?? 'http://localhost:3000');
  const webauthn = passkeysEnabled
    ? {
        rpId: rpId ?? 'localhost',
        rpName: reader.string('WEBAUTHN_RP_NAME') ?? 'pg-fastify-backend',
        origins: rpOrigins.length > 0 ? rpOrigins : [appOrigin],
      }
    : undefined;
  const introspectionTokens = reader.list('INTROSPECTION_TOKEN');
  if (introspectionTokens.some((token) => Buffer.byteLength(token) < 32)) {
    reader.problem('every token in INTROSPECTION_TOKEN must be at least 32 bytes long');
  }
  const jwtPreviousSecrets = reader.list('JWT_PREVIOUS_SECRETS');
  if (jwtPreviousSecrets.some((secret) => Buffer.byteLength(secret) < 32)) {
    reader.problem('every secret in JWT_PREVIOUS_SECRETS must be at least 32 bytes long');
  }
  if (jwtPreviousSecrets.length > 0 && jwtSecret === undefined) {
    reader.problem('JWT_PREVIOUS_SECRETS needs JWT_SECRET (the key that signs) to be set');
  }

  const poolMode = reader.oneOf('DB_POOL_MODE', POOL_MODES, 'session');
  const preparedStatements = reader.boolean('DB_PREPARED_STATEMENTS', poolMode === 'session');
  if (poolMode === 'transaction' && preparedStatements) {
    reader.problem(
      'DB_PREPARED_STATEMENTS=true cannot be used with DB_POOL_MODE=transaction: PgBouncer in transaction mode ' +
        'does not keep named prepared statements across transactions (unset it, or set it to false)',
    );
  }

  const principalCacheSeconds = reader.integer('PRINCIPAL_CACHE_SECONDS', poolMode === 'session' ? 60 : 0, 0, 3600);
  if (poolMode === 'transaction' && principalCacheSeconds > 0) {
    reader.problem(
      'PRINCIPAL_CACHE_SECONDS cannot be used with DB_POOL_MODE=transaction: the cache is kept fresh by LISTEN, ' +
        'which needs a session of its own (unset it, or set it to 0)',
    );
  }

  const smtpUrl = reader.smtpUrl('SMTP_URL');
  const emailTransport = reader.oneOf(
    'EMAIL_TRANSPORT',
    ['smtp', 'log'] as const,
    smtpUrl === undefined ? 'log' : 'smtp',
  );
  if (emailTransport === 'smtp' && smtpUrl === undefined) reader.problem('EMAIL_TRANSPORT=smtp needs SMTP_URL');
  const explicitLog = reader.string('EMAIL_TRANSPORT') === 'log';
  const sendTimeoutMs = reader.integer('EMAIL_SEND_TIMEOUT_MS', 15_000, 100, 600_000);
  const claimLeaseMs = reader.integer('EMAIL_CLAIM_LEASE_MS', 60_000, 200, 3_600_000);
  if (claimLeaseMs < 2 * sendTimeoutMs) {
    reader.problem(
      'EMAIL_CLAIM_LEASE_MS must be at least twice EMAIL_SEND_TIMEOUT_MS: a claim must outlive the send it covers',
    );
  }
  const retryBaseMs = reader.integer('EMAIL_RETRY_BASE_MS', 5_000, 10, 3_600_000);
  const retryMaxMs = reader.integer('EMAIL_RETRY_MAX_MS', 600_000, 10, 86_400_000);
  if (retryMaxMs < retryBaseMs) reader.problem('EMAIL_RETRY_MAX_MS must not be below EMAIL_RETRY_BASE_MS');

  const hashConcurrency = reader.integer('HASH_CONCURRENCY', 2, 1, 64);
  const hashQueueLimit = reader.integer('HASH_QUEUE_LIMIT', 64, 0, 100_000);

  const metricsToken = reader.string('METRICS_TOKEN');
  const metricsPublic = reader.boolean('METRICS_PUBLIC', false);
  if (nodeEnv === 'production' && metricsToken === undefined && !metricsPublic) {
    reader.problem(
      'METRICS_TOKEN is required when NODE_ENV=production (GET /metrics would be public); ' +
        'set METRICS_PUBLIC=true to serve it without a token on purpose',
    );
  }

  // Email links and redirects point here: a production default of localhost would send every
  // user a link that cannot work (and that the user's own machine would answer).
  const appUrl = reader.httpUrl('APP_URL');
  if (nodeEnv === 'production' && appUrl === undefined && reader.string('APP_URL') === undefined) {
    reader.problem(
      "APP_URL is required when NODE_ENV=production (the client application's base URL, used in email links)",
    );
  }

  const port = reader.integer('PORT', 3000, 0, 65535);
  const oauth = parseOAuthConfig(env, {
    nodeEnv,
    port,
    appUrl: appUrl ?? 'http://localhost:3000',
    problem: (message) => {
      reader.problem(message);
    },
  });

  const config: Config = {
    env: nodeEnv,
    host: reader.string('HOST') ?? '127.0.0.1',
    port,
    logLevel: reader.oneOf('LOG_LEVEL', LOG_LEVELS, nodeEnv === 'test' ? 'silent' : 'info'),
    logFormat: reader.string('LOG_FORMAT') === undefined ? undefined : reader.oneOf('LOG_FORMAT', LOG_FORMATS, 'json'),
    dataDir: path.resolve(cwd, reader.string('DATA_DIR') ?? '.data'),
    database: {
      url: databaseUrl,
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
      logQueries: reader.boolean('LOG_QUERIES', nodeEnv === 'development'),
    },
    migrateOnStart: reader.boolean('MIGRATE_ON_START', databaseUrl === undefined),
    migrations: {
      lockTimeoutMs: reader.integer('MIGRATION_LOCK_TIMEOUT_MS', MIGRATION_DEFAULTS.lockTimeoutMs, 1, 600_000),
      lockRetries: reader.integer('MIGRATION_LOCK_RETRIES', MIGRATION_DEFAULTS.lockRetries, 0, 100),
      retryDelayMs: MIGRATION_DEFAULTS.retryDelayMs,
    },
    auth: {
      jwtAlgorithm,
      encryptionKey,
      jwksMaxAgeSeconds: reader.integer('JWKS_MAX_AGE_SECONDS', 300, 1, 86_400),
      introspectionTokens,
      verifiedTokenCacheEntries: reader.integer('VERIFIED_TOKEN_CACHE_ENTRIES', 10_000, 0, 1_000_000),
      mfaRequiredRoles,
      webauthn,
      jwtSecret,
      jwtPreviousSecrets,
      jwtIssuer: reader.string('JWT_ISSUER') ?? 'pg-fastify-backend',
      jwtAudience: reader.string('JWT_AUDIENCE') ?? 'pg-fastify-backend-api',
      accessTokenTtlSeconds: reader.integer('ACCESS_TOKEN_TTL_SECONDS', 900, 10, 86_400),
      refreshTokenTtlSeconds: reader.integer('REFRESH_TOKEN_TTL_SECONDS', 30 * 86_400, 60, 365 * 86_400),
      loginRateLimit: reader.integer('RATE_LIMIT_LOGIN', 300, 1, 1_000_000),
      registerRateLimit: reader.integer('RATE_LIMIT_REGISTER', 20, 1, 1_000_000),
      refreshRateLimit: reader.integer('RATE_LIMIT_REFRESH', 600, 1, 1_000_000),
      logoutRateLimit: reader.integer('RATE_LIMIT_LOGOUT', 600, 1, 1_000_000),
      credentialRateLimit: reader.integer('RATE_LIMIT_CREDENTIALS', 60, 1, 1_000_000),
      rateLimitWindowMs: reader.integer('RATE_LIMIT_WINDOW_MS', 60_000, 1000, 86_400_000),
      throttle: {
        pairMaxFailures: reader.integer('LOGIN_MAX_FAILURES', 5, 1, 1_000_000),
        pairLockoutMs: reader.integer('LOGIN_LOCKOUT_SECONDS', 60, 1, 86_400) * 1000,
        maxLockoutMs: reader.integer('LOGIN_MAX_LOCKOUT_SECONDS', 3600, 1, 86_400) * 1000,
        accountMaxFailures: reader.integer('LOGIN_ACCOUNT_MAX_FAILURES', 20, 1, 1_000_000),
        failureWindowMs: reader.integer('LOGIN_FAILURE_WINDOW_SECONDS', 900, 1, 86_400) * 1000,
        accountDelayMs: 1000,
        accountMaxDelayMs: reader.integer('LOGIN_ACCOUNT_MAX_DELAY_SECONDS', 60, 1, 3600) * 1000,
      },
      throttleMemoryMaxKeys: reader.integer('THROTTLE_MEMORY_MAX_KEYS', DEFAULT_MEMORY_MAX_KEYS, 1000, 100_000_000),
      hashConcurrency,
      hashQueueLimit,
      hashCallerShare: reader.integer(
        'HASH_CALLER_SHARE',
        Math.max(1, Math.floor((hashConcurrency + hashQueueLimit) / 4)),
        1,
        200_000,
      ),
      hashThreadNice: reader.integer('HASH_THREAD_NICE', 0, 0, 19),
      principalCacheSeconds: poolMode === 'session' ? principalCacheSeconds : 0,
      principalCacheMaxEntries: reader.integer('PRINCIPAL_CACHE_MAX_ENTRIES', 10_000, 1, 10_000_000),
      sessionCacheMaxEntries: reader.integer('SESSION_CACHE_MAX_ENTRIES', 100_000, 1, 10_000_000),
      refreshReuseIntervalSeconds: reader.integer('REFRESH_REUSE_INTERVAL_SECONDS', 10, 0, 300),
      changeFeedHeartbeatTimeoutMs: reader.integer('CHANGE_FEED_HEARTBEAT_TIMEOUT_MS', 3000, 300, 600_000),
      requireVerifiedEmail: reader.boolean('AUTH_REQUIRE_VERIFIED_EMAIL', false),
      emailRateLimit: reader.integer('RATE_LIMIT_EMAIL', 10, 1, 1_000_000),
      registrationEnumerationSafe: reader.boolean('REGISTRATION_ENUMERATION_SAFE', false),
    },
    http: {
      bodyLimitBytes: reader.integer('BODY_LIMIT_BYTES', 1024 * 1024, 1024, 100 * 1024 * 1024),
      bodyTimeoutMs: reader.integer('BODY_TIMEOUT_MS', 10_000, 100, 600_000),
      corsOrigins: reader.list('CORS_ORIGINS'),
      trustProxy: reader.trustProxy('TRUST_PROXY'),
    },
    metrics: {
      bearerToken: metricsToken,
      public: metricsPublic,
    },
    docs: {
      enabled: reader.boolean('DOCS_ENABLED', nodeEnv !== 'production'),
    },
    redis: {
      url: reader.redisUrl('REDIS_URL'),
      keyPrefix: reader.string('REDIS_KEY_PREFIX') ?? 'pg-fastify-backend:',
    },
    maintenance: {
      intervalSeconds: reader.integer('MAINTENANCE_INTERVAL_SECONDS', 3600, 0, 7 * 86_400),
      batchSize: reader.integer('MAINTENANCE_BATCH_SIZE', 1000, 1, 100_000),
      pauseMs: reader.integer('MAINTENANCE_PAUSE_MS', 50, 0, 60_000),
      maxBusyPercent: reader.integer('MAINTENANCE_MAX_BUSY_PERCENT', 10, 1, 100),
      refreshTokenGraceSeconds: reader.integer('REFRESH_TOKEN_GRACE_SECONDS', 7 * 86_400, 0, 365 * 86_400),
      auditRetentionDays: reader.integer('AUDIT_RETENTION_DAYS', 365, 1, 36_500),
      emailOutboxRetentionDays: reader.integer('EMAIL_OUTBOX_RETENTION_DAYS', 30, 1, 36_500),
    },
    email: {
      // Production never falls back to the log by accident: only when EMAIL_TRANSPORT=log says so.
      transport:
        smtpUrl === undefined && emailTransport === 'log' && nodeEnv === 'production' && !explicitLog
          ? undefined
          : emailTransport,
      smtpUrl,
      smtpRequireTls: reader.boolean('SMTP_REQUIRE_TLS', false),
      smtpTlsRejectUnauthorized: reader.boolean('SMTP_TLS_REJECT_UNAUTHORIZED', true),
      from: reader.string('EMAIL_FROM') ?? 'pg-fastify-backend <no-reply@localhost>',
      appUrl: (appUrl ?? 'http://localhost:3000').replace(/\/+$/, ''),
      verificationTtlSeconds: reader.integer('EMAIL_VERIFICATION_TTL_SECONDS', 86_400, 60, 30 * 86_400),
      passwordResetTtlSeconds: reader.integer('PASSWORD_RESET_TTL_SECONDS', 3600, 60, 86_400),
      dispatcher: {
        pollIntervalMs: reader.integer('EMAIL_POLL_INTERVAL_MS', 1000, 10, 600_000),
        batchSize: reader.integer('EMAIL_BATCH_SIZE', 10, 1, 100),
        sendTimeoutMs,
        claimLeaseMs,
        maxAttempts: reader.integer('EMAIL_MAX_ATTEMPTS', 8, 1, 100),
        retryBaseMs,
        retryMaxMs,
      },
    },
    oauth,
    shutdownGraceMs: reader.integer('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
  };

  reader.assertValid();
  return config;
}

/** Collects every problem instead of stopping at the first, so one start names them all. */
class EnvReader {
  readonly #env: Env;
  readonly #problems: string[] = [];

  constructor(env: Env) {
    this.#env = env;
  }

  problem(message: string): void {
    this.#problems.push(message);
  }

  assertValid(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }

  string(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problem(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.string(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    this.problem(`${name} must be true or false (got "${raw}")`);
    return fallback;
  }

  oneOf<const T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const match = allowed.find((value) => value === raw);
    if (match === undefined) {
      this.problem(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
      return fallback;
    }
    return match;
  }

  url(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['postgres:', 'postgresql:']);
  }

  /** Comma-separated postgres:// URLs; every malformed one is a problem. */
  urlList(name: string): string[] {
    return this.list(name).flatMap((raw) => this.#checkedUrl(name, raw, ['postgres:', 'postgresql:']) ?? []);
  }

  redisUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['redis:', 'rediss:']);
  }

  smtpUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['smtp:', 'smtps:']);
  }

  httpUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['https:', 'http:']);
  }

  #checkedUrl(name: string, raw: string, protocols: readonly string[]): string | undefined {
    const expected = `a ${protocols[0] ?? ''}// URL`;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      this.problem(`${name} must be ${expected}`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol)) {
      this.problem(`${name} must be ${expected} (got protocol "${parsed.protocol}")`);
      return undefined;
    }
    return raw;
  }

  list(name: string): string[] {
    const raw = this.string(name);
    if (raw === undefined) return [];
    return raw
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }

  trustProxy(name: string): boolean | number | string {
    const raw = this.string(name);
    if (raw === undefined || raw === 'false') return false;
    if (raw === 'true') return true;
    if (/^\d+$/.test(raw)) return Number(raw);
    return raw;
  }
}

/** The origin of a URL, or `http://localhost:3000` for one that does not parse (APP_URL's own check reports it). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'http://localhost:3000';
  }
}
