import { sql, type Kysely } from 'kysely';

// The maintenance job (src/platform/jobs/maintenance.ts) also deletes account tokens some time after
// they expired (used and superseded ones expire within a day as well) and outbox messages that
// are done (sent, skipped or given up) once they are older than EMAIL_OUTBOX_RETENTION_DAYS. Each
// batch finds its rows through one of these indexes instead of reading the table from the start.
// The outbox index is partial: pending and sending messages are never pruned. Both tables take
// writes on the request path (registration, password reset), so the indexes are built
// CONCURRENTLY, outside a transaction.
export const transaction = false;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS account_tokens_expires_at_idx ON account_tokens (expires_at)`.execute(
    db,
  );
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS email_outbox_done_created_at_idx ON email_outbox (created_at)
    WHERE state IN ('sent', 'skipped', 'failed')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX CONCURRENTLY IF EXISTS email_outbox_done_created_at_idx`.execute(db);
  await sql`DROP INDEX CONCURRENTLY IF EXISTS account_tokens_expires_at_idx`.execute(db);
}
