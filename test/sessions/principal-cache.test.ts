import { sql } from 'kysely';
import { vi } from 'vitest';
import { createDatabase } from '../../src/platform/db/database.ts';
import { UserChangeFeed } from '../../src/platform/db/user-changes.ts';
import { AppMetrics } from '../../src/platform/metrics/metrics.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import type { AuthenticatedUser } from '../../src/auth/service.ts';
import { PrincipalCache } from '../../src/sessions/principal-cache.ts';
import type { LiveSession } from '../../src/sessions/service.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL, type TestDatabase } from '../helpers/database.ts';
import {
  accessTokenFor,
  bearer,
  createUser,
  expectError,
  expectUnauthorized,
  login,
  PASSWORD,
  type UserJson,
} from '../helpers/http.ts';

// The principal cache as server.ts wires it: a cache kept fresh by a LISTEN connection, on a
// database of its own, because notifications are only sent for committed changes. Under
// `npm run test:pgbouncer` the database URLs lead through PgBouncer in transaction mode, where
// notifications never arrive: there the feed must never go live.
const THROUGH_PGBOUNCER = TEST_POOL.poolMode === 'transaction';

const APPLICATION_NAME = 'vitest-user-changes';

async function cachedApp(database: TestDatabase, onFinished: (fn: () => Promise<void>) => void) {
  const resets: number[] = [];
  const feed: UserChangeFeed = new UserChangeFeed(
    {
      url: database.url,
      applicationName: APPLICATION_NAME,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
      probeTimeoutMs: 500,
    },
    {
      onChange: (id) => {
        cache.invalidate(id);
      },
      onSessionEnded: (sid) => {
        sessions.invalidate(sid);
      },
      onReset: () => {
        resets.push(Date.now());
        cache.clear();
        sessions.clear();
      },
    },
  );
  const cache = new PrincipalCache<AuthenticatedUser>({ ttlMs: 60_000, maxEntries: 100, isLive: () => feed.live });
  const sessions = new PrincipalCache<LiveSession>({ ttlMs: 60_000, maxEntries: 100, isLive: () => feed.live });
  await feed.start();
  // As server.ts wires it: units of work on this database wait until the feed heard their changes.
  const db = createDatabase({ ...TEST_POOL, url: database.url }, { changes: feed });
  onFinished(async () => {
    await db.destroy();
    await feed.close();
  });
  const metrics = new AppMetrics();
  const app = await testApp(db, onFinished, { principals: cache, liveSessions: sessions, metrics });
  const lookups = async (source: 'cache' | 'database') =>
    (await metrics.principalLookups.get()).values.find((v) => v.labels.source === source)?.value ?? 0;
  return { app, cache, feed, resets, lookups };
}

describe.runIf(!THROUGH_PGBOUNCER)('the principal cache', () => {
  test('serves repeated requests of one user from the cache, and a demoted admin is refused once the change commits', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { app, feed, lookups } = await cachedApp(database, onTestFinished);
    expect(feed.live).toBe(true);
    const admin = await createUser(database.db, { role: 'admin' });
    const other = await createUser(database.db);
    const token = bearer(accessTokenFor(admin));

    for (let i = 0; i < 3; i++)
      expect((await app.inject({ url: `/users/${other.id}`, headers: token })).statusCode).toBe(200);
    expect(await lookups('database')).toBe(1);
    expect(await lookups('cache')).toBe(2);

    await database.db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.id).execute();
    // The notification follows the commit (well under a millisecond here); the next requests are refused.
    await vi.waitFor(async () => {
      expectError(await app.inject({ url: `/users/${other.id}`, headers: token }), {
        statusCode: 403,
        type: 'AuthorizationError',
        code: 'FORBIDDEN',
      });
    });
    expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(403);
  });

  test('a deleted user is refused, and a truncated table empties the cache', async ({ onTestFinished }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { app, cache } = await cachedApp(database, onTestFinished);
    const gone = await createUser(database.db);
    const kept = await createUser(database.db);
    for (const user of [gone, kept]) {
      expect((await app.inject({ url: '/auth/me', headers: bearer(accessTokenFor(user)) })).statusCode).toBe(200);
    }
    expect(cache.size).toBe(2);

    await new UserRepository(database.db).delete(gone.id);
    await vi.waitFor(async () => {
      expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(accessTokenFor(gone)) }));
    });
    // The session went with the user, so the 401 may come before the row's notification drops
    // the cached principal; it is dropped once the notification arrives.
    await vi.waitFor(() => {
      expect(cache.size).toBe(1);
    });

    await sql`truncate users cascade`.execute(database.db);
    await vi.waitFor(() => {
      expect(cache.size).toBe(0);
    });
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(accessTokenFor(kept)) }));
  });

  test("with the live-session cache too, a session's repeated requests cost no query; its end, heard, is refused at once", async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    // The app reaches the database through a Kysely that records every statement it sends.
    const operations: string[] = [];
    const db = createDatabase(
      { ...TEST_POOL, url: database.url },
      { onQuery: (event) => operations.push(event.operation) },
    );
    onTestFinished(async () => {
      await db.destroy();
    });
    const feed: UserChangeFeed = new UserChangeFeed(
      { url: database.url, applicationName: APPLICATION_NAME, probeTimeoutMs: 500 },
      {
        onChange: (id) => {
          principals.invalidate(id);
        },
        onSessionEnded: (sid) => {
          sessions.invalidate(sid);
        },
        onReset: () => {
          principals.clear();
          sessions.clear();
        },
      },
    );
    const principals = new PrincipalCache<AuthenticatedUser>({
      ttlMs: 60_000,
      maxEntries: 100,
      isLive: () => feed.live,
    });
    const sessions = new PrincipalCache<LiveSession>({ ttlMs: 60_000, maxEntries: 100, isLive: () => feed.live });
    await feed.start();
    onTestFinished(async () => {
      await feed.close();
    });
    const app = await testApp(db, onTestFinished, { principals, liveSessions: sessions });
    const user = await createUser(database.db);
    const token = bearer(accessTokenFor(user));

    expect((await app.inject({ url: '/auth/me', headers: token })).statusCode).toBe(200);
    expect(operations).toEqual(['users.select']);
    operations.length = 0;
    for (let i = 0; i < 5; i++) expect((await app.inject({ url: '/auth/me', headers: token })).statusCode).toBe(200);
    expect(operations).toEqual([]);

    // Ended elsewhere (another instance, a script): the notification drops it, and the next request reads it.
    await database.db
      .updateTable('sessions')
      .set({ ended_at: new Date(), end_reason: 'revoked' })
      .where('id', '=', user.id)
      .execute();
    await vi.waitFor(() => {
      expect(sessions.size).toBe(0);
    });
    expectUnauthorized(await app.inject({ url: '/auth/me', headers: token }));
    expect(principals.size).toBe(1);
  });

  test("a login's own change (last login time) shows in /auth/me at once", async ({ onTestFinished }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { app } = await cachedApp(database, onTestFinished);
    const user = await createUser(database.db);
    const first = await login(app, user.email);
    const me = async (token: string) =>
      (await app.inject({ url: '/auth/me', headers: bearer(token) })).json<{ user: UserJson }>().user;
    expect((await me(first.accessToken)).lastLoginAt).toBe(first.user.lastLoginAt);

    const second = await login(app, user.email);
    expect(second.user.lastLoginAt).not.toBe(first.user.lastLoginAt);
    // No waiting: the login returned only once this instance's feed had heard its change.
    expect((await me(first.accessToken)).lastLoginAt).toBe(second.user.lastLoginAt);
  });

  test.for([
    ['a logout (the session itself)', '/auth/logout'],
    ['a password change (the other sessions)', '/auth/password'],
  ] as const)(
    'a session ended by %s on this instance is refused at once, though only the feed tells the caches',
    async ([, url], { onTestFinished }) => {
      const database = await isolatedDatabase(onTestFinished);
      const { app } = await cachedApp(database, onTestFinished);
      const user = await createUser(database.db);
      const current = await login(app, user.email);
      const other = await login(app, user.email);
      // Both cached now: the next requests are answered from the caches.
      for (const session of [current, other]) {
        expect((await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) })).statusCode).toBe(200);
      }
      const logout = url === '/auth/logout';
      const body = logout
        ? { refreshToken: current.refreshToken }
        : { currentPassword: PASSWORD, newPassword: 'a brand new passphrase 42' };
      const ended = await app.inject({ method: 'POST', url, headers: bearer(current.accessToken), payload: body });
      expect(ended.statusCode).toBe(204);
      const victim = logout ? current : other;
      expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(victim.accessToken) }));
    },
  );

  test('serves nothing while its connection is lost, forgets what it held, and resumes once it is back', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { app, feed, resets, lookups } = await cachedApp(database, onTestFinished);
    const admin = await createUser(database.db, { role: 'admin' });
    const token = bearer(accessTokenFor(admin));
    expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(200);
    const resetsBefore = resets.length;

    await sql`select pg_terminate_backend(pid) from pg_stat_activity
              where application_name = ${APPLICATION_NAME} and datname = current_database()`.execute(database.db);
    await vi.waitFor(() => {
      expect(resets.length).toBeGreaterThan(resetsBefore);
    });
    // A change made while no one listens must not be missed: the cache starts again from nothing.
    await database.db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.id).execute();
    expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(403);

    await vi.waitFor(() => {
      expect(feed.live).toBe(true);
    });
    await database.db.updateTable('users').set({ role: 'admin' }).where('id', '=', admin.id).execute();
    await vi.waitFor(async () => {
      expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(200);
    });
    // Served from the cache again (once the promotion's own notification has been heard).
    await vi.waitFor(async () => {
      const fromCache = await lookups('cache');
      expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(200);
      expect(await lookups('cache')).toBe(fromCache + 1);
    });
  });
});

describe.runIf(THROUGH_PGBOUNCER)('the principal cache through PgBouncer in transaction mode', () => {
  test('never goes live, since its own probe notification never arrives, so every request reads the row', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { app, feed, lookups } = await cachedApp(database, onTestFinished);
    expect(feed.live).toBe(false);
    const admin = await createUser(database.db, { role: 'admin' });
    const token = bearer(accessTokenFor(admin));
    for (let i = 0; i < 2; i++) expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(200);
    await database.db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.id).execute();
    expect((await app.inject({ url: '/users', headers: token })).statusCode).toBe(403);
    expect(await lookups('cache')).toBe(0);
    expect(await lookups('database')).toBe(3);
    expect(feed.live).toBe(false);
  });
});
