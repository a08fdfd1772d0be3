import { UserRepository } from '../../../src/users/users.repository.ts';
import { describe, expect, isolatedDatabase, leftovers, test } from '../../helpers/database.ts';

// The harness's own promises: what a test does in its transaction vanishes, and what escapes
// it (a commit outside the harness, a connection never released) is caught, not silently kept.
describe('the test harness', () => {
  test('hands each test a transaction that is rolled back afterwards (first of two)', async ({ db }) => {
    await new UserRepository(db).create({ email: 'twice@example.com', name: 'Twice', passwordHash: 'x' });
    expect(await new UserRepository(db).findByEmail('twice@example.com')).toBeDefined();
  });

  test('hands each test a transaction that is rolled back afterwards (second of two)', async ({ db }) => {
    // Had the first test's row survived, this insert would hit the unique email index.
    await new UserRepository(db).create({ email: 'twice@example.com', name: 'Twice', passwordHash: 'x' });
  });

  test('catches a row committed outside the harness, naming the table', async ({ onTestFinished }) => {
    const database = await isolatedDatabase(onTestFinished);
    expect(await leftovers(database)).toEqual([]);
    // A test that bypasses the `db` fixture and commits straight to the database.
    await new UserRepository(database.db).create({ email: 'leak@example.com', name: 'Leak', passwordHash: 'x' });
    expect(await leftovers(database)).toEqual(['1 committed row(s) in users']);
  });

  test('catches a connection that was never given back to the pool', async ({ onTestFinished }) => {
    const database = await isolatedDatabase(onTestFinished);
    const client = await database.pool.connect();
    try {
      expect(await leftovers(database)).toEqual(['1 database connection(s) still checked out']);
    } finally {
      client.release();
    }
    expect(await leftovers(database)).toEqual([]);
  });
});
