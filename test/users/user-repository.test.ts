import { UniqueConstraintError, NotFoundError } from '../../src/platform/errors/index.ts';
import { withTransaction } from '../../src/platform/db/transactions.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { describe, expect, test } from '../helpers/database.ts';

const user = (email: string, name = 'Ada Lovelace') => ({ email, name, passwordHash: 'hash' });

describe('UserRepository', () => {
  test('creates a user with defaults filled by the database', async ({ db }) => {
    const created = await new UserRepository(db).create(user('ada@example.com'));
    expect(created).toMatchObject({
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      role: 'user',
      last_login_at: null,
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.created_at).toBeInstanceOf(Date);
  });

  test('rejects a second user with the same email, whatever its case, as a UniqueConstraintError on email', async ({
    db,
  }) => {
    const users = new UserRepository(db);
    await users.create(user('ada@example.com'));
    const error = await withTransaction(db, (trx) => new UserRepository(trx).create(user('ADA@example.com'))).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UniqueConstraintError);
    expect(error).toMatchObject({ field: 'email', statusCode: 409, code: 'UNIQUE_VIOLATION' });
    expect((error as Error).cause).toMatchObject({ code: '23505', constraint: 'users_email_unique' });
  });

  test('finds users by id and by canonical email', async ({ db }) => {
    const users = new UserRepository(db);
    const created = await users.create(user('grace@example.com'));
    expect((await users.findById(created.id))?.email).toBe('grace@example.com');
    expect((await users.findByEmail('grace@example.com'))?.id).toBe(created.id);
    expect(await users.findByEmail('nobody@example.com')).toBeUndefined();
  });

  test('updates last login, and reports a missing user as NotFoundError', async ({ db }) => {
    const users = new UserRepository(db);
    const created = await users.create(user('ada@example.com'));
    const at = new Date('2026-01-02T03:04:05.678Z');
    await users.updateLastLogin(created.id, at);
    expect((await users.findById(created.id))?.last_login_at).toEqual(at);
    await expect(users.updateLastLogin('00000000-0000-4000-8000-000000000000', at)).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  test('updates the password hash and the updated_at stamp', async ({ db }) => {
    const users = new UserRepository(db);
    const created = await users.create(user('ada@example.com'));
    const at = new Date('2030-01-01T00:00:00.000Z');
    await users.updatePasswordHash(created.id, 'new-hash', at);
    expect(await users.findById(created.id)).toMatchObject({ password_hash: 'new-hash', updated_at: at });
    await expect(users.updatePasswordHash('00000000-0000-4000-8000-000000000000', 'x', at)).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  test('pages newest first with a keyset cursor, without gaps or repeats', async ({ db }) => {
    const users = new UserRepository(db);
    for (let i = 0; i < 7; i++) await users.create(user(`user${i}@example.com`));
    const seen: string[] = [];
    let page = await users.list(3);
    while (page.length > 0) {
      seen.push(...page.map((row) => row.email));
      const last = page.at(-1);
      if (last === undefined) break;
      page = await users.list(3, { at: last.created_at, id: last.id });
    }
    expect(seen).toHaveLength(7);
    expect(new Set(seen).size).toBe(7);
    const all = await users.list(100);
    expect(all.map((row) => row.email)).toEqual(seen);
    const times = all.map((row) => row.created_at.getTime());
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });

  test('deletes a user and says whether it did', async ({ db }) => {
    const users = new UserRepository(db);
    const created = await users.create(user('ada@example.com'));
    expect(await users.delete(created.id)).toBe(true);
    expect(await users.delete(created.id)).toBe(false);
    expect(await users.findById(created.id)).toBeUndefined();
  });
});
