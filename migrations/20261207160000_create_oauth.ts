import { sql, type Kysely } from 'kysely';

// Sign-in through other identity providers (OpenID Connect): the identities linked to accounts,
// the flows under way (state, nonce and PKCE verifier kept server-side, single use, 10 minutes),
// and the one-time codes a callback hands the client to exchange for a session (60 seconds).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('identities')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    // The provider id of the configuration (OIDC_PROVIDERS) and the provider's `sub` for the user:
    // together they name the identity, whatever the email says.
    .addColumn('provider', 'text', (col) => col.notNull())
    .addColumn('subject', 'text', (col) => col.notNull())
    // The email as the provider asserted it when the identity was linked or last used.
    .addColumn('email', 'text')
    .addColumn('email_verified', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('last_used_at', sql`timestamptz(3)`)
    .addUniqueConstraint('identities_provider_subject_unique', ['provider', 'subject'])
    .addCheckConstraint('identities_provider_length', sql`char_length(provider) between 1 and 32`)
    .addCheckConstraint('identities_subject_length', sql`char_length(subject) between 1 and 255`)
    .execute();
  await db.schema.createIndex('identities_user_id_idx').on('identities').columns(['user_id', 'created_at']).execute();

  await db.schema
    .createTable('oauth_flows')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    // sha256 of the `state` sent to the provider: what the callback names the flow by.
    .addColumn('state_hash', 'text', (col) => col.notNull().unique())
    // sha256 of the browser-binding cookie's value; null for a link flow not yet opened in a browser.
    .addColumn('browser_hash', 'text')
    .addColumn('provider', 'text', (col) => col.notNull())
    // `sign_in`, or `link` (an identity for the signed-in `user_id`).
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('user_id', 'uuid', (col) => col.references('users.id').onDelete('cascade'))
    .addColumn('nonce', 'text', (col) => col.notNull())
    .addColumn('code_verifier', 'text', (col) => col.notNull())
    .addColumn('redirect_to', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('expires_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .addCheckConstraint('oauth_flows_purpose_check', sql`purpose in ('sign_in', 'link')`)
    .addCheckConstraint('oauth_flows_link_user_check', sql`(purpose = 'link') = (user_id is not null)`)
    .execute();
  await db.schema.createIndex('oauth_flows_expires_at_idx').on('oauth_flows').column('expires_at').execute();
  await db.schema.createIndex('oauth_flows_user_id_idx').on('oauth_flows').column('user_id').execute();

  await db.schema
    .createTable('oauth_exchange_codes')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    // sha256 of the code in the redirect's fragment.
    .addColumn('code_hash', 'text', (col) => col.notNull().unique())
    .addColumn('user_id', 'uuid', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('provider', 'text', (col) => col.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('expires_at', sql`timestamptz(3)`, (col) => col.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .execute();
  await db.schema
    .createIndex('oauth_exchange_codes_expires_at_idx')
    .on('oauth_exchange_codes')
    .column('expires_at')
    .execute();
  await db.schema
    .createIndex('oauth_exchange_codes_user_id_idx')
    .on('oauth_exchange_codes')
    .column('user_id')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('oauth_exchange_codes').execute();
  await db.schema.dropTable('oauth_flows').execute();
  await db.schema.dropTable('identities').execute();
}
