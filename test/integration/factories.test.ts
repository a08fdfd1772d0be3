import { describe, expect, test } from '../helpers/database.ts';
import {
  createAccountToken,
  createOutboxMessage,
  createRefreshToken,
  createUser,
  PASSWORD,
} from '../helpers/factories.ts';
import { hashAccountToken } from '../../src/services/account-tokens.ts';
import { hashRefreshToken } from '../../src/services/tokens.ts';
import { PasswordHasher } from '../../src/services/passwords.ts';
import { TEST_ARGON2 } from '../helpers/app.ts';

describe('test factories', () => {
  test('make valid, unique rows through the repositories, in the test transaction', async ({ db }) => {
    const [a, b] = [await createUser(db), await createUser(db, { role: 'admin', name: 'Ada' })];
    expect(a.email).not.toBe(b.email);
    expect(b).toMatchObject({ role: 'admin', name: 'Ada' });
    expect(
      await new PasswordHasher({ params: TEST_ARGON2, concurrency: 1, queueLimit: 1 }).verify(
        a.password_hash,
        PASSWORD,
      ),
    ).toBe(true);

    const refresh = await createRefreshToken(db, { userId: a.id });
    expect(refresh.row).toMatchObject({ user_id: a.id, token_hash: hashRefreshToken(refresh.token), revoked_at: null });
    expect(refresh.row.expires_at.getTime()).toBeGreaterThan(Date.now());

    const reset = await createAccountToken(db, { purpose: 'password_reset' });
    expect(reset.row).toMatchObject({ purpose: 'password_reset', token_hash: hashAccountToken(reset.token) });
    expect(reset.row.user_id).not.toBe(a.id); // a user of its own when none is given

    const message = await createOutboxMessage(db, { userId: null });
    expect(message).toMatchObject({ user_id: null, state: 'pending', template: 'email_verification', attempts: 0 });
  });

  // Tests in a file run in order: this one sees what the one above committed, if anything.
  test('the previous test left nothing behind: the factories wrote into its rolled-back transaction', async ({
    db,
  }) => {
    const counts = await Promise.all(
      (['users', 'refresh_tokens', 'account_tokens', 'email_outbox'] as const).map(async (table) =>
        Number((await db.selectFrom(table).select(db.fn.countAll().as('n')).executeTakeFirstOrThrow()).n),
      ),
    );
    expect(counts).toEqual([0, 0, 0, 0]);
  });
});
