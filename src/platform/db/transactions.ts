import {
  ControlledTransaction,
  sql,
  type AccessMode,
  type IsolationLevel,
  type Kysely,
  type Transaction,
} from 'kysely';
import { RootDatabase, type DB, type TransactionPolicy } from './database.ts';
import { isRetryableTransactionError, translateDatabaseError } from './errors.ts';
import { withOperation } from './instrumentation.ts';
import { USER_CHANGES_CHANNEL } from './user-changes.ts';

export interface TransactionOptions {
  /** Only for the outermost unit of work; a nested one inherits its transaction's level. */
  readonly isolationLevel?: IsolationLevel;
  readonly accessMode?: AccessMode;
  /**
   * `SET LOCAL statement_timeout` for this unit of work. In a nested unit it lasts until the
   * enclosing transaction ends (unless the savepoint is rolled back), as `SET LOCAL` does.
   */
  readonly statementTimeoutMs?: number;
  /** Attempts for serialization failures and deadlocks, first one included (default 5). */
  readonly maxAttempts?: number;
  /** First backoff delay; each retry doubles it, with full jitter (default 10 ms, at most 500 ms). */
  readonly retryBaseDelayMs?: number;
  readonly retryMaxDelayMs?: number;
  /** Told of every retry (metrics count them). */
  readonly onRetry?: (attempt: number, error: unknown) => void;
}

/**
 * What a unit of work receives: a transaction bound to one connection. It is a
 * ControlledTransaction at run time, so passing it to withTransaction again nests.
 */
export type UnitOfWork = Transaction<DB>;

/**
 * Nesting is strictly last-in-first-out (each savepoint is released or rolled back before its
 * caller returns), and PostgreSQL resolves a repeated savepoint name to the most recent one, so
 * one name serves every level. Nested units on one transaction must not run concurrently.
 */
const SAVEPOINT = 'unit_of_work';

/** The policy of the root database `createDatabase` made; none for any other `Kysely` (a `withSchema` copy). */
function policyOf(db: Kysely<DB>): TransactionPolicy {
  return db instanceof RootDatabase ? db.transactionPolicy : {};
}

/**
 * Runs `work` in a unit of work and returns its result.
 *
 * - Given the root database, it opens a transaction, commits when `work` resolves and rolls back
 *   when it throws. Serialization failures and deadlocks retry the whole of `work` with jittered
 *   exponential backoff; when the attempts run out the last one surfaces as a SerializationError
 *   (409 CONFLICT, code SERIALIZATION_FAILURE).
 * - Given a transaction (one this function opened, or a test's), it nests as a SAVEPOINT: an inner
 *   failure rolls back only the inner work and rethrows; inner success is kept only if the outer
 *   commits. Nested units never retry; the outermost one does.
 *
 * The connection always goes back to the pool, also when `work` throws or the connection dies.
 *
 * @example
 * ```ts
 * const user = await withTransaction(db, async (trx) => {
 *   const users = new UserRepository(trx);
 *   const created = await users.create(input);
 *   await new RefreshTokenRepository(trx).insert({ userId: created.id, … });
 *   return created;
 * }, { isolationLevel: 'serializable' });
 * ```
 */
export async function withTransaction<T>(
  db: Kysely<DB>,
  work: (trx: UnitOfWork) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  if (db.isTransaction) return withSavepoint(db, work, options);

  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  for (let attempt = 1; ; attempt++) {
    try {
      return await runTransaction(db, work, options);
    } catch (error) {
      // The last failure is already a SerializationError whose cause is the driver's error.
      if (!isRetryableTransactionError(error) || attempt >= maxAttempts) throw error;
      options.onRetry?.(attempt, error);
      policyOf(db).onRetry?.(attempt, error);
      await sleep(backoffDelay(attempt, options));
    }
  }
}

async function runTransaction<T>(db: Kysely<DB>, work: (trx: UnitOfWork) => Promise<T>, options: TransactionOptions) {
  let builder = db.startTransaction();
  if (options.isolationLevel !== undefined) builder = builder.setIsolationLevel(options.isolationLevel);
  if (options.accessMode !== undefined) builder = builder.setAccessMode(options.accessMode);
  const { statementTimeoutMs, changes } = policyOf(db);
  const trx = await withOperation('transaction.begin', () => builder.execute());
  let token: string | undefined;
  try {
    await setLocalStatementTimeout(trx, options.statementTimeoutMs ?? statementTimeoutMs);
    const result = await work(trx);
    token = changes?.expect();
    const announced = token !== undefined && (await announceChanges(trx, token));
    // A COMMIT that PostgreSQL answers with ROLLBACK (work swallowed a failed statement) makes
    // Kysely throw its own AbortedTransactionError; it leaves the data layer as an AppError too.
    await withOperation('transaction.commit', () => trx.commit().execute()).catch((error: unknown) => {
      throw translateDatabaseError(error);
    });
    if (announced && token !== undefined) await changes?.heard(token);
    return result;
  } catch (error) {
    if (!trx.isCommitted && !trx.isRolledBack) {
      // Also releases the connection (discarding it if the rollback itself fails).
      await withOperation('transaction.rollback', () => trx.rollback().execute()).catch(() => {});
    }
    throw error;
  } finally {
    if (token !== undefined) changes?.cancel(token);
  }
}

/**
 * Sends `token` on the change channel with the commit, only when the work changed a user or ended
 * a session (the notifying triggers mark the transaction): whether there is anything to wait for.
 */
async function announceChanges(trx: UnitOfWork, token: string): Promise<boolean> {
  const { rows } = await withOperation('transaction.changes', () =>
    sql`select pg_notify(${USER_CHANGES_CHANNEL}, ${token}) where current_setting('app.user_changes', true) = 'on'`.execute(
      trx,
    ),
  );
  return rows.length > 0;
}

async function withSavepoint<T>(db: Kysely<DB>, work: (trx: UnitOfWork) => Promise<T>, options: TransactionOptions) {
  if (!isControlledTransaction(db)) {
    throw new TypeError('Nested units of work need a transaction opened by withTransaction (a ControlledTransaction)');
  }
  const trx = await withOperation('transaction.savepoint', () => db.savepoint(SAVEPOINT).execute());
  try {
    await setLocalStatementTimeout(trx, options.statementTimeoutMs);
    const result = await work(trx);
    await withOperation('transaction.savepoint', () => trx.releaseSavepoint(SAVEPOINT).execute());
    return result;
  } catch (error) {
    await withOperation('transaction.savepoint', () => trx.rollbackToSavepoint(SAVEPOINT).execute()).catch(() => {});
    throw error;
  }
}

function isControlledTransaction(db: Kysely<DB>): db is ControlledTransaction<DB> {
  return db instanceof ControlledTransaction;
}

async function setLocalStatementTimeout(trx: UnitOfWork, timeoutMs: number | undefined): Promise<void> {
  if (timeoutMs === undefined) return;
  // set_config(…, true) is SET LOCAL in function form, so the value can be a bound parameter.
  const value = `${Math.max(0, Math.floor(timeoutMs))}ms`;
  await withOperation('transaction.timeout', () =>
    sql`select set_config('statement_timeout', ${value}, true)`.execute(trx),
  );
}

function backoffDelay(attempt: number, options: TransactionOptions): number {
  const base = options.retryBaseDelayMs ?? 10;
  const cap = options.retryMaxDelayMs ?? 500;
  return Math.random() * Math.min(cap, base * 2 ** (attempt - 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
