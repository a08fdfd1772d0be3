import { sql, type Kysely } from 'kysely';

// The transactional outbox: an email is a row written in the same transaction as the change that
// needs it, and sent later by the dispatcher of any instance (claimed with FOR UPDATE SKIP LOCKED).
// `data` may hold a token; it is cleared once the message is sent or given up.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('email_outbox')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    // A deleted account's unsent emails go with it; null for messages not tied to a known account.
    .addColumn('user_id', 'uuid')
    .addColumn('recipient', 'text', (col) => col.notNull())
    .addColumn('template', 'text', (col) => col.notNull())
    .addColumn('data', 'jsonb')
    .addColumn('state', 'text', (col) => col.notNull().defaultTo('pending'))
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('claimed_at', 'timestamptz')
    .addColumn('claimed_by', 'text')
    .addColumn('sent_at', 'timestamptz')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('email_outbox_state_check', sql`state in ('pending', 'sending', 'sent', 'skipped', 'failed')`)
    .addCheckConstraint('email_outbox_attempts_check', sql`attempts >= 0`)
    .addForeignKeyConstraint('email_outbox_user_id_fkey', ['user_id'], 'users', ['id'], (fk) => fk.onDelete('cascade'))
    .execute();

  // The dispatcher's claim: due pending rows, oldest due first. Small, since sent rows leave it.
  await db.schema
    .createIndex('email_outbox_due_idx')
    .on('email_outbox')
    .column('next_attempt_at')
    .where(sql.ref('state'), '=', 'pending')
    .execute();
  // Claims whose lease ran out (a crashed instance's) are taken back from here.
  await db.schema
    .createIndex('email_outbox_sending_idx')
    .on('email_outbox')
    .column('claimed_at')
    .where(sql.ref('state'), '=', 'sending')
    .execute();
  await db.schema.createIndex('email_outbox_user_id_idx').on('email_outbox').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('email_outbox').execute();
}
