import { sql, type Kysely } from 'kysely';

// Single-use tokens sent by email: an address verification (24 h) or a password reset (1 h).
// Only a SHA-256 of the token is kept. Issuing a new one supersedes the live ones of the same user
// and purpose, so only the latest link works.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('account_tokens')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('user_id', 'uuid', (col) => col.notNull())
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('token_hash', 'text', (col) => col.notNull())
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (col) => col.notNull())
    .addColumn('used_at', 'timestamptz')
    .addColumn('superseded_at', 'timestamptz')
    .addCheckConstraint('account_tokens_purpose_check', sql`purpose in ('email_verification', 'password_reset')`)
    .addUniqueConstraint('account_tokens_token_hash_unique', ['token_hash'])
    .addForeignKeyConstraint('account_tokens_user_id_fkey', ['user_id'], 'users', ['id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .execute();

  // Superseding looks up a user's live tokens of one purpose; the FK's cascade uses the same index.
  await db.schema
    .createIndex('account_tokens_live_idx')
    .on('account_tokens')
    .columns(['user_id', 'purpose'])
    .where(sql.ref('used_at'), 'is', null)
    .where(sql.ref('superseded_at'), 'is', null)
    .execute();
  await db.schema.createIndex('account_tokens_user_id_idx').on('account_tokens').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('account_tokens').execute();
}
