import { sql, type Kysely } from 'kysely';
import type { DB } from './database.ts';

export type LockOutcome<T> = { readonly acquired: true; readonly value: T } | { readonly acquired: false };

/**
 * Runs `work` while this session holds the PostgreSQL advisory lock named `name`, on one pooled
 * connection reserved for the whole run; `work` gets that connection and runs its statements on
 * it, each in its own short transaction. When another session holds the lock, `work` does not run.
 *
 * Session-level locks need a session of their own: under PgBouncer in transaction mode the lock
 * could outlive the run on a server connection someone else gets next. There, run the job from
 * cron (`npm run db:prune`) against the server directly.
 *
 * @example
 * ```ts
 * const outcome = await withAdvisoryLock(db, 'maintenance', (conn) => prune(conn));
 * if (!outcome.acquired) log('another instance is pruning');
 * ```
 */
export async function withAdvisoryLock<T>(
  db: Kysely<DB>,
  name: string,
  work: (connection: Kysely<DB>) => Promise<T>,
): Promise<LockOutcome<T>> {
  return db.connection().execute(async (connection) => {
    // hashtextextended: a 64-bit key from the name, so no number has to be kept unique by hand.
    const { rows } = await sql<{ locked: boolean }>`
      select pg_try_advisory_lock(hashtextextended(${name}, 0)) as locked`.execute(connection);
    if (rows[0]?.locked !== true) return { acquired: false };
    try {
      return { acquired: true, value: await work(connection) };
    } finally {
      await sql`select pg_advisory_unlock(hashtextextended(${name}, 0))`.execute(connection);
    }
  });
}
