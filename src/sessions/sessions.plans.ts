import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { SessionRepository } from './sessions.repository.ts';

// Query-plan cases of the sessions table (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

export const sessionPlans = queryPlans({
  repository: SessionRepository,
  seed: {
    table: 'sessions',
    after: ['refresh_tokens'],
    // Every family is a session; those of revoked tokens ended, some long ago.
    fill: async (db) => {
      await sql`
        insert into sessions (id, user_id, created_at, last_used_at, expires_at, ended_at, end_reason)
        select family_id, min(user_id::text)::uuid, min(created_at), max(created_at), max(expires_at),
               max(revoked_at), case when max(revoked_at) is not null then 'revoked' end
        from refresh_tokens group by family_id`.execute(db);
    },
  },
  sample: async (db) => {
    const { userId } = await sampleUser(db);
    const session = await db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', userId)
      .limit(1)
      .executeTakeFirstOrThrow();
    return { userId, familyId: session.id };
  },
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-4000-8000-000000000001',
          userId: s.userId,
          createdAt: NOW,
          expiresAt: NOW,
          userAgent: 'curl/8',
          ipAddress: '127.0.0.1',
        }),
      index: undefined,
    },
    {
      name: 'listLive',
      call: (r, s) => r.listLive(s.userId, NOW),
      index: 'sessions_user_id_created_at_idx',
    },
    {
      name: 'userAgentOf',
      call: (r, s) => r.userAgentOf(s.familyId),
      index: 'sessions_pkey',
    },
    { name: 'touch', call: (r, s) => r.touch(s.familyId, NOW), index: 'sessions_pkey' },
    { name: 'liveAssurance', call: (r, s) => r.liveAssurance(s.familyId, s.userId, NOW), index: 'sessions_pkey' },
    {
      name: 'assurance',
      call: (r, s) => r.assurance(s.familyId),
      index: 'sessions_pkey',
    },
    {
      name: 'setAssurance',
      call: (r, s) => r.setAssurance(s.familyId, 'aal2', ['hwk']),
      index: 'sessions_pkey',
    },
    {
      name: 'raiseAssurance',
      call: (r, s) => r.raiseAssurance(s.familyId, s.userId, 'otp', NOW),
      index: 'sessions_pkey',
    },
    {
      name: 'end',
      call: (r, s) => r.end(s.familyId, s.userId, NOW, 'logout'),
      index: 'sessions_pkey',
    },
    {
      name: 'endAllOfUser',
      call: (r, s) => r.endAllOfUser(s.userId, NOW, 'user_disabled'),
      index: 'sessions_user_id_created_at_idx',
    },
    {
      name: 'endOthersOfUser',
      call: (r, s) => r.endOthersOfUser(s.userId, s.familyId, NOW, 'password_changed'),
      index: 'sessions_user_id_created_at_idx',
    },
  ],
});
