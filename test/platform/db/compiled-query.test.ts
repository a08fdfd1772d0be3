import { sql } from 'kysely';
import { fixedQuery } from '../../../src/platform/db/compiled-query.ts';
import { createDatabase, createPool } from '../../../src/platform/db/database.ts';
import type { QueryEvent } from '../../../src/platform/db/instrumentation.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import { UniqueConstraintError } from '../../../src/platform/errors/index.ts';
import { UserRepository } from '../../../src/users/users.repository.ts';
import { describe, expect, isolatedDatabase, TEST_POOL, test } from '../../helpers/database.ts';

const newUser = (email: string) => ({ email, name: 'Fixed', passwordHash: 'hash' });

describe('fixedQuery', () => {
  test("compiles once and runs with each call's values, constants of the query kept", async ({ db }) => {
    const users = new UserRepository(db);
    const ada = await users.create(newUser('ada@example.com'));
    const bob = await users.create({ ...newUser('bob@example.com'), role: 'admin' });
    let builds = 0;
    const byIdAndRole = fixedQuery((kdb, id: string) => {
      builds++;
      return kdb.selectFrom('users').select(['email', 'role']).where('id', '=', id).where('role', '=', 'admin');
    });

    expect(await byIdAndRole.takeFirst(db, bob.id)).toEqual({ email: 'bob@example.com', role: 'admin' });
    // The constant 'admin' stays a parameter of its own: Ada is not an admin.
    expect(await byIdAndRole.takeFirst(db, ada.id)).toBeUndefined();
    expect((await byIdAndRole.execute(db, bob.id)).rows).toHaveLength(1);
    expect(builds).toBe(1);
  });

  test("runs SQL compiled for the instance it is given: a withSchema copy never gets the root's SQL", async ({
    db,
  }) => {
    await sql`create schema fixed_elsewhere`.execute(db);
    await sql`create table fixed_elsewhere.users (like public.users including all)`.execute(db);
    await new UserRepository(db).create(newUser('public@example.com'));
    let builds = 0;
    const emails = fixedQuery((kdb, domain: string) => {
      builds++;
      return kdb.selectFrom('users').select('email').where('email', 'like', domain);
    });

    expect((await emails.execute(db, '%@example.com')).rows).toEqual([{ email: 'public@example.com' }]);
    const elsewhere = db.withSchema('fixed_elsewhere');
    // The table of the other schema is empty: the root's compiled SQL would have found the public row.
    expect((await emails.execute(elsewhere, '%@example.com')).rows).toEqual([]);
    await elsewhere
      .insertInto('users')
      .values({ email: 'other@example.com', name: 'Other', password_hash: 'h' })
      .execute();
    expect((await emails.execute(elsewhere, '%@example.com')).rows).toEqual([{ email: 'other@example.com' }]);
    // Each context is compiled once, and going back to the root still finds the public row.
    expect((await emails.execute(db, '%@example.com')).rows).toEqual([{ email: 'public@example.com' }]);
    expect(builds).toBe(2);
  });

  test('reports rows affected, and runs inside a transaction on its connection', async ({ db }) => {
    const ada = await new UserRepository(db).create(newUser('ada@example.com'));
    const rename = fixedQuery((kdb, id: string, name: string) =>
      kdb.updateTable('users').set({ name }).where('id', '=', id),
    );
    await withTransaction(db, async (trx) => {
      expect(await rename.affectedRows(trx, ada.id, 'Inside')).toBe(1n);
      // Seen by the transaction that made it.
      expect((await trx.selectFrom('users').select('name').where('id', '=', ada.id).executeTakeFirst())?.name).toBe(
        'Inside',
      );
    });
    expect(await rename.affectedRows(db, '00000000-0000-4000-8000-000000000000', 'Nobody')).toBe(0n);
  });

  test('sends the same SQL text every time, whatever the values', async ({ db }) => {
    const texts: string[] = [];
    const byEmail = fixedQuery((kdb, email: string) => {
      const query = kdb.selectFrom('users').select('id').where('email', '=', email);
      texts.push(query.compile().sql);
      return query;
    });
    await byEmail.takeFirst(db, 'a@example.com');
    await byEmail.takeFirst(db, 'b@example.com');
    expect(texts).toEqual(['select "id" from "users" where "email" = $1']);
  });

  test('takeOne returns the one row, and fails loudly when there is none', async ({ db }) => {
    const ada = await new UserRepository(db).create(newUser('ada@example.com'));
    const emailOf = fixedQuery((kdb, id: string) => kdb.selectFrom('users').select('email').where('id', '=', id));
    expect(await emailOf.takeOne(db, ada.id)).toEqual({ email: 'ada@example.com' });
    await expect(emailOf.takeOne(db, '00000000-0000-4000-8000-000000000000')).rejects.toThrow(
      'fixedQuery: "select "email" from "users" where "id" = $1" returned no row',
    );
  });

  test('refuses, at its first run, a build that does not use an argument as a value', async ({ db }) => {
    const ignoresItsArgument = fixedQuery((kdb, _id: string) =>
      kdb
        .selectFrom('users')
        .select('id')
        .where(sql<boolean>`true`),
    );
    await expect(ignoresItsArgument.takeFirst(db, 'x')).rejects.toThrow(
      /argument 1 of "select "id" from "users" where true" is not a parameter/,
    );
    // Computing with an argument fails too: the placeholder is not the value.
    const computes = fixedQuery((kdb, email: string) =>
      kdb.selectFrom('users').select('id').where('email', '=', email.toLowerCase()),
    );
    await expect(computes.takeFirst(db, 'A@example.com')).rejects.toThrow(TypeError);
  });
});

describe('fixedQuery on a root database', () => {
  const NOBODY = '00000000-0000-4000-8000-000000000000';

  test('runs through Kysely on the pool: same rows and counts, errors translated, every query reported', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const events: QueryEvent[] = [];
    const db = createDatabase({ ...TEST_POOL, url }, { onQuery: (event) => events.push(event) });
    onTestFinished(async () => {
      await db.destroy();
    });
    const users = new UserRepository(db);
    const ada = await users.create(newUser('ada@example.com'));

    expect(await users.findById(ada.id)).toMatchObject({ id: ada.id, email: 'ada@example.com' });
    expect(events.at(-1)).toMatchObject({
      operation: 'users.select',
      outcome: 'ok',
      sql: 'select * from "users" where "id" = $1',
      parameterCount: 1,
    });
    const rename = fixedQuery((kdb, id: string, name: string) =>
      kdb.updateTable('users').set({ name }).where('id', '=', id),
    );
    expect(await rename.affectedRows(db, ada.id, 'Renamed')).toBe(1n);
    expect(await rename.affectedRows(db, NOBODY, 'Nobody')).toBe(0n);
    expect((await users.findById(ada.id))?.name).toBe('Renamed');

    const insert = fixedQuery((kdb, email: string) =>
      kdb.insertInto('users').values({ email, name: 'Twin', password_hash: 'hash' }).returning('id'),
    );
    const failure = await insert.takeOne(db, 'ada@example.com').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UniqueConstraintError);
    expect(events.at(-1)).toMatchObject({ operation: 'users.insert', outcome: 'UNIQUE_VIOLATION' });

    // In a transaction the same query runs through Kysely on the transaction's connection, and is reported alike.
    events.length = 0;
    await withTransaction(db, async (trx) => {
      expect(await rename.affectedRows(trx, ada.id, 'In a transaction')).toBe(1n);
      expect((await new UserRepository(trx).findById(ada.id))?.name).toBe('In a transaction');
    });
    expect(events.map((event) => `${event.operation} ${event.outcome}`)).toEqual([
      'transaction.begin ok',
      'users.update ok',
      'users.select ok',
      'transaction.commit ok',
    ]);
  });

  test('labels each query with its own operation when callers wait for the one connection', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const events: QueryEvent[] = [];
    const db = createDatabase({ ...TEST_POOL, url, poolMax: 1 }, { onQuery: (event) => events.push(event) });
    onTestFinished(async () => {
      await db.destroy();
    });
    const users = new UserRepository(db);
    const ada = await users.create(newUser('ada@example.com'));
    events.length = 0;

    // Each waiter gets the connection in a callback from the release of the one before it.
    await Promise.all([
      users.findById(ada.id),
      users.findByEmail('ada@example.com'),
      users.findById(NOBODY),
      users.findByEmail('x@example.com'),
    ]);
    const operationBySql = new Map(events.map((event) => [event.sql, new Set<string>()]));
    for (const event of events) operationBySql.get(event.sql)?.add(event.operation);
    expect(events).toHaveLength(4);
    expect([...operationBySql.values()].map((operations) => [...operations].sort())).toEqual([
      ['users.select'],
      ['users.select'],
    ]);
  });

  test('destroy() ends the pool also when only fixed queries ever ran, and may be called twice', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const pool = createPool({ ...TEST_POOL, url });
    const db = createDatabase({ ...TEST_POOL, url }, { pool });
    expect(await new UserRepository(db).findById(NOBODY)).toBeUndefined();
    expect(pool.totalCount).toBe(1);
    await db.destroy();
    expect(pool.ended).toBe(true);
    await db.destroy();
  });
});
