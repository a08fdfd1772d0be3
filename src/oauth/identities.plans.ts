import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { IdentityRepository } from './identities.repository.ts';

// Query-plan cases of the identities table (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

export const identityPlans = queryPlans({
  repository: IdentityRepository,
  seed: {
    table: 'identities',
    after: ['users'],
    // Every fifth user signs in through a provider; a few through two.
    fill: async (db) => {
      await sql`
        insert into identities (id, user_id, provider, subject, email, email_verified, created_at)
        select gen_random_uuid(), u.id, p.provider, md5(p.provider || u.id::text), u.email, true, now()
        from users as u cross join (values ('google'), ('gitlab')) as p(provider)
        where u.email like '%5@example.com' or (p.provider = 'google' and u.email like '%0@example.com')`.execute(db);
    },
  },
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000011',
          user_id: s.userId,
          provider: 'google',
          subject: 'a-subject',
          email: s.email,
          email_verified: true,
          created_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'findBySubject',
      call: (r) => r.findBySubject('google', 'a-subject'),
      index: 'identities_provider_subject_unique',
    },
    { name: 'listOfUser', call: (r, s) => r.listOfUser(s.userId), index: 'identities_user_id_idx' },
    { name: 'countOfUser', call: (r, s) => r.countOfUser(s.userId), index: 'identities_user_id_idx' },
    {
      name: 'recordUse',
      call: (r, s) => r.recordUse(s.userId, s.email, true, NOW),
      index: 'identities_pkey',
    },
    // `id = $1 and user_id = $2`: one row either way, so the planner may take either index.
    {
      name: 'delete',
      call: (r, s) => r.delete(s.userId, s.userId),
      index: ['identities_pkey', 'identities_user_id_idx'],
    },
  ],
});
