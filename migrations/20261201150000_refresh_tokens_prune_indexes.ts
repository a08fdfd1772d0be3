import { sql, type Kysely } from 'kysely';

// The maintenance job (src/platform/jobs/maintenance.ts) deletes refresh tokens some time after they
// expired or were revoked, in small batches. Without these indexes every batch would read the
// table from the start until it found its rows: at ten million tokens, seconds per batch. The
// revocation index is partial: most tokens are never revoked, and those need no entry.
// refresh_tokens takes a write on every login and refresh, so the indexes are built CONCURRENTLY
// (outside a transaction, hence `transaction = false`): a plain CREATE INDEX would hold every
// login behind its SHARE lock for the whole build (npm run db:lint flags that).
export const transaction = false;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS refresh_tokens_expires_at_idx ON refresh_tokens (expires_at)`.execute(
    db,
  );
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS refresh_tokens_revoked_at_idx ON refresh_tokens (revoked_at)
    WHERE revoked_at IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_revoked_at_idx`.execute(db);
  await sql`DROP INDEX CONCURRENTLY IF EXISTS refresh_tokens_expires_at_idx`.execute(db);
}
