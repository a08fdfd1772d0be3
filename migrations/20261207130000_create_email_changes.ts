import { sql, type Kysely } from 'kysely';

// A confirmed email change (api.md v3, "Changing the email address"): the request is a row here,
// and its two links are account tokens (purposes email_change_new and email_change_current) that
// point at it. The change takes effect once every link it needs was used; a newer request
// supersedes the row and its links. `current_required` is false when the current address was never
// verified: only the new address then confirms (README, "Changing the email address").
// The purpose and end-reason checks are replaced NOT VALID (instant; every existing row holds an
// old value); migration 20261207130100 validates them under a lock that lets writes through.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('email_changes')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('new_email', 'text', (col) => col.notNull())
    // The session that asked: it stays signed in when the change ends every other session.
    .addColumn('session_id', 'uuid')
    .addColumn('current_required', 'boolean', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('new_confirmed_at', 'timestamptz')
    .addColumn('current_confirmed_at', 'timestamptz')
    .addColumn('completed_at', 'timestamptz')
    .addColumn('superseded_at', 'timestamptz')
    .addCheckConstraint('email_changes_new_email_length', sql`char_length(new_email) between 3 and 254`)
    .execute();
  // A user's pending requests (superseding; the cascade from users) and the maintenance job's cutoff.
  await db.schema.createIndex('email_changes_user_id_idx').on('email_changes').column('user_id').execute();
  await db.schema.createIndex('email_changes_expires_at_idx').on('email_changes').column('expires_at').execute();

  // The column is new and empty, so its foreign key has nothing to check; migration
  // 20261207130100 indexes it for the cascade from email_changes (pruning).
  await sql`alter table account_tokens add column email_change_id uuid
    references email_changes (id) on delete cascade`.execute(db);
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

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`delete from account_tokens where purpose in ('email_change_new', 'email_change_current')`.execute(db);
  await sql`alter table account_tokens drop constraint account_tokens_purpose_check`.execute(db);
  await sql`alter table account_tokens add constraint account_tokens_purpose_check
    check (purpose in ('email_verification', 'password_reset'))`.execute(db);
  await sql`alter table account_tokens drop column email_change_id`.execute(db);
  await sql`update sessions set end_reason = 'revoked_others' where end_reason = 'email_changed'`.execute(db);
  await sql`alter table sessions drop constraint sessions_end_reason_check`.execute(db);
  await sql`alter table sessions add constraint sessions_end_reason_check
    check (end_reason in ('logout', 'revoked', 'revoked_others', 'password_changed', 'password_reset',
      'refresh_reused', 'user_disabled', 'user_deleted'))`.execute(db);
  await db.schema.dropTable('email_changes').execute();
}
