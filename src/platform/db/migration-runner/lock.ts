import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type ControlledTransaction, type Kysely } from 'kysely';

/** The key of Kysely's own migration lock, so every migrator of this database excludes the others. */
export const MIGRATION_LOCK_ID = 3853314791062309107n;

/** How long a migrator waits for another one to finish (an hour, like Kysely's own lock). */
const MIGRATION_LOCK_WAIT_MS = 3_600_000;
const MIGRATION_LOCK_POLL_MS = 100;

/**
 * A transaction that holds the migrators' lock, trying again until it is free. Each try is a
 * transaction of its own, rolled back when the lock is taken: CREATE INDEX CONCURRENTLY in the
 * migrator that holds the lock waits for every transaction that had a snapshot when it looked,
 * to its end, so a waiter that stayed in one transaction (blocked in `pg_advisory_xact_lock`, or
 * polling inside it) stalled it until its lock_timeout whenever a poll was in flight at that
 * moment (npm start racing `npm run user:create`; two `npm run migrate` on a loaded machine).
 * Between tries the waiter is in no transaction at all.
 */
export async function transactionWithMigrationLock(db: Kysely<unknown>): Promise<ControlledTransaction<unknown>> {
  const deadline = Date.now() + MIGRATION_LOCK_WAIT_MS;
  for (;;) {
    const holder = await db.startTransaction().execute();
    try {
      const { rows } = await sql<{ locked: boolean }>`
        select pg_try_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_ID)}) as locked`.execute(holder);
      if (rows[0]?.locked === true) return holder;
    } catch (error) {
      await holder
        .rollback()
        .execute()
        .catch(() => undefined);
      throw error;
    }
    await holder.rollback().execute();
    if (Date.now() > deadline) throw new Error('Timed out waiting for another migrator to finish');
    await sleep(MIGRATION_LOCK_POLL_MS);
  }
}

/** Kysely's bookkeeping tables, as its Migrator creates them; run under the run's lock, so never raced. */
export async function ensureBookkeeping(db: Kysely<unknown>): Promise<void> {
  await sql`create table if not exists kysely_migration (name varchar(255) not null primary key, timestamp varchar(255) not null)`.execute(
    db,
  );
  await sql`create table if not exists kysely_migration_lock (id varchar(255) not null primary key, is_locked integer not null default 0)`.execute(
    db,
  );
  await sql`insert into kysely_migration_lock (id, is_locked) values ('migration_lock', 0) on conflict do nothing`.execute(
    db,
  );
}
