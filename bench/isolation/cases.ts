import { RefreshTokenRepository } from '../../src/sessions/refresh-tokens.repository.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { describe, expect, test } from '../../test/helpers/database.ts';

/**
 * `count` typical repository tests: a few writes and reads on a database each test must see
 * empty. Split over two spec files so both vitest workers get half.
 */
export function defineCases(label: string, count: number): void {
  describe(`typical database tests (${label})`, () => {
    for (let i = 0; i < count; i++) {
      test(`case ${i}: writes users and tokens and reads them back`, async ({ db }) => {
        const users = new UserRepository(db);
        expect(await users.list(10)).toEqual([]);
        const created = await Promise.all(
          [0, 1, 2].map((n) => users.create({ email: `u${i}-${n}@example.com`, name: `User ${n}`, passwordHash: 'x' })),
        );
        const first = created[0];
        if (first === undefined) throw new Error('no user');
        const tokens = new RefreshTokenRepository(db);
        await tokens.insert({
          userId: first.id,
          familyId: first.id,
          tokenHash: `hash-${i}`,
          expiresAt: new Date(Date.now() + 60_000),
        });
        expect(await users.findByEmail(`u${i}-1@example.com`)).toMatchObject({ name: 'User 1' });
        expect(await users.list(10)).toHaveLength(3);
        expect(await tokens.revokeAllForUser(first.id, new Date())).toBe(1);
      });
    }
  });
}
