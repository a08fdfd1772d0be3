import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { RefreshTokenRepository } from './refresh-tokens.repository.ts';

// Query-plan cases of the refresh_tokens table (test/platform/db/query-plans.test.ts runs them).

const TOKENS_PER_USER = 4;
const NOW = new Date();

export const refreshTokenPlans = queryPlans({
  repository: RefreshTokenRepository,
  seed: {
    table: 'refresh_tokens',
    after: ['users'],
    // Families of two tokens each; half the tokens rotated, some expired and some revoked long ago,
    // as a live deployment's would be between two maintenance runs.
    fill: async (db) => {
      await sql`
        insert into refresh_tokens (user_id, family_id, token_hash, expires_at, rotated_at, revoked_at)
        select u.id, md5(u.id::text || (g / 2))::uuid, md5(u.id::text || g),
               now() + (g * 10 - 15) * interval '1 day',
               case when g % 2 = 0 then now() end,
               case when g = 3 and u.email like '%7@example.com' then now() - interval '9 days' end
        from users as u cross join generate_series(0, ${TOKENS_PER_USER - 1}) as g`.execute(db);
    },
  },
  sample: async (db) => {
    const { userId } = await sampleUser(db);
    const token = await db
      .selectFrom('refresh_tokens')
      .select(['id', 'token_hash', 'family_id'])
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow();
    return { userId, tokenId: token.id, tokenHash: token.token_hash, familyId: token.family_id };
  },
  cases: [
    {
      name: 'findByHash',
      call: (r, s) => r.findByHash(s.tokenHash),
      index: 'refresh_tokens_token_hash_unique',
    },
    {
      name: 'markRotated',
      call: (r, s) => r.markRotated(s.tokenId, NOW),
      index: 'refresh_tokens_pkey',
    },
    {
      name: 'revokeFamily',
      call: (r, s) => r.revokeFamily(s.familyId, NOW),
      index: 'refresh_tokens_family_id_idx',
    },
    {
      name: 'revokeAllForUser',
      call: (r, s) => r.revokeAllForUser(s.userId, NOW),
      index: 'refresh_tokens_user_id_idx',
    },
    {
      name: 'revokeAllForUserExcept',
      call: (r, s) => r.revokeAllForUserExcept(s.userId, s.familyId, NOW),
      index: 'refresh_tokens_user_id_idx',
    },
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          userId: s.userId,
          familyId: s.familyId,
          tokenHash: 'fresh-token-hash',
          expiresAt: NOW,
        }),
      index: undefined,
    },
  ],
});
