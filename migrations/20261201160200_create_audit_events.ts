import { sql, type Kysely } from 'kysely';

// The audit log: security events, each written in the transaction of the change it records.
// No foreign keys on purpose: an erased user's events keep their id (and nothing else about
// them), and an event about an unknown email has no user at all. Rows are never updated;
// retention (AUDIT_RETENTION_DAYS) deletes the oldest.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_events')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('type', 'text', (col) => col.notNull())
    // Millisecond precision, like a JavaScript Date, so a keyset cursor round-trips exactly.
    .addColumn('occurred_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`clock_timestamp()`))
    .addColumn('user_id', 'uuid')
    .addColumn('actor_id', 'uuid')
    .addColumn('session_id', 'uuid')
    .addColumn('ip_address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('details', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addCheckConstraint('audit_events_type_length', sql`char_length(type) between 1 and 64`)
    .addCheckConstraint('audit_events_user_agent_length', sql`char_length(user_agent) <= 256`)
    .addCheckConstraint('audit_events_ip_address_length', sql`char_length(ip_address) <= 64`)
    .execute();
  // A user's events, newest first, keyset-paginated: ORDER BY occurred_at DESC, id DESC.
  await db.schema
    .createIndex('audit_events_user_id_occurred_at_idx')
    .on('audit_events')
    .columns(['user_id', 'occurred_at desc', 'id desc'])
    .execute();
  // Retention deletes by age.
  await db.schema.createIndex('audit_events_occurred_at_idx').on('audit_events').column('occurred_at').execute();

  await sql`
    create function audit_events_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_events is append-only' using errcode = 'restrict_violation';
    end
    $$`.execute(db);
  await sql`
    create trigger audit_events_no_update before update on audit_events
    for each row execute function audit_events_append_only()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_events').execute();
  await sql`drop function audit_events_append_only()`.execute(db);
}
