import { sql, type Kysely } from 'kysely';

// Follows 20261201160100: validates users_status_check (a scan under SHARE UPDATE EXCLUSIVE,
// which lets reads and writes through), and indexes the active admins. Every change that could
// leave no active admin locks their rows first (UserRepository.lockActiveAdmins); the partial
// index finds them without reading the table. CONCURRENTLY cannot run in a transaction, hence
// `transaction = false`; a failed build leaves an invalid index that `npm run migrate:status`
// names: drop it and migrate again.
export const transaction = false;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table users validate constraint users_status_check`.execute(db);
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS users_active_admins_idx ON users (id)
    WHERE role = 'admin' AND status = 'active'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX CONCURRENTLY IF EXISTS users_active_admins_idx`.execute(db);
  // A validated constraint cannot be marked unvalidated again: it is put back as 20261201160100 left it.
  await sql`alter table users drop constraint users_status_check`.execute(db);
  await sql`alter table users add constraint users_status_check check (status in ('active', 'disabled')) not valid`.execute(
    db,
  );
}
