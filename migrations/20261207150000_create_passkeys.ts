import { sql, type Kysely } from 'kysely';

// Passkeys (WebAuthn credentials) and the server-side challenges of their ceremonies. Challenges
// live in the database, not in a process, so the options one instance hands out can be verified
// by another. A registered passkey is a verified factor: it sets `users.mfa_enabled`.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('passkey_credentials')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // The authenticator's credential id (base64url): what an assertion names, unique across users.
    .addColumn('credential_id', 'text', (col) => col.notNull().unique())
    // The COSE public key as the authenticator sent it (only @simplewebauthn/server reads it).
    .addColumn('public_key', 'bytea', (col) => col.notNull())
    // The signature counter last seen: one that goes backwards means a cloned authenticator.
    .addColumn('counter', 'bigint', (col) => col.notNull().defaultTo(0))
    .addColumn('transports', sql`text[]`, (col) => col.notNull().defaultTo(sql`'{}'`))
    .addColumn('backed_up', 'boolean', (col) => col.notNull())
    .addColumn('device_type', 'text', (col) => col.notNull())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('last_used_at', sql`timestamptz(3)`)
    .addCheckConstraint('passkey_credentials_name_length', sql`char_length(name) between 1 and 100`)
    .addCheckConstraint('passkey_credentials_device_type_check', sql`device_type in ('singleDevice', 'multiDevice')`)
    .execute();
  await db.schema
    .createIndex('passkey_credentials_user_id_idx')
    .on('passkey_credentials')
    .columns(['user_id', 'created_at'])
    .execute();

  await db.schema
    .createTable('webauthn_challenges')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    // The challenge sent to the browser (random, 32 bytes, base64url): single use, 5 minutes.
    .addColumn('challenge', 'text', (col) => col.notNull().unique())
    .addColumn('ceremony', 'text', (col) => col.notNull())
    // The account it is bound to, when known (registration, a second factor, step-up); null for a
    // sign-in without an email (discoverable credentials).
    .addColumn('user_id', 'uuid', (col) => col.references('users.id').onDelete('cascade'))
    // `login` (a complete sign-in), `mfa` (after a password: the mfaToken's hash), `step_up`,
    // `registration`: an assertion asked for one purpose cannot serve another.
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('mfa_token_hash', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('expires_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .addCheckConstraint('webauthn_challenges_ceremony_check', sql`ceremony in ('registration', 'authentication')`)
    .addCheckConstraint(
      'webauthn_challenges_purpose_check',
      sql`purpose in ('registration', 'login', 'mfa', 'step_up')`,
    )
    .execute();
  await db.schema.createIndex('webauthn_challenges_user_id_idx').on('webauthn_challenges').column('user_id').execute();
  await db.schema
    .createIndex('webauthn_challenges_expires_at_idx')
    .on('webauthn_challenges')
    .column('expires_at')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webauthn_challenges').execute();
  await db.schema.dropTable('passkey_credentials').execute();
}
