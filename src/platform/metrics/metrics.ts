import { Counter, Gauge, Histogram, Registry } from '@prometheus-io/client';
import type { ReplicaEvents } from '../db/replicas.ts';
import { logQuery, type QueryEvent, type QueryLogger, type QueryLogOptions } from '../db/instrumentation.ts';
import type { AppError } from '../errors/index.ts';
import type { OutboxStats } from '../email/email-outbox.repository.ts';
import type { SessionEndReason } from '../../sessions/sessions.repository.ts';
import type { DispatcherEvents } from '../email/dispatcher.ts';
import type { AuthEvents } from '../../auth/service.ts';
import { EMAIL_TEMPLATES } from '../email/templates.ts';
import type { SessionEvents } from '../../sessions/service.ts';
import { ADMIN_ACTION_KINDS, type AdminEvents } from '../../users/admin.ts';

/** Pool counters read at scrape time (pg.Pool's totalCount, idleCount, waitingCount and max). */
export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max: number;
}

/** Query durations resolve 1 ms to 1 s; slower ones land in +Inf. */
const QUERY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Every reason a session ends (the database's sessions_end_reason_check), each a zero series from the start. */
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
  readonly reuseIntervalReplays = new Counter({
    name: 'auth_refresh_reuse_interval_total',
    help: 'Rotated refresh tokens presented again within REFRESH_REUSE_INTERVAL_SECONDS, by client: same (the user agent of the session, answered with the successor) or other (treated as reuse: the session ends)',
    labelNames: ['client'] as const,
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
  readonly principalLookups = new Counter({
    name: 'auth_principal_lookups_total',
    help: "Authenticated requests by where the caller's user row came from: the principal cache or the database",
    labelNames: ['source'] as const,
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

  readonly emailsSent = new Counter({
    name: 'email_sent_total',
    help: 'Emails accepted by the transport, by template',
    labelNames: ['template'] as const,
    registers: [this.registry],
  });
  readonly emailsFailed = new Counter({
    name: 'email_failed_total',
    help: 'Emails given up after their last attempt, by template',
    labelNames: ['template'] as const,
    registers: [this.registry],
  });
  readonly emailRetries = new Counter({
    name: 'email_send_retries_total',
    help: 'Failed send attempts that will be retried, by template',
    labelNames: ['template'] as const,
    registers: [this.registry],
  });
  readonly emailsSkipped = new Counter({
    name: 'email_skipped_total',
    help: 'Queued emails not sent because they no longer apply (address already verified, account disabled or deleted since it was queued; a reset for an address nobody owns is never queued), by template',
    labelNames: ['template'] as const,
    registers: [this.registry],
  });
  /** The outbox as this instance's dispatcher last measured it (every pass). */
  #outbox: OutboxStats | undefined;
  readonly outboxDepth = new Gauge({
    name: 'email_outbox_depth',
    help: 'Emails waiting in the outbox (pending or being sent), as of the last dispatcher pass',
    registers: [this.registry],
    collect: () => {
      if (this.#outbox !== undefined) this.outboxDepth.set(this.#outbox.depth);
    },
  });
  readonly outboxOldestAge = new Gauge({
    name: 'email_outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest email waiting in the outbox (0 when none waits)',
    registers: [this.registry],
    collect: () => {
      const oldest = this.#outbox?.oldestCreatedAt;
      if (this.#outbox !== undefined)
        this.outboxOldestAge.set(oldest == null ? 0 : Math.max(0, (Date.now() - oldest.getTime()) / 1000));
    },
  });

  constructor() {
    for (const template of EMAIL_TEMPLATES) {
      for (const counter of [this.emailsSent, this.emailsFailed, this.emailRetries, this.emailsSkipped])
        counter.inc({ template }, 0);
    }
    for (const target of ['replica', 'primary']) this.replicaReads.inc({ target }, 0);
    for (const reason of ['unavailable', 'lagging', 'error']) this.replicaFallbacks.inc({ reason }, 0);
    // Zero series exist from the start, so rates and alerts work before the first event.
    for (const outcome of ['success', 'failure', 'rate_limited']) this.logins.inc({ outcome }, 0);
    for (const outcome of ['rotated', 'reissued', 'reused', 'rejected']) this.refreshes.inc({ outcome }, 0);
    for (const client of ['same', 'other']) this.reuseIntervalReplays.inc({ client }, 0);
    for (const reason of SESSION_END_REASONS) this.sessionsEnded.inc({ reason }, 0);
    for (const kind of ADMIN_ACTION_KINDS) this.adminActions.inc({ kind }, 0);
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
      onReuseInterval: (client) => {
        this.reuseIntervalReplays.inc({ client });
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

  /** The hooks the outbox dispatcher reports to. */
  get dispatcherEvents(): DispatcherEvents {
    return {
      onSent: (template) => {
        this.emailsSent.inc({ template });
      },
      onFailed: (template) => {
        this.emailsFailed.inc({ template });
      },
      onRetry: (template) => {
        this.emailRetries.inc({ template });
      },
      onSkipped: (template) => {
        this.emailsSkipped.inc({ template });
      },
      onStats: (stats) => {
        this.#outbox = stats;
      },
    };
  }

  onRateLimited(limiter: string): void {
    this.rateLimited.inc({ limiter });
    if (limiter.startsWith('login')) this.logins.inc({ outcome: 'rate_limited' });
  }
}
