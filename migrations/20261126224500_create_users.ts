import { sql, type Kysely } from 'kysely';

// Migrations are frozen in time: they take an untyped Kysely, never the generated DB interface.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('email', 'text', (col) => col.notNull())
    .addColumn('password_hash', 'text', (col) => col.notNull())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('role', 'text', (col) => col.notNull().defaultTo('user'))
    // Millisecond precision, like a JavaScript Date, so a keyset cursor round-trips exactly.
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_login_at', 'timestamptz')
    .addCheckConstraint('users_role_check', sql`role in ('user', 'admin')`)
    .addCheckConstraint('users_email_length', sql`char_length(email) between 3 and 254`)
    .addCheckConstraint('users_name_length', sql`char_length(name) between 1 and 100`)
    .execute();

  // The application stores emails canonical (trimmed, NFKC, lower-case); the index on lower(email)
  // keeps two spellings of one address out even if a row arrives from elsewhere.
  await db.schema
    .createIndex('users_email_unique')
    .on('users')
    .unique()
    .columns([sql`lower(email)`])
    .execute();

  // Keyset pagination, newest first: ORDER BY created_at DESC, id DESC.
  await db.schema.createIndex('users_created_at_id_idx').on('users').columns(['created_at desc', 'id desc']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('users').execute();
}
