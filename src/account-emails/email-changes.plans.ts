import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { EmailChangeRepository } from './email-changes.repository.ts';

// Query-plan cases of the email_changes table (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

export const emailChangePlans = queryPlans({
  repository: EmailChangeRepository,
  seed: {
    table: 'email_changes',
    after: ['users'],
    // Every tenth user asked to change their address a few times: all but the last superseded.
    fill: async (db) => {
      await sql`
        insert into email_changes (user_id, new_email, current_required, created_at, expires_at, superseded_at)
        select u.id, 'moved' || g || '.' || u.email, true, now() - (3 - g) * interval '1 hour',
               now() + (21 + g) * interval '1 hour', case when g < 2 then now() end
        from users as u cross join generate_series(0, 2) as g
        where u.email like '%0@example.com'`.execute(db);
    },
  },
  sample: async (db) => {
    const { userId } = await sampleUser(db);
    const change = await db
      .selectFrom('email_changes')
      .select('id')
      .where('user_id', '=', userId)
      .limit(1)
      .executeTakeFirstOrThrow();
    return { userId, emailChangeId: change.id };
  },
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          userId: s.userId,
          newEmail: 'moved@example.com',
          sessionId: null,
          currentRequired: true,
          expiresAt: NOW,
        }),
      index: undefined,
    },
    {
      name: 'supersedePending',
      call: (r, s) => r.supersedePending(s.userId, NOW),
      index: 'email_changes_user_id_idx',
    },
    {
      name: 'lockById',
      call: (r, s) => r.lockById(s.emailChangeId),
      index: 'email_changes_pkey',
    },
    {
      name: 'markConfirmed',
      call: (r, s) => r.markConfirmed(s.emailChangeId, 'new', NOW),
      index: 'email_changes_pkey',
    },
    {
      name: 'markCompleted',
      call: (r, s) => r.markCompleted(s.emailChangeId, NOW),
      index: 'email_changes_pkey',
    },
  ],
});
