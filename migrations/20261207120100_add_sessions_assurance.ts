import { sql, type Kysely } from 'kysely';

// What a session's sign-in proved, carried by its access tokens as `aal` and `amr` and kept
// across refreshes. Every session so far signed in with a password alone. Constant defaults make
// both columns catalog-only changes (PostgreSQL 11+); the check is added NOT VALID (instant:
// existing rows all hold the default) and a later migration may validate it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('sessions')
    .addColumn('aal', 'text', (col) => col.notNull().defaultTo('aal1'))
    .addColumn('amr', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{pwd}'::text[]`))
    .execute();
  await sql`alter table sessions add constraint sessions_aal_check check (aal in ('aal1', 'aal2')) not valid`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('aal').dropColumn('amr').execute();
}
