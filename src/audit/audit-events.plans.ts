import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { AuditEventRepository } from './audit-events.repository.ts';

// Query-plan cases of the audit_events table (test/platform/db/query-plans.test.ts runs them).

/** Audit events per user: a few logins, failures and session ends each. */
const AUDIT_EVENTS_PER_USER = 5;

export const auditEventPlans = queryPlans({
  repository: AuditEventRepository,
  seed: {
    table: 'audit_events',
    after: ['users'],
    // Each user's log: events a second apart, oldest a year and more ago for some.
    fill: async (db) => {
      await sql`
        insert into audit_events (type, occurred_at, user_id, actor_id, details)
        select case when g % 2 = 0 then 'login.succeeded' else 'login.failed' end,
               now() - (g * 100 + length(u.email)) * interval '1 day' / 10, u.id, u.id, '{}'::jsonb
        from users as u cross join generate_series(0, ${AUDIT_EVENTS_PER_USER - 1}) as g`.execute(db);
    },
  },
  sample: async (db) => {
    const user = await sampleUser(db);
    // One of the sample user's events, in the middle of their log.
    const event = await db
      .selectFrom('audit_events')
      .select(['occurred_at', 'id'])
      .where('user_id', '=', user.userId)
      .orderBy('occurred_at', 'desc')
      .offset(2)
      .limit(1)
      .executeTakeFirstOrThrow();
    return {
      ...user,
      familyId: '00000000-0000-7000-8000-00000000000a',
      auditCursor: { occurredAt: event.occurred_at, id: event.id },
    };
  },
  cases: [
    {
      name: 'append',
      call: (r, s) =>
        r.append({
          id: '00000000-0000-7000-8000-000000000001',
          type: 'login.succeeded',
          userId: s.userId,
          actorId: s.userId,
          sessionId: s.familyId,
          ipAddress: '127.0.0.1',
          userAgent: null,
          details: {},
        }),
      index: undefined,
    },
    // An insert whose row comes from the user the email names: the email index finds them.
    {
      name: 'appendForEmail',
      call: (r, s) =>
        r.appendForEmail(
          s.email,
          {
            id: '00000000-0000-7000-8000-000000000002',
            type: 'password.reset_requested',
            ipAddress: null,
            userAgent: null,
            details: {},
          },
          600,
        ),
      index: 'users_email_unique',
    },
    // The cap on a user's own profile changes: their events of the last day, from the user's index.
    {
      name: 'countRecent',
      call: (r, s) => r.countRecent(s.userId, s.userId, 'user.updated', 86_400),
      index: 'audit_events_user_id_occurred_at_idx',
    },
    {
      name: 'listForUser (first page)',
      call: (r, s) => r.listForUser(s.userId, 21),
      index: 'audit_events_user_id_occurred_at_idx',
    },
    {
      name: 'listForUser (next page)',
      call: (r, s) => r.listForUser(s.userId, 21, s.auditCursor),
      index: 'audit_events_user_id_occurred_at_idx',
    },
  ],
});
