import { sql } from 'kysely';
import { queryPlans } from '../db/query-plans.ts';
import { sampleUser, SEEDED_USERS } from '../../users/users.plans.ts';
import { EmailOutboxRepository } from './email-outbox.repository.ts';

// Query-plan cases of the email_outbox table (test/platform/db/query-plans.test.ts runs them).

const OUTBOX_MESSAGES = 5_000;
const NOW = new Date();

export const emailOutboxPlans = queryPlans({
  repository: EmailOutboxRepository,
  seed: {
    table: 'email_outbox',
    after: ['users'],
    // Mostly sent messages (their data dropped), a few pending (due or backing off), a few being
    // sent (one lease long expired) and a few given up, as between two dispatcher runs.
    fill: async (db) => {
      await sql`
        insert into email_outbox (user_id, recipient, template, data, state, attempts, next_attempt_at,
                                  claimed_at, claimed_by, sent_at, created_at)
        select u.id, u.email, 'email_verification',
               case when s.state in ('pending', 'sending') then '{"token":"t"}'::jsonb end,
               s.state, case when s.state = 'pending' then g % 3 else 1 end,
               now() + (g % 7 - 3) * interval '1 minute',
               case when s.state = 'sending' then now() - (g % 3) * interval '1 hour' end,
               case when s.state = 'sending' then 'host:' || g % 4 end,
               case when s.state in ('sent', 'skipped') then now() - g * interval '1 second' end,
               now() - g * interval '1 second'
        from generate_series(1, ${OUTBOX_MESSAGES}) as g
        join users as u on u.email = 'user' || (g * 7 % ${SEEDED_USERS} + 1) || '@example.com'
        cross join lateral (select case
          when g % 100 < 3 then 'pending'
          when g % 100 < 5 then 'sending'
          when g % 100 = 5 then 'failed'
          when g % 100 = 6 then 'skipped'
          else 'sent' end as state) as s`.execute(db);
    },
  },
  sample: async (db) => {
    const user = await sampleUser(db);
    // A message being sent, and the dispatcher holding its claim.
    const message = await db
      .selectFrom('email_outbox')
      .select(['id', 'claimed_by'])
      .where('state', '=', 'sending')
      .executeTakeFirstOrThrow();
    return { ...user, outboxId: message.id, claimedBy: message.claimed_by ?? 'unclaimed' };
  },
  cases: [
    {
      name: 'enqueue',
      call: (r, s) => r.enqueue({ userId: s.userId, recipient: s.email, template: 'welcome', data: {} }),
      index: undefined,
    },
    // A reset request's message: its owner is the active user the email names, found by the email index.
    {
      name: 'enqueueForAddress',
      call: (r, s) => r.enqueueForAddress(s.email, 'password_reset'),
      index: 'users_email_unique',
    },
    {
      name: 'discardUnowned',
      call: (r) => r.discardUnowned('00000000-0000-7000-8000-000000000009'),
      // `id = $1 and user_id is null`: one row by its key either way, so the planner may take either.
      index: ['email_outbox_pkey', 'email_outbox_user_id_idx'],
    },
    {
      name: 'queuedSince',
      call: (r, s) => r.queuedSince(s.userId, 'notice_account_exists', NOW),
      index: 'email_outbox_user_id_idx',
    },
    // The dispatcher's claim: due pending messages and expired leases, each from its partial index.
    {
      name: 'claimDue',
      call: (r) => r.claimDue({ limit: 5, now: NOW, leaseMs: 60_000, claimedBy: 'query-plans:1' }),
      index: 'email_outbox_due_idx',
    },
    {
      name: 'markSent',
      call: (r, s) => r.markSent(s.outboxId, s.claimedBy, NOW),
      index: 'email_outbox_pkey',
    },
    {
      name: 'markSkipped',
      call: (r, s) => r.markSkipped(s.outboxId, s.claimedBy, NOW, 'no longer applies'),
      index: 'email_outbox_pkey',
    },
    {
      name: 'scheduleRetry',
      call: (r, s) => r.scheduleRetry(s.outboxId, s.claimedBy, NOW, 'smtp 451'),
      index: 'email_outbox_pkey',
    },
    {
      name: 'markFailed',
      call: (r, s) => r.markFailed(s.outboxId, s.claimedBy, 'smtp 550'),
      index: 'email_outbox_pkey',
    },
    {
      name: 'release',
      call: (r, s) => r.release(s.outboxId, s.claimedBy, NOW),
      index: 'email_outbox_pkey',
    },
    {
      name: 'stats',
      call: (r) => r.stats(),
      index: 'email_outbox_due_idx',
    },
  ],
});
