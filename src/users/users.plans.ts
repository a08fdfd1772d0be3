import { sql, type Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { queryPlans } from '../platform/db/query-plans.ts';
import { UserRepository } from './users.repository.ts';

// Query-plan cases of the users table (test/platform/db/query-plans.test.ts runs them).

/** Users seeded for the plan check; every table owned by a user seeds rows for these. */
export const SEEDED_USERS = 10_000;
/** Every this many users is an admin. */
const ADMIN_EVERY = 1_000;

const NOW = new Date();

/** The user in the middle of the seeded ones, whose rows the cases of every owned table look up. */
export async function sampleUser(db: Kysely<DB>): Promise<{ userId: string; email: string }> {
  const user = await db
    .selectFrom('users')
    .select(['id', 'email'])
    .where('email', '=', `user${SEEDED_USERS / 2}@example.com`)
    .executeTakeFirstOrThrow();
  return { userId: user.id, email: user.email };
}

async function cursorAt(db: Kysely<DB>, offset: number): Promise<{ at: Date; id: string }> {
  const row = await db
    .selectFrom('users')
    .select(['created_at', 'id'])
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .offset(offset)
    .limit(1)
    .executeTakeFirstOrThrow();
  return { at: row.created_at, id: row.id };
}

export const userPlans = queryPlans({
  repository: UserRepository,
  seed: {
    table: 'users',
    fill: async (db) => {
      await sql`
        insert into users (email, password_hash, name, created_at)
        select 'user' || g || '@example.com', 'hash', 'User ' || g, now() - g * interval '1 second'
        from generate_series(1, ${SEEDED_USERS}) as g`.execute(db);
      // A few admins, each the kind the last-admin check locks (active) or passes over (disabled).
      await sql`
        update users set role = 'admin', status = case when created_at < now() - interval '5000 seconds' then 'disabled' else 'active' end
        where email like ${`%${ADMIN_EVERY}@example.com`} or email like ${`%${ADMIN_EVERY / 2}@example.com`}`.execute(
        db,
      );
    },
  },
  sample: async (db) => {
    const user = await sampleUser(db);
    const session = await db
      .selectFrom('sessions')
      .select('id')
      .where('user_id', '=', user.userId)
      .limit(1)
      .executeTakeFirstOrThrow();
    return {
      ...user,
      familyId: session.id,
      /** A keyset position in the middle of the users, newest first. */
      middle: await cursorAt(db, SEEDED_USERS / 2),
      /** A keyset position just before the oldest users: the last page. */
      end: await cursorAt(db, SEEDED_USERS - 30),
    };
  },
  cases: [
    { name: 'findById', call: (r, s) => r.findById(s.userId), index: 'users_pkey' },
    {
      name: 'findByEmail',
      call: (r, s) => r.findByEmail(s.email),
      index: 'users_email_unique',
    },
    // Authentication when the caches cannot answer: the user by id, the token's session by id.
    {
      name: 'findWithSession',
      call: (r, s) => r.findWithSession(s.userId, s.familyId),
      // PostgreSQL 18 finds the session by its key; 15 through the user's sessions (a handful per
      // user, after users_pkey found the one user). Either reads a few index entries.
      index: ['sessions_pkey', 'sessions_user_id_created_at_idx'],
    },
    {
      name: 'lockForUpdate',
      call: (r, s) => r.lockForUpdate(s.userId),
      index: 'users_pkey',
    },
    {
      name: 'updateLastLogin',
      call: (r, s) => r.updateLastLogin(s.userId, NOW),
      index: 'users_pkey',
    },
    {
      name: 'updatePasswordHash',
      call: (r, s) => r.updatePasswordHash(s.userId, 'new hash', NOW),
      index: 'users_pkey',
    },
    {
      name: 'changeEmail',
      call: (r, s) => r.changeEmail(s.userId, 'moved@example.com', NOW, NOW),
      index: 'users_pkey',
    },
    {
      name: 'markEmailVerified',
      call: (r, s) => r.markEmailVerified(s.userId, NOW),
      index: 'users_pkey',
    },
    { name: 'list (first page)', call: (r) => r.list(50), index: 'users_created_at_id_idx' },
    {
      name: 'list (middle page)',
      call: (r, s) => r.list(50, s.middle),
      index: 'users_created_at_id_idx',
    },
    {
      name: 'list (last page)',
      call: (r, s) => r.list(50, s.end),
      index: 'users_created_at_id_idx',
    },
    // Filtered listings: a prefix of the email or the name through the prefix indexes; role and
    // status filters keep the keyset order's index.
    {
      name: 'list (q)',
      call: (r) => r.list(50, undefined, { q: 'user4999' }),
      index: 'users_email_prefix_idx',
    },
    {
      name: 'list (role and status)',
      call: (r, s) => r.list(50, s.middle, { role: 'user', status: 'active' }),
      index: 'users_created_at_id_idx',
    },
    {
      name: 'update',
      call: (r, s) => r.update(s.userId, { name: 'Renamed', status: 'disabled' }, NOW),
      index: 'users_pkey',
    },
    {
      name: 'lockActiveAdmins',
      call: (r) => r.lockActiveAdmins(),
      index: 'users_active_admins_idx',
    },
    { name: 'delete', call: (r, s) => r.delete(s.userId), index: 'users_pkey' },
    {
      name: 'create',
      call: (r) => r.create({ email: 'new@example.com', name: 'New', passwordHash: 'hash' }),
      index: undefined,
    },
    {
      name: 'setMfaEnabled',
      call: (r, s) => r.setMfaEnabled(s.userId, true),
      index: 'users_pkey',
    },
  ],
});
