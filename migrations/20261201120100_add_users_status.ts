import { sql, type Kysely } from 'kysely';

// A disabled account cannot log in (the same 401 as a wrong password) and has no live sessions.
// The constant default makes this a catalog-only change on PostgreSQL 11+: no table rewrite.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('active'))
    .execute();
  await db.schema
    .alterTable('users')
    .addCheckConstraint('users_status_check', sql`status in ('active', 'disabled')`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('status').execute();
}
