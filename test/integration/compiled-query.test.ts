import { sql } from 'kysely';
import { fixedQuery } from '../../src/db/compiled-query.ts';
import { withTransaction } from '../../src/db/transactions.ts';
import { UserRepository } from '../../src/repositories/users.ts';
import { describe, expect, test } from '../helpers/database.ts';

const newUser = (email: string) => ({ email, name: 'Fixed', passwordHash: 'hash' });

describe('fixedQuery', () => {
  test('compiles once and runs with each call\'s values, constants of the query kept', async ({ db }) => {
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

  test('reports rows affected, and runs inside a transaction on its connection', async ({ db }) => {
    const ada = await new UserRepository(db).create(newUser('ada@example.com'));
    const rename = fixedQuery((kdb, id: string, name: string) => kdb.updateTable('users').set({ name }).where('id', '=', id));
    await withTransaction(db, async (trx) => {
      expect(await rename.affectedRows(trx, ada.id, 'Inside')).toBe(1n);
      // Seen by the transaction that made it.
      expect((await trx.selectFrom('users').select('name').where('id', '=', ada.id).executeTakeFirst())?.name).toBe('Inside');
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
    const ignoresItsArgument = fixedQuery((kdb, _id: string) => kdb.selectFrom('users').select('id').where(sql<boolean>`true`));
    await expect(ignoresItsArgument.takeFirst(db, 'x')).rejects.toThrow(/argument 1 of "select "id" from "users" where true" is not a parameter/);
    // Computing with an argument fails too: the placeholder is not the value.
    const computes = fixedQuery((kdb, email: string) => kdb.selectFrom('users').select('id').where('email', '=', email.toLowerCase()));
    await expect(computes.takeFirst(db, 'A@example.com')).rejects.toThrow(TypeError);
  });
});
