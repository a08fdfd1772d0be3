import { sql, type Kysely } from 'kysely';

// The functions that announce a changed user or an ended session also mark their transaction
// (`app.user_changes`, transaction-local), so the unit of work that committed it can wait until
// its own instance's change feed has heard it: the caches then learn every change from the feed,
// this instance's own included, and a revocation holds as soon as the request that made it returns.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function notify_user_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', old.id::text);
      perform set_config('app.user_changes', 'on', true);
      return null;
    end
    $$`.execute(db);
  await sql`
    create or replace function notify_users_truncated() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', '*');
      perform set_config('app.user_changes', 'on', true);
      return null;
    end
    $$`.execute(db);
  await sql`
    create or replace function notify_session_ended() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', 'session:' || old.id::text);
      perform set_config('app.user_changes', 'on', true);
      return null;
    end
    $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function notify_user_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', old.id::text);
      return null;
    end
    $$`.execute(db);
  await sql`
    create or replace function notify_users_truncated() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', '*');
      return null;
    end
    $$`.execute(db);
  await sql`
    create or replace function notify_session_ended() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', 'session:' || old.id::text);
      return null;
    end
    $$`.execute(db);
}
