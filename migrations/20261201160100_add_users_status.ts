import { sql, type Kysely } from 'kysely';

// A disabled account cannot log in (the same 401 as a wrong password) and has no live sessions.
// The constant default makes the column a catalog-only change (PostgreSQL 11+): no table rewrite.
// The check is added NOT VALID (instant: existing rows all hold the default); migration
// 20261201160300 validates it outside this transaction, under a lock that lets writes through.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('active'))
    .execute();
  await sql`alter table users add constraint users_status_check check (status in ('active', 'disabled')) not valid`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('status').execute();
}
