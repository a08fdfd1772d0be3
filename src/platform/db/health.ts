import { sql, type Kysely } from 'kysely';
import type { DB } from './database.ts';
import { withOperation } from './instrumentation.ts';
import { pendingMigrations } from './migrator.ts';

export interface Readiness {
  readonly database: 'ok' | 'unavailable';
  readonly migrations: 'ok' | 'pending' | 'unknown';
}

/**
 * Whether the database answers and every migration in `migrations/` is applied. Its queries are
 * labelled `health.ready` in the query metrics.
 *
 * @example
 * ```ts
 * await checkReadiness(db); // { database: 'ok', migrations: 'ok' }
 * ```
 */
export function checkReadiness(db: Kysely<DB>): Promise<Readiness> {
  return withOperation('health.ready', () => readiness(db));
}

async function readiness(db: Kysely<DB>): Promise<Readiness> {
  try {
    await sql`select 1`.execute(db);
  } catch {
    return { database: 'unavailable', migrations: 'unknown' };
  }
  try {
    return { database: 'ok', migrations: (await pendingMigrations(db)).length === 0 ? 'ok' : 'pending' };
  } catch {
    return { database: 'unavailable', migrations: 'unknown' };
  }
}
