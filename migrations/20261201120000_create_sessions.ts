import { sql, type Kysely } from 'kysely';

// A session is one login's refresh-token family: its id is the access token's `sid` and every
// refresh token of the family points at it. Ending it (ended_at) is announced on the
// `users_changed` channel as `session:<id>`, so every instance stops accepting its access tokens
// at once without a query per request.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // Millisecond precision, like a JavaScript Date, so the listing's order round-trips exactly.
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('user_agent', 'text')
    .addColumn('ip_address', 'text')
    .addColumn('ended_at', 'timestamptz')
    .addColumn('end_reason', 'text')
    .addCheckConstraint('sessions_user_agent_length', sql`char_length(user_agent) <= 256`)
    .addCheckConstraint('sessions_ip_address_length', sql`char_length(ip_address) <= 64`)
    .addCheckConstraint(
      'sessions_end_reason_check',
      sql`end_reason in ('logout', 'revoked', 'revoked_others', 'password_changed', 'password_reset', 'refresh_reused', 'user_disabled', 'user_deleted')`,
    )
    .addCheckConstraint('sessions_ended_with_reason', sql`(ended_at is null) = (end_reason is null)`)
    .execute();
  await db.schema
    .createIndex('sessions_user_id_created_at_idx')
    .on('sessions')
    .columns(['user_id', 'created_at desc', 'id desc'])
    .execute();

  // Families issued before sessions existed become sessions, so every token keeps working.
  await sql`
    insert into sessions (id, user_id, created_at, last_used_at, expires_at, ended_at, end_reason)
    select family_id, min(user_id::text)::uuid, min(created_at), max(created_at), max(expires_at),
           case when bool_and(revoked_at is not null) then max(revoked_at) end,
           case when bool_and(revoked_at is not null) then 'revoked' end
    from refresh_tokens group by family_id`.execute(db);
  await db.schema
    .alterTable('refresh_tokens')
    .addForeignKeyConstraint('refresh_tokens_family_id_fkey', ['family_id'], 'sessions', ['id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .execute();

  await sql`
    create function notify_session_ended() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', 'session:' || old.id::text);
      return null;
    end
    $$`.execute(db);
  await sql`
    create trigger sessions_ended after update of ended_at on sessions
    for each row when (old.ended_at is null and new.ended_at is not null)
    execute function notify_session_ended()`.execute(db);
  await sql`
    create trigger sessions_deleted after delete on sessions
    for each row when (old.ended_at is null) execute function notify_session_ended()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger sessions_deleted on sessions`.execute(db);
  await sql`drop trigger sessions_ended on sessions`.execute(db);
  await sql`drop function notify_session_ended()`.execute(db);
  await db.schema.alterTable('refresh_tokens').dropConstraint('refresh_tokens_family_id_fkey').execute();
  await db.schema.dropTable('sessions').execute();
}
