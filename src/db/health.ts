import { sql, type Kysely } from 'kysely';
import type { DB } from './database.ts';
import { pendingMigrations } from './migrator.ts';

export interface Readiness {
  readonly database: 'ok' | 'unavailable';
  readonly migrations: 'ok' | 'pending' | 'unknown';
}

/**
 * Whether the database answers and every migration in `migrations/` is applied.
 *
 * @example
 * ```ts
 * await checkReadiness(db); // { database: 'ok', migrations: 'ok' }
 * ```
 */
export async function checkReadiness(db: Kysely<DB>): Promise<Readiness> {
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
