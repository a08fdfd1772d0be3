import { sql, type Kysely } from 'kysely';

// Second factors (TOTP), their recovery codes, and the sign-in challenges a first factor opens
// for an account that has one. `users.mfa_enabled` mirrors "has a verified factor" on the row the
// principal cache keeps (and its change notification), so deciding whether an action needs `aal2`
// costs no query. Constant default: a catalog-only change, no rewrite of users.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('mfa_enabled', 'boolean', (col) => col.notNull().defaultTo(false))
    .execute();

  await db.schema
    .createTable('mfa_factors')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('name', 'text', (col) => col.notNull())
    // The TOTP secret, sealed under ENCRYPTION_KEY (JWE, see SecretBox); never stored in the clear.
    .addColumn('secret_jwe', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('verified_at', sql`timestamptz(3)`)
    .addColumn('last_used_at', sql`timestamptz(3)`)
    // The TOTP time step last accepted: a code (and every earlier one) is accepted once per factor.
    .addColumn('last_used_step', 'bigint')
    .addCheckConstraint('mfa_factors_type_check', sql`type in ('totp')`)
    .addCheckConstraint('mfa_factors_name_length', sql`char_length(name) between 1 and 100`)
    .execute();
  await db.schema.createIndex('mfa_factors_user_id_idx').on('mfa_factors').columns(['user_id', 'created_at']).execute();

  await db.schema
    .createTable('mfa_recovery_codes')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // SHA-256 of the code: 50 random bits each, single use, shown once.
    .addColumn('code_hash', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .execute();
  await db.schema
    .createIndex('mfa_recovery_codes_user_id_code_hash_idx')
    .on('mfa_recovery_codes')
    .columns(['user_id', 'code_hash'])
    .unique()
    .execute();

  await db.schema
    .createTable('mfa_challenges')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // SHA-256 of the mfaToken handed to the client.
    .addColumn('token_hash', 'text', (col) => col.notNull().unique())
    // The first factor that opened it (`pwd`), and the password hash it was checked against: a
    // password changed meanwhile voids the challenge.
    .addColumn('first_factor', 'text', (col) => col.notNull())
    .addColumn('credential_stamp', 'text', (col) => col.notNull())
    .addColumn('user_agent', 'text')
    .addColumn('ip_address', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('expires_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .execute();
  await db.schema.createIndex('mfa_challenges_user_id_idx').on('mfa_challenges').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('mfa_challenges').execute();
  await db.schema.dropTable('mfa_recovery_codes').execute();
  await db.schema.dropTable('mfa_factors').execute();
  await db.schema.alterTable('users').dropColumn('mfa_enabled').execute();
}
