import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { AccountTokenRepository } from './account-tokens.repository.ts';

// Query-plan cases of the account_tokens table (test/platform/db/query-plans.test.ts runs them).

/** Every tenth user has asked for this many verification and reset emails. */
const ACCOUNT_TOKENS_PER_USER = 6;
const NOW = new Date();

export const accountTokenPlans = queryPlans({
  repository: AccountTokenRepository,
  seed: {
    table: 'account_tokens',
    after: ['users'],
    // Every tenth user asked for links several times: each request superseded the one before, and
    // the last of each purpose was used, so a user's live tokens are few among many dead ones.
    fill: async (db) => {
      await sql`
        insert into account_tokens (user_id, purpose, token_hash, expires_at, used_at, superseded_at)
        select u.id, case when g % 2 = 0 then 'email_verification' else 'password_reset' end,
               md5('account' || u.id::text || g), now() + interval '1 hour',
               case when g >= ${ACCOUNT_TOKENS_PER_USER - 2} and u.email like '%70@example.com' then now() end,
               case when g < ${ACCOUNT_TOKENS_PER_USER - 2} then now() end
        from users as u cross join generate_series(0, ${ACCOUNT_TOKENS_PER_USER - 1}) as g
        where u.email like '%0@example.com'`.execute(db);
    },
  },
  sample: async (db) => {
    const { userId } = await sampleUser(db);
    const token = await db
      .selectFrom('account_tokens')
      .select(['id', 'token_hash'])
      .where('user_id', '=', userId)
      .where('used_at', 'is', null)
      .where('superseded_at', 'is', null)
      .executeTakeFirstOrThrow();
    return { userId, accountTokenId: token.id, accountTokenHash: token.token_hash };
  },
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          userId: s.userId,
          purpose: 'password_reset',
          tokenHash: 'fresh-account-token-hash',
          expiresAt: NOW,
        }),
      index: undefined,
    },
    {
      name: 'supersedeLive',
      call: (r, s) => r.supersedeLive(s.userId, 'password_reset', NOW),
      index: 'account_tokens_live_idx',
    },
    {
      name: 'countLive',
      call: (r, s) => r.countLive(s.userId, 'password_reset', NOW),
      index: 'account_tokens_live_idx',
    },
    {
      name: 'findByHash',
      call: (r, s) => r.findByHash(s.accountTokenHash),
      index: 'account_tokens_token_hash_unique',
    },
    {
      name: 'lockByHash',
      call: (r, s) => r.lockByHash(s.accountTokenHash),
      index: 'account_tokens_token_hash_unique',
    },
    {
      name: 'markUsed',
      call: (r, s) => r.markUsed(s.accountTokenId, NOW),
      index: 'account_tokens_pkey',
    },
  ],
});
