import { describe, expect, test } from '../../helpers/database.ts';
import {
  createAccountToken,
  createAuditEvent,
  createOutboxMessage,
  createRefreshToken,
  createSession,
  createUser,
  PASSWORD,
} from '../../helpers/factories.ts';
import { hashAccountToken } from '../../../src/account-emails/account-tokens.ts';
import { hashRefreshToken } from '../../../src/keys/tokens.ts';
import { PasswordHasher } from '../../../src/auth/passwords.ts';
import { TEST_ARGON2 } from '../../helpers/app.ts';

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

    // Every user has the session an access token for them names (its id is theirs).
    expect(await db.selectFrom('sessions').select(['id', 'user_id']).where('user_id', '=', a.id).execute()).toEqual([
      { id: a.id, user_id: a.id },
    ]);
    const refresh = await createRefreshToken(db, { userId: a.id });
    expect(refresh.row).toMatchObject({ user_id: a.id, token_hash: hashRefreshToken(refresh.token), revoked_at: null });
    // A family of its own, which is a session of its own.
    const family = await db.selectFrom('sessions').selectAll().where('id', '=', refresh.row.family_id).execute();
    expect(family).toEqual([expect.objectContaining({ user_id: a.id, ended_at: null })]);

    const session = await createSession(db, { userId: b.id, userAgent: 'curl/8' });
    expect(session).toMatchObject({ user_id: b.id, user_agent: 'curl/8', ended_at: null });
    expect(session.expires_at.getTime()).toBeGreaterThan(Date.now());

    const event = await createAuditEvent(db, { type: 'session.ended', userId: b.id, details: { reason: 'logout' } });
    expect(event).toMatchObject({
      type: 'session.ended',
      user_id: b.id,
      actor_id: b.id,
      details: { reason: 'logout' },
    });
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
      (['users', 'sessions', 'refresh_tokens', 'account_tokens', 'email_outbox', 'audit_events'] as const).map(
        async (table) =>
          Number((await db.selectFrom(table).select(db.fn.countAll().as('n')).executeTakeFirstOrThrow()).n),
      ),
    );
    expect(counts).toEqual([0, 0, 0, 0, 0, 0]);
  });
});
