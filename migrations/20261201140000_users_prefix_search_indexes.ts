import { sql, type Kysely } from 'kysely';

// GET /users?q= matches a prefix of the email or of the name, case-insensitively for the name.
// text_pattern_ops lets `LIKE 'prefix%'` use a btree whatever the database's collation.
// CONCURRENTLY builds the indexes without blocking writes to users, which a busy table needs; it
// cannot run inside a transaction, hence `transaction = false`. Should a build fail, the invalid
// index is named by `npm run migrate` and `npm run migrate:status`: drop it and migrate again.
export const transaction = false;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_prefix_idx ON users (email text_pattern_ops)`.execute(
    db,
  );
  await sql`CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name_prefix_idx ON users (lower(name) text_pattern_ops)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX CONCURRENTLY IF EXISTS users_name_prefix_idx`.execute(db);
  await sql`DROP INDEX CONCURRENTLY IF EXISTS users_email_prefix_idx`.execute(db);
}
