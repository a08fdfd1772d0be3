import { sql } from 'kysely';
import { createDatabase, createPool } from '../../../src/platform/db/database.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../../helpers/database.ts';

/** The statements this session has prepared, as PostgreSQL lists them. */
const preparedCount = sql<{ count: number }>`select count(*)::int as count from pg_prepared_statements`;

describe('named prepared statements', () => {
  test('prepares each parameterised query once per connection and reuses it', async ({ onTestFinished }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const pool = createPool({ ...TEST_POOL, url, poolMax: 1 });
    const db = createDatabase({ ...TEST_POOL, url, poolMax: 1 }, { pool });
    onTestFinished(async () => {
      await db.destroy();
    });
    for (let i = 0; i < 5; i++)
      await db.selectFrom('users').select('id').where('email', '=', `u${i}@example.com`).execute();
    // One connection, one statement text: prepared once. The count query itself has no parameters.
    expect((await preparedCount.execute(db)).rows[0]?.count).toBe(1);
  });

  test('stops preparing new statements on a connection after 256, so ad-hoc SQL cannot grow it without bound', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const pool = createPool({ ...TEST_POOL, url, poolMax: 1 });
    const db = createDatabase({ ...TEST_POOL, url, poolMax: 1 }, { pool });
    onTestFinished(async () => {
      await db.destroy();
    });
    for (let i = 0; i < 300; i++) {
      // 300 different statement texts (the alias differs), each with a parameter.
      const rows = await db.selectNoFrom((eb) => eb.val(i).as(`v${i}`)).execute();
      expect(rows).toEqual([{ [`v${i}`]: String(i) }]); // an untyped parameter comes back as text
    }
    expect((await preparedCount.execute(db)).rows[0]?.count).toBe(256);
  });

  test('sends unnamed statements when switched off (PgBouncer before 1.21 in transaction mode)', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const pool = createPool({ ...TEST_POOL, url, poolMax: 1 });
    const db = createDatabase({ ...TEST_POOL, url, poolMax: 1, preparedStatements: false }, { pool });
    onTestFinished(async () => {
      await db.destroy();
    });
    await db.selectFrom('users').select('id').where('email', '=', 'a@example.com').execute();
    expect((await preparedCount.execute(db)).rows[0]?.count).toBe(0);
  });
});
