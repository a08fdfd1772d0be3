import type { Kysely } from 'kysely';

// A link flow remembers the session that started it: the callback links the identity only while
// that session is live and, once the account has a second factor, verified with it (aal2).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('oauth_flows').addColumn('session_id', 'uuid').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('oauth_flows').dropColumn('session_id').execute();
}
