import type { Kysely } from 'kysely';

// The maintenance job (src/workers/maintenance.ts) deletes refresh tokens some time after they
// expired or were revoked, in small batches. Without these indexes every batch would read the
// table from the start until it found its rows: at ten million tokens, seconds per batch. The
// revocation index is partial: most tokens are never revoked, and those need no entry.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('refresh_tokens_expires_at_idx').on('refresh_tokens').column('expires_at').execute();
  await db.schema
    .createIndex('refresh_tokens_revoked_at_idx')
    .on('refresh_tokens')
    .column('revoked_at')
    .where('revoked_at', 'is not', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('refresh_tokens_revoked_at_idx').execute();
  await db.schema.dropIndex('refresh_tokens_expires_at_idx').execute();
}
