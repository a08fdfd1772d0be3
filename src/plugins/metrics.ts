import { timingSafeEqual } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry } from '@prometheus-io/client';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fastifyMetrics from 'fastify-metrics';
import fp from 'fastify-plugin';
import type { ReplicaEvents, ReplicaStatus } from '../db/replicas.ts';
import { logQuery, type QueryEvent, type QueryLogger, type QueryLogOptions } from '../db/instrumentation.ts';
import { AuthenticationError, type AppError } from '../errors/index.ts';
import type { SessionEndReason } from '../repositories/sessions.ts';
import type { SessionEvents } from '../services/sessions.ts';
import type { AdminEvents } from '../services/user-admin.ts';
import type { AuthEvents } from '../services/auth.ts';

/** Pool counters read at scrape time (pg.Pool's totalCount, idleCount, waitingCount and max). */
export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max: number;
}

/** Query durations resolve 1 ms to 1 s; slower ones land in +Inf. */
const SESSION_END_REASONS: readonly SessionEndReason[] = [
  'logout',
  'revoked',
  'revoked_others',
  'password_changed',
  'password_reset',
  'refresh_reused',
  'user_disabled',
  'user_deleted',
];
const QUERY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/**
 * The application's own metrics, in a registry of its own (one per app instance, so building
 * many apps in one process never collides on "metric already registered").
 */
export class AppMetrics {
  readonly registry = new Registry();
  readonly queryDuration = new Histogram({
    name: 'db_query_duration_seconds',
    help: 'Database query duration by repository operation and outcome',
    labelNames: ['operation', 'outcome'] as const,
    buckets: QUERY_BUCKETS,
    registers: [this.registry],
  });
  readonly databaseErrors = new Counter({
    name: 'db_errors_total',
    help: 'Database errors by category (the error code they were translated to)',
    labelNames: ['category'] as const,
    registers: [this.registry],
  });
  readonly transactionRetries = new Counter({
    name: 'db_transaction_retries_total',
    help: 'Transactions retried after a serialization failure or deadlock',
    registers: [this.registry],
  });
  readonly logins = new Counter({
    name: 'auth_logins_total',
    help: 'Login attempts by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly refreshes = new Counter({
    name: 'auth_refresh_total',
    help: 'Refresh token presentations by outcome (rotated, reissued = the same successor within the reuse interval, reused = session ended, rejected)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly principalLookups = new Counter({
    name: 'auth_principal_lookups_total',
    help: "Authenticated requests by where the caller's user row came from: the principal cache or the database",
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly sessionsEnded = new Counter({
    name: 'auth_sessions_ended_total',
    help: 'Sessions ended, by reason (logout, revoked, revoked_others, password_changed, password_reset, refresh_reused, user_disabled, user_deleted)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly adminActions = new Counter({
    name: 'admin_actions_total',
    help: 'Changes admins made to users, by kind (update = name, role, disable, enable, delete)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'auth_rate_limited_total',
    help: 'Requests refused by a rate limit, by limiter',
    labelNames: ['limiter'] as const,
    registers: [this.registry],
  });

  readonly replicaReads = new Counter({
    name: 'db_replica_reads_total',
    help: 'Reads that may be served by a replica (the user listing), by where they ran: replica or primary',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly replicaFallbacks = new Counter({
    name: 'db_replica_fallbacks_total',
    help: 'Replica-eligible reads sent to the primary: no replica reachable (unavailable), all too far behind (lagging), or the replica failed the query (error)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor() {
    for (const target of ['replica', 'primary']) this.replicaReads.inc({ target }, 0);
    for (const reason of ['unavailable', 'lagging', 'error']) this.replicaFallbacks.inc({ reason }, 0);
    // Zero series exist from the start, so rates and alerts work before the first event.
    for (const outcome of ['success', 'failure', 'rate_limited']) this.logins.inc({ outcome }, 0);
    for (const outcome of ['rotated', 'reissued', 'reused', 'rejected']) this.refreshes.inc({ outcome }, 0);
    for (const reason of SESSION_END_REASONS) this.sessionsEnded.inc({ reason }, 0);
    for (const kind of ['update', 'role', 'disable', 'enable', 'delete']) this.adminActions.inc({ kind }, 0);
    for (const source of ['cache', 'database']) this.principalLookups.inc({ source }, 0);
  }

  /**
   * The hooks `createDatabase` takes, feeding these metrics and the slow-query log. `logger` is read
   * on every query because the app whose logger it is is built after the database.
   *
   * @example
   * ```ts
   * const db = createDatabase(config, { pool, ...metrics.databaseHooks(() => app?.log, config.database) });
   * ```
   */
  databaseHooks(logger: () => QueryLogger | undefined, logOptions: QueryLogOptions) {
    return {
      onQuery: (event: QueryEvent) => {
        this.observeQuery(event);
        const log = logger();
        if (log !== undefined) logQuery(log, event, logOptions);
      },
      onCheckoutError: (error: AppError) => {
        this.databaseErrors.inc({ category: error.code });
      },
      onTransactionRetry: () => {
        this.transactionRetries.inc();
      },
    };
  }

  /** Feeds the query histogram and error counter with one query (`createDatabase`'s `onQuery`). */
  observeQuery(event: QueryEvent): void {
    this.queryDuration.observe({ operation: event.operation, outcome: event.outcome }, event.durationMs / 1000);
    if (event.outcome !== 'ok') this.databaseErrors.inc({ category: event.outcome });
  }

  /** The hooks AuthService reports to. */
  get authEvents(): AuthEvents {
    return {
      onLogin: (outcome) => {
        this.logins.inc({ outcome });
      },
      onRefresh: (outcome) => {
        this.refreshes.inc({ outcome });
      },
      onPrincipalLookup: (source) => {
        this.principalLookups.inc({ source });
      },
    };
  }

  /** The hooks SessionService reports to. */
  get sessionEvents(): SessionEvents {
    return {
      onSessionsEnded: (reason, count) => {
        this.sessionsEnded.inc({ reason }, count);
      },
    };
  }

  /** The hooks UserAdministration reports to. */
  get adminEvents(): AdminEvents {
    return {
      onAdminAction: (kind) => {
        this.adminActions.inc({ kind });
      },
    };
  }

  /** The hooks the replica-aware read database reports to. */
  get replicaEvents(): ReplicaEvents {
    return {
      onRead: (target) => {
        this.replicaReads.inc({ target });
      },
      onFallback: (reason) => {
        this.replicaFallbacks.inc({ reason });
      },
    };
  }

  onRateLimited(limiter: string): void {
    this.rateLimited.inc({ limiter });
    if (limiter.startsWith('login')) this.logins.inc({ outcome: 'rate_limited' });
  }
}

export interface MetricsPluginOptions {
  readonly metrics: AppMetrics;
  /** Omitted when the app runs on a borrowed transaction (tests) with no pool of its own. */
  readonly poolStats?: (() => PoolStats) | undefined;
  readonly hashQueueDepth: () => number;
  /** The read replicas as last checked; omitted without DATABASE_REPLICA_URLS. */
  readonly replicaStatus?: (() => readonly ReplicaStatus[]) | undefined;
  /** When set, scraping needs `Authorization: Bearer <token>`. */
  readonly bearerToken?: string | undefined;
}

/**
 * GET /metrics in Prometheus text format: fastify-metrics' per-route histograms (labelled by route
 * template, registered routes only, status classes), Node's default metrics, the pool gauges read
 * at scrape time, and the application's counters.
 */
export default fp<MetricsPluginOptions>(
  async (app, opts) => {
    const { registry } = opts.metrics;
    registerPoolGauges(registry, opts.poolStats);
    registerReplicaGauges(registry, opts.replicaStatus);
    new Gauge({
      name: 'auth_password_hash_queue_depth',
      help: 'Password hashes waiting for a free argon2 slot',
      registers: [registry],
      collect() {
        this.set(opts.hashQueueDepth());
      },
    });

    // fastify-metrics is CommonJS with `exports.default`; Node hands ESM importers the whole module object.
    await app.register(fastifyMetrics.default, {
      endpoint: {
        url: '/metrics',
        method: 'GET',
        logLevel: 'warn',
        schema: {
          tags: ['metrics'],
          summary: 'Prometheus metrics (text exposition format)',
          description: 'Protected by a bearer token when METRICS_TOKEN is set.',
          response: {
            200: {
              description: 'Prometheus text exposition',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
        onRequest: async (request: FastifyRequest, _reply: FastifyReply) => {
          if (
            opts.bearerToken !== undefined &&
            !sameSecret(request.headers.authorization, `Bearer ${opts.bearerToken}`)
          ) {
            throw new AuthenticationError('Metrics need a bearer token', 'INVALID_TOKEN');
          }
        },
        handler: () => undefined,
      },
      defaultMetrics: { enabled: true, register: registry },
      routeMetrics: {
        enabled: { histogram: true, summary: false },
        registeredRoutesOnly: true,
        groupStatusCodes: true,
        routeBlacklist: ['/metrics', '/docs', /^\/docs\//],
        // fastify-metrics creates its summary even when disabled; both must live in this app's registry.
        overrides: { histogram: { registers: [registry] }, summary: { registers: [registry] } },
      },
    });
  },
  { name: 'metrics' },
);

/** Constant-time comparison, so the token cannot be guessed from response timing. */
function sameSecret(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function registerReplicaGauges(registry: Registry, replicaStatus: (() => readonly ReplicaStatus[]) | undefined): void {
  if (replicaStatus === undefined) return;
  new Gauge({
    name: 'db_replica_lag_seconds',
    help: 'How far each read replica was behind the primary at its last check (absent while it cannot be measured)',
    labelNames: ['replica'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicaStatus()) {
        if (replica.lagMs !== undefined) this.set({ replica: replica.name }, replica.lagMs / 1000);
      }
    },
  });
  new Gauge({
    name: 'db_replica_usable',
    help: 'Whether each read replica was up and within DB_REPLICA_MAX_LAG_MS at its last check (1) or skipped (0)',
    labelNames: ['replica'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicaStatus()) this.set({ replica: replica.name }, replica.state === 'ok' ? 1 : 0);
    },
  });
}

function registerPoolGauges(registry: Registry, poolStats: (() => PoolStats) | undefined): void {
  if (poolStats === undefined) return;
  const gauge = (name: string, help: string, read: (stats: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(poolStats()));
      },
    });
  gauge('db_pool_connections', 'Connections the pool holds (busy and idle)', (s) => s.total);
  gauge('db_pool_connections_idle', 'Idle pooled connections', (s) => s.idle);
  gauge('db_pool_clients_waiting', 'Callers waiting for a pooled connection', (s) => s.waiting);
  gauge('db_pool_connections_max', 'Configured pool size', (s) => s.max);
  gauge('db_pool_utilisation_ratio', 'Busy connections / pool size', (s) =>
    s.max === 0 ? 0 : (s.total - s.idle) / s.max,
  );
}
