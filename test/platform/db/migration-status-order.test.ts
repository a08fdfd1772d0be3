import { sql } from 'kysely';
import { MigrationError, readMigrationStatus } from '../../../src/platform/db/migrator.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';

describe('migration status order', () => {
  test('lists migrations applied in the same instant by name, so the order never depends on the scan', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const instant = '2999-01-01T00:00:00.000Z';
    // Inserted out of order, with one timestamp: a batch applied by another tool in one transaction.
    await sql`insert into kysely_migration (name, timestamp) values
      ('29990101000003_c_elsewhere', ${instant}), ('29990101000001_a_elsewhere', ${instant}), ('29990101000002_b_elsewhere', ${instant})`.execute(
      db,
    );

    const { applied, pending } = await readMigrationStatus(url);

    expect(pending).toEqual([]);
    expect(applied.slice(-3)).toEqual([
      { name: '29990101000001_a_elsewhere', executedAt: new Date(instant), known: false },
      { name: '29990101000002_b_elsewhere', executedAt: new Date(instant), known: false },
      { name: '29990101000003_c_elsewhere', executedAt: new Date(instant), known: false },
    ]);
  });
});

describe('MigrationError', () => {
  test('says which migration failed, why, and the statement that failed', () => {
    const error = new MigrationError(
      '20250101000000_users',
      new Error('column "emial" does not exist'),
      'alter table users drop column emial',
    );
    expect(error.message).toBe(
      'Migration 20250101000000_users failed: column "emial" does not exist\n  failed statement: alter table users drop column emial',
    );
    expect(error).toMatchObject({
      name: 'MigrationError',
      migration: '20250101000000_users',
      statement: 'alter table users drop column emial',
    });
  });

  test('says migrating failed when no migration was running (e.g. the lock), and accepts a cause that is not an Error', () => {
    const error = new MigrationError(undefined, 'lock timeout');
    expect(error.message).toBe('Migrating failed: lock timeout');
    expect(error).toMatchObject({ migration: undefined, statement: undefined, cause: 'lock timeout' });
  });
});
