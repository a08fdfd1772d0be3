import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Kysely } from 'kysely';
import { describe, expect, test } from 'vitest';
import type { DB } from '../../db-types/index.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { SEED_ADMIN, seedDevelopmentData } from '../../tools/seed.ts';
import { testApp } from '../helpers/app.ts';
import { isolatedDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { bearer, postJson, UUID } from '../helpers/http.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function npmRunSeed(env: Record<string, string>): Promise<{ code: number; output: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', 'db:seed'],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
          output: stdout + stderr,
        });
      },
    );
  });
}

/** What the seed leaves in the database besides the accounts, and whether it hangs together. */
async function seedCounts(db: Kysely<DB>) {
  const now = new Date();
  const sessions = await db.selectFrom('sessions').select(['id', 'user_id', 'ended_at', 'expires_at']).execute();
  const tokens = await db.selectFrom('refresh_tokens').select(['family_id', 'revoked_at']).execute();
  const users = await db.selectFrom('users').select(['id', 'last_login_at']).execute();
  const events = await db.selectFrom('audit_events').select(['type', 'user_id', 'session_id']).execute();
  const live = new Set(tokens.filter((token) => token.revoked_at === null).map((token) => token.family_id));
  const sessionKeys = new Set(sessions.map((session) => `${session.user_id}/${session.id}`));
  const byType: Record<string, number> = {};
  for (const event of events) byType[event.type] = (byType[event.type] ?? 0) + 1;
  return {
    sessions: sessions.length,
    liveSessions: sessions.filter((session) => session.ended_at === null && session.expires_at > now).length,
    sessionsWithoutToken: sessions.filter((session) => !live.has(session.id)).length,
    usersWithoutLogin: users.filter((user) => user.last_login_at === null).length,
    events: byType,
    loginsNotMatchingASession: events.filter(
      (event) => event.type === 'login.succeeded' && !sessionKeys.has(`${event.user_id}/${event.session_id}`),
    ).length,
  };
}

describe('npm run db:seed', () => {
  test(
    'creates an admin and 36 users with their sessions and audit events, prints the admin’s credentials, and creates nothing the second time',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);

      const first = await npmRunSeed({ DATABASE_URL: url });

      expect(first.code, first.output).toBe(0);
      expect(first.output).toContain(`admin: ${SEED_ADMIN.email} / ${SEED_ADMIN.password}`);
      // The admin and 18 users have one session, the other 18 two: 55; one user.registered per account.
      expect(first.output).toContain(
        '37 of 37 accounts created (0 already there), with 55 sessions and 92 audit events',
      );
      const admin = await new UserRepository(db).findByEmail(SEED_ADMIN.email);
      expect(admin?.role).toBe('admin');
      expect(await new UserRepository(db).list(100)).toHaveLength(37);
      const seeded = await seedCounts(db);
      expect(seeded).toEqual({
        sessions: 55,
        liveSessions: 55,
        sessionsWithoutToken: 0,
        usersWithoutLogin: 0,
        events: { 'login.succeeded': 55, 'user.registered': 37 },
        loginsNotMatchingASession: 0,
      });

      const again = await seedDevelopmentData(
        { db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) },
        { users: 36 },
      );
      expect(again).toEqual({ created: 0, total: 37, sessions: 0, events: 0, adminCreated: false });
      expect(await new UserRepository(db).list(100)).toHaveLength(37);
      expect(await seedCounts(db)).toEqual(seeded);
    },
  );

  test(
    'gives the admin a login that works, and the API shows the seeded sessions and events',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { db } = await isolatedDatabase(onTestFinished);
      await seedDevelopmentData({ db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) }, { users: 2 });
      const app = await testApp(db, onTestFinished);

      const loggedIn = await postJson(app, '/auth/login', { email: SEED_ADMIN.email, password: SEED_ADMIN.password });
      expect(loggedIn.statusCode, loggedIn.body).toBe(200);
      const { accessToken } = loggedIn.json<{ accessToken: string }>();

      const sessions = await app.inject({ url: '/auth/sessions', headers: bearer(accessToken) });
      expect(sessions.statusCode, sessions.body).toBe(200);
      const items = sessions.json<{
        items: { userAgent: string | null; ipAddress: string | null; current: boolean }[];
      }>().items;
      // The seeded laptop session and this login's, the current one.
      expect(items.map((item) => item.current).sort()).toEqual([false, true]);
      expect(items.find((item) => !item.current)).toMatchObject({
        userAgent: expect.stringContaining('(db:seed)'),
        ipAddress: '192.0.2.10',
      });

      const user02 = await new UserRepository(db).findByEmail('user02@example.com');
      const events = await app.inject({ url: `/users/${user02?.id ?? ''}/events`, headers: bearer(accessToken) });
      expect(events.statusCode, events.body).toBe(200);
      const listed = events.json<{ items: { type: string; sessionId: string | null; actorId: string | null }[] }>()
        .items;
      expect(listed.map((event) => event.type).sort()).toEqual([
        'login.succeeded',
        'login.succeeded',
        'user.registered',
      ]);
      for (const event of listed.filter((item) => item.type === 'login.succeeded')) {
        expect(event).toMatchObject({ sessionId: expect.stringMatching(UUID), actorId: user02?.id });
      }
    },
  );

  test(
    'refuses with NODE_ENV=production, with a non-zero exit code, touching nothing',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);

      const outcome = await npmRunSeed({
        DATABASE_URL: url,
        NODE_ENV: 'production',
        JWT_SECRET: 'x'.repeat(40),
      });

      expect(outcome.code).toBe(2);
      expect(outcome.output).toContain('db:seed refused: NODE_ENV=production');
      expect(await new UserRepository(db).list(10)).toEqual([]);
      expect(await seedCounts(db)).toMatchObject({ sessions: 0, events: {} });
    },
  );

  test(
    'is announced by npm start on an empty development database, and not once it has users',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);
      const env = { DATABASE_URL: url, NODE_ENV: 'development', JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'warn' };

      const empty = await startServerProcess({ env, port: [3400, 3499] });
      await empty.stop();
      expect(empty.output()).toContain('`npm run db:seed` adds an admin and 36 users');

      await seedDevelopmentData({ db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) }, { users: 1 });
      const seeded = await startServerProcess({ env, port: [3400, 3499] });
      await seeded.stop();
      expect(seeded.output()).not.toContain('db:seed');
    },
  );
});
