import { sql, type Kysely, type RawBuilder, type SelectQueryBuilder, type SelectType } from 'kysely';
import type { DB } from '../../../db-types/index.ts';
import { fixedQuery, type FixedQuery } from '../db/compiled-query.ts';

/** How long rows are kept once they are no longer needed (see the README's configuration table). */
export interface RetentionPolicy {
  /**
   * Expired or revoked refresh tokens are kept this long (reuse shows as "revoked", not "unknown"),
   * and expired or ended sessions and expired account tokens too.
   */
  readonly refreshTokenGraceSeconds: number;
  /** Outbox messages that are done (sent, skipped, given up) are kept this many days. */
  readonly emailOutboxRetentionDays: number;
  /** Audit events are kept this many days (AUDIT_RETENTION_DAYS). */
  readonly auditRetentionDays: number;
}

/**
 * One kind of row the maintenance job deletes. Adding a table is one more entry in
 * {@link PRUNE_RULES}: the query that deletes a batch of at most `limit` rows older than `before`,
 * and where `before` lies under the policy. The query must read through an index
 * (test/platform/db/query-plans.test.ts checks it does) and lock nothing it would wait for.
 */
export interface PruneRule {
  /** `table.reason`, the `rule` label of the metrics. */
  readonly name: string;
  readonly table: keyof DB;
  readonly cutoff: (now: Date, policy: RetentionPolicy) => Date;
  readonly deleteBatch: FixedQuery<[before: Date, limit: number], unknown>;
}

const ago = (now: Date, seconds: number) => new Date(now.getTime() - seconds * 1000);

/**
 * `ctid = any(array(<batch>))`: the batch is picked through its index, locked with SKIP LOCKED (a
 * refresh rotating that very token keeps it, and pruning never waits on the request path), and
 * deleted by physical position (a Tid Scan). Written as `id in (<batch>)` the planner may instead
 * join the batch against a sequential scan of the whole table.
 */
export function byPosition(batch: SelectQueryBuilder<DB, keyof DB, { ctid: unknown }>): RawBuilder<boolean> {
  return sql<boolean>`ctid = any(array(${batch.forUpdate().skipLocked()}))`;
}

/** The columns of `T` that hold a time: what a batch of old rows is picked by. */
type TimeColumn<T extends keyof DB> = {
  [C in keyof DB[T] & string]: NonNullable<SelectType<DB[T][C]>> extends Date ? C : never;
}[keyof DB[T] & string];

/**
 * Deletes at most `limit` rows of `table` whose `column` is before `before` (or at it, with
 * `upTo: 'inclusive'`), by position (see {@link byPosition}).
 */
export function deleteBatchBefore<T extends keyof DB>(
  db: Kysely<DB>,
  table: T,
  column: TimeColumn<T>,
  before: Date,
  limit: number,
  upTo: 'exclusive' | 'inclusive' = 'exclusive',
) {
  // Widened to every table: Kysely's builders cannot be called on a table still generic.
  const name: keyof DB = table;
  const batch = db
    .selectFrom(name)
    .select(sql`ctid`.as('ctid'))
    .where(sql.ref(column), upTo === 'inclusive' ? '<=' : '<', before)
    .limit(limit);
  return db.deleteFrom(name).where(byPosition(batch));
}

export const PRUNE_RULES: readonly PruneRule[] = [
  {
    name: 'refresh_tokens.expired',
    table: 'refresh_tokens',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'refresh_tokens', 'expires_at', before, limit),
    ),
  },
  {
    name: 'refresh_tokens.revoked',
    table: 'refresh_tokens',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'refresh_tokens', 'revoked_at', before, limit),
    ),
  },
  {
    name: 'sessions.expired',
    table: 'sessions',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'sessions', 'expires_at', before, limit),
    ),
  },
  {
    name: 'sessions.ended',
    table: 'sessions',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'sessions', 'ended_at', before, limit),
    ),
  },
  {
    name: 'audit_events.expired',
    table: 'audit_events',
    cutoff: (now, policy) => ago(now, policy.auditRetentionDays * 86_400),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'audit_events', 'occurred_at', before, limit),
    ),
  },
  {
    name: 'account_tokens.expired',
    table: 'account_tokens',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'account_tokens', 'expires_at', before, limit),
    ),
  },
  {
    // An email change's tokens expire with it, so both go within the same grace period.
    name: 'email_changes.expired',
    table: 'email_changes',
    cutoff: (now, policy) => ago(now, policy.refreshTokenGraceSeconds),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'email_changes', 'expires_at', before, limit),
    ),
  },
  {
    // Provider sign-in flows and exchange codes are useless once expired (10 minutes, 60 seconds).
    name: 'oauth_flows.expired',
    table: 'oauth_flows',
    cutoff: (now) => now,
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'oauth_flows', 'expires_at', before, limit),
    ),
  },
  {
    name: 'oauth_exchange_codes.expired',
    table: 'oauth_exchange_codes',
    cutoff: (now) => now,
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      deleteBatchBefore(db, 'oauth_exchange_codes', 'expires_at', before, limit),
    ),
  },
  {
    name: 'email_outbox.done',
    table: 'email_outbox',
    cutoff: (now, policy) => ago(now, policy.emailOutboxRetentionDays * 86_400),
    deleteBatch: fixedQuery((db, before: Date, limit: number) =>
      db.deleteFrom('email_outbox').where(
        byPosition(
          db
            .selectFrom('email_outbox')
            .select(sql`ctid`.as('ctid'))
            // The partial index's predicate, spelled as it is, so the planner can use it.
            .where('state', 'in', ['sent', 'skipped', 'failed'])
            .where('created_at', '<', before)
            .limit(limit),
        ),
      ),
    ),
  },
];

/**
 * Deletes rows the application no longer needs, one bounded batch per call (one short statement,
 * its own transaction on the root database).
 *
 * @example
 * ```ts
 * const prune = new PruneRepository(db);
 * for (const rule of PRUNE_RULES) while ((await prune.pruneBatch(rule, rule.cutoff(now, policy), 1000)) === 1000);
 * ```
 */
export class PruneRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** Deletes at most `limit` rows of `rule` older than `before`. @returns how many were deleted. */
  async pruneBatch(rule: PruneRule, before: Date, limit: number): Promise<number> {
    return Number(await rule.deleteBatch.affectedRows(this.#db, before, limit));
  }
}
