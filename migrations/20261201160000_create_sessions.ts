import { sql, type Kysely } from 'kysely';

// A session is one login's refresh-token family: its id is the access token's `sid` and the
// family's `family_id`. Ending it (ended_at) is announced on the `users_changed` channel as
// `session:<id>`, so every instance stops accepting its access tokens at once without a query
// per request.
//
// No foreign key from refresh_tokens.family_id to sessions on purpose: while a deploy rolls, the
// previous release keeps opening families without a session row, and a constraint would fail
// those logins. The refresh of such a family gives it its session then (AuthService.refresh).
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
  // A user's sessions, newest first (the listing); also what the cascade from users uses.
  await db.schema
    .createIndex('sessions_user_id_created_at_idx')
    .on('sessions')
    .columns(['user_id', 'created_at desc', 'id desc'])
    .execute();
  // The maintenance job deletes sessions some time after they expired or ended.
  await db.schema.createIndex('sessions_expires_at_idx').on('sessions').column('expires_at').execute();
  await db.schema
    .createIndex('sessions_ended_at_idx')
    .on('sessions')
    .column('ended_at')
    .where(sql.ref('ended_at'), 'is not', null)
    .execute();

  // Families issued before sessions existed become sessions, so every token keeps working.
  await sql`
    insert into sessions (id, user_id, created_at, last_used_at, expires_at, ended_at, end_reason)
    select family_id, min(user_id::text)::uuid, min(created_at), max(created_at), max(expires_at),
           case when bool_and(revoked_at is not null) then max(revoked_at) end,
           case when bool_and(revoked_at is not null) then 'revoked' end
    from refresh_tokens group by family_id`.execute(db);

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
  // A live session deleted (its user's cascade) is an end too; an expired one pruned is not news.
  await sql`
    create trigger sessions_deleted after delete on sessions
    for each row when (old.ended_at is null and old.expires_at > now())
    execute function notify_session_ended()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger sessions_deleted on sessions`.execute(db);
  await sql`drop trigger sessions_ended on sessions`.execute(db);
  await sql`drop function notify_session_ended()`.execute(db);
  await db.schema.dropTable('sessions').execute();
}
