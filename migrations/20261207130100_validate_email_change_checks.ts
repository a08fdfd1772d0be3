import { sql, type Kysely } from 'kysely';

// Follows 20261207130000: validates the widened purpose and end-reason checks (a scan under SHARE
// UPDATE EXCLUSIVE, which lets reads and writes through), and indexes account_tokens.email_change_id
// for the cascade when the maintenance job deletes expired email changes. CONCURRENTLY cannot run
// in a transaction, hence `transaction = false`.
export const transaction = false;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table account_tokens validate constraint account_tokens_purpose_check`.execute(db);
  await sql`alter table sessions validate constraint sessions_end_reason_check`.execute(db);
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS account_tokens_email_change_id_idx
    ON account_tokens (email_change_id) WHERE email_change_id IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX CONCURRENTLY IF EXISTS account_tokens_email_change_id_idx`.execute(db);
  // A validated constraint cannot be marked unvalidated again: both are put back as 20261207130000 left them.
  await sql`alter table account_tokens drop constraint account_tokens_purpose_check`.execute(db);
  await sql`alter table account_tokens add constraint account_tokens_purpose_check
    check (purpose in ('email_verification', 'password_reset', 'email_change_new', 'email_change_current')) not valid`.execute(
    db,
  );
  await sql`alter table sessions drop constraint sessions_end_reason_check`.execute(db);
  await sql`alter table sessions add constraint sessions_end_reason_check
    check (end_reason in ('logout', 'revoked', 'revoked_others', 'password_changed', 'password_reset',
      'refresh_reused', 'user_disabled', 'user_deleted', 'email_changed')) not valid`.execute(db);
}
