import { sql, type Kysely } from 'kysely';

// The keys that sign access tokens (JWT_ALGORITHM EdDSA or ES256). Every instance reads the same
// rows, so a rotation is decided here, not per process: a key is published from `created_at`,
// signs from `signs_from` (later than publication by the JWKS cache lifetime, so every verifier
// has fetched it first), and the newest key whose `signs_from` has passed is the one that signs.
// The private key is a JWE (dir, A256GCM) under ENCRYPTION_KEY; the public JWK is served as is.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('signing_keys')
    .addColumn('kid', 'text', (col) => col.primaryKey())
    .addColumn('algorithm', 'text', (col) => col.notNull())
    .addColumn('public_jwk', 'jsonb', (col) => col.notNull())
    .addColumn('private_jwe', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('signs_from', sql`timestamptz(3)`, (col) => col.notNull())
    .addCheckConstraint('signing_keys_algorithm_check', sql`algorithm in ('EdDSA', 'ES256')`)
    .addCheckConstraint('signing_keys_signs_after_publication', sql`signs_from >= created_at`)
    .execute();
  // The active key is the newest whose signs_from has passed; its successor is the next one.
  await db.schema.createIndex('signing_keys_signs_from_idx').on('signing_keys').column('signs_from').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('signing_keys').execute();
}
