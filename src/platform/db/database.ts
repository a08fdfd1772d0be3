import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import type { DB } from '../../../db-types/index.ts';
import type { AppError } from '../errors/index.ts';
import type { QueryEvent } from './instrumentation.ts';
import { createPool, TranslatingPool, type PoolConfig } from './pool.ts';

export type { DB } from '../../../db-types/index.ts';
export { createPool, type PoolConfig } from './pool.ts';
/** The root database or a transaction: repositories take either. */
export type Database = Kysely<DB>;

export interface CreateDatabaseOptions {
  /** Reuse an existing pool (metrics read its counters); by default one is created from the config. */
  readonly pool?: pg.Pool;
  /**
   * Told of every statement sent, with its duration and the repository operation it ran for:
   * metrics and the slow-query log.
   */
  readonly onQuery?: (event: QueryEvent) => void;
  /** Told when no connection could be had (pool exhausted, server down): no query ran, so `onQuery` is not. */
  readonly onCheckoutError?: (error: AppError) => void;
  /** Told of every retry of a unit of work opened on this database (see `withTransaction`). */
  readonly onTransactionRetry?: () => void;
  /** The caches' change feed: units of work that changed a user or ended a session wait for it. */
  readonly changes?: CommitBarrier;
}

/**
 * What a unit of work waits for after its commit when it changed a user or ended a session (see
 * migration 20261207160000): its own notification heard by this instance's change feed, so the
 * caches the feed keeps are current before the request that made the change returns.
 */
export interface CommitBarrier {
  /** A fresh payload to send with the commit; undefined while the feed is not live (nothing is cached). */
  expect(): string | undefined;
  /** Resolves once `token` was heard, or the feed gave up on it and stopped trusting the caches. */
  heard(token: string): Promise<void>;
  /** The commit failed or sent nothing: stop waiting for `token`. */
  cancel(token: string): void;
}

/** How every unit of work opened on a root database behaves, whoever opens it (see `withTransaction`). */
export interface TransactionPolicy {
  /** Told of every retry (metrics count them). */
  readonly onRetry?: ((attempt: number, error: unknown) => void) | undefined;
  /**
   * `SET LOCAL statement_timeout` at the start of every transaction that does not ask for its
   * own: the timeout in transaction pool mode, where it cannot be a connection's session setting.
   */
  readonly statementTimeoutMs?: number | undefined;
  readonly changes?: CommitBarrier | undefined;
}

/**
 * The root `Kysely<DB>` that {@link createDatabase} returns, carrying its transaction policy.
 * Kysely ends the pool on `destroy()` only if it has opened a connection itself; the pool is
 * ended here in any case, so a database that never ran a query leaves no pool behind.
 */
export class RootDatabase extends Kysely<DB> {
  readonly transactionPolicy: TransactionPolicy;
  readonly #pool: TranslatingPool;

  constructor(pool: TranslatingPool, transactionPolicy: TransactionPolicy) {
    super({ dialect: new PostgresDialect({ pool }) });
    this.#pool = pool;
    this.transactionPolicy = transactionPolicy;
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    await this.#pool.end();
  }
}

/**
 * The application's `Kysely<DB>` over a `pg.Pool`. Every error leaving the driver is already an
 * `AppError` (see `translateDatabaseError`), so nothing above `src/platform/db/` sees a raw `pg` error.
 *
 * @example
 * ```ts
 * const db = createDatabase({ url: 'postgres://localhost/app', poolMax: 10, connectionTimeoutMs: 5000,
 *   idleTimeoutMs: 30000, statementTimeoutMs: 10000, applicationName: 'api' });
 * const user = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
 * await db.destroy(); // ends the pool
 * ```
 */
export function createDatabase(config: PoolConfig, options: CreateDatabaseOptions = {}): Kysely<DB> {
  const transactionMode = config.poolMode === 'transaction';
  if (transactionMode && config.preparedStatements === true) {
    throw new Error('Named prepared statements cannot be used in transaction pool mode (PgBouncer transaction mode)');
  }
  const pool = options.pool ?? createPool(config);
  const prepare = !transactionMode && (config.preparedStatements ?? true);
  const translating = new TranslatingPool(pool, prepare, options);
  return new RootDatabase(translating, {
    onRetry: options.onTransactionRetry,
    changes: options.changes,
    statementTimeoutMs: transactionMode && config.statementTimeoutMs > 0 ? config.statementTimeoutMs : undefined,
  });
}
