import { sql, type Kysely } from 'kysely';

// Every change to a user row is announced on the `users_changed` channel (payload: the user's id;
// `*` after a TRUNCATE), once its transaction commits. Application instances keep a short-lived
// cache of authenticated principals and drop an entry as soon as its row changes, so a demoted or
// deleted user loses access without every request querying the row.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function notify_user_changed() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', old.id::text);
      return null;
    end
    $$`.execute(db);
  await sql`
    create trigger users_changed after update or delete on users
    for each row execute function notify_user_changed()`.execute(db);

  await sql`
    create function notify_users_truncated() returns trigger language plpgsql as $$
    begin
      perform pg_notify('users_changed', '*');
      return null;
    end
    $$`.execute(db);
  await sql`
    create trigger users_truncated after truncate on users
    for each statement execute function notify_users_truncated()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger users_truncated on users`.execute(db);
  await sql`drop function notify_users_truncated()`.execute(db);
  await sql`drop trigger users_changed on users`.execute(db);
  await sql`drop function notify_user_changed()`.execute(db);
}
