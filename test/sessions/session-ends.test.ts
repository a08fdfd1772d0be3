import { sql } from 'kysely';
import { TEST_JWT_SECRET, TEST_ENCRYPTION_KEY } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess as Instance } from '../helpers/server-process.ts';
import { createUser, PASSWORD, type LoginJson } from '../helpers/http.ts';

// Real server processes (`node src/server.ts`) over one committed database: what ending a
// session looks like from every instance, and what happens when the change feed goes silent.
// Through PgBouncer in transaction mode the caches are off (no notifications): nothing to test.
const THROUGH_PGBOUNCER = TEST_POOL.poolMode === 'transaction';

const HEARTBEAT_TIMEOUT_MS = 1500;

function serverEnv(databaseUrl: string, applicationName: string): Record<string, string> {
  return {
    NODE_ENV: 'production',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    APP_URL: 'http://localhost:3000',
    WEBAUTHN_RP_ID: 'localhost',
    WEBAUTHN_ORIGINS: 'http://localhost:3000',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    DB_POOL_MAX: '4',
    DB_APPLICATION_NAME: applicationName,
    MIGRATE_ON_START: 'false',
    JWT_SECRET: TEST_JWT_SECRET,
    HASH_CONCURRENCY: '1',
    PRINCIPAL_CACHE_SECONDS: '60',
    CHANGE_FEED_HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
    EMAIL_TRANSPORT: 'log',
    METRICS_PUBLIC: 'true',
    MAINTENANCE_INTERVAL_SECONDS: '0',
  };
}

async function call(instance: Instance, method: string, path: string, token?: string, body?: unknown) {
  return fetch(`${instance.baseUrl}${path}`, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** Polls until `check` holds; @returns how long it took. */
async function timeUntil(check: () => Promise<boolean>, limitMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`not within ${limitMs} ms`);
}

describe.runIf(!THROUGH_PGBOUNCER)('ending a session, seen from every instance', () => {
  test('a logged-out access token is rejected by a second instance, whose cache had it as live', async ({
    onTestFinished,
  }) => {
    const { db, url } = await isolatedDatabase(onTestFinished);
    const env = serverEnv(url, 'session-ends');
    const [a, b] = await Promise.all([
      startServerProcess({ env, port: [3400, 3499] }),
      startServerProcess({ env, port: [3400, 3499] }),
    ]);
    onTestFinished(async () => {
      await Promise.all([a.stop(), b.stop()]);
    });
    const user = await createUser(db);
    const session = (await (
      await call(a, 'POST', '/auth/login', undefined, { email: user.email, password: PASSWORD })
    ).json()) as LoginJson;
    // B serves the session from its cache from now on.
    for (let i = 0; i < 3; i++) expect((await call(b, 'GET', '/auth/me', session.accessToken)).status).toBe(200);

    expect((await call(a, 'POST', '/auth/logout', undefined, { refreshToken: session.refreshToken })).status).toBe(204);

    // The end is announced at commit; B drops the session as soon as it hears it.
    const delay = await timeUntil(
      async () => (await call(b, 'GET', '/auth/me', session.accessToken)).status === 401,
      1000,
    );
    expect(delay).toBeLessThan(1000);
    expect((await call(a, 'GET', '/auth/me', session.accessToken)).status).toBe(401);
  }, 60_000);

  test('with the change feed’s backend stopped (SIGSTOP), the cache stops being trusted within the heartbeat bound', async ({
    onTestFinished,
  }) => {
    const { db, url } = await isolatedDatabase(onTestFinished);
    const applicationName = `feed-stop-${process.pid}`;
    const instance = await startServerProcess({ env: serverEnv(url, applicationName), port: [3400, 3499] });
    onTestFinished(async () => {
      await instance.stop();
    });
    const admin = await createUser(db, { role: 'admin' });
    await createUser(db, { role: 'admin' });
    const { accessToken } = (await (
      await call(instance, 'POST', '/auth/login', undefined, { email: admin.email, password: PASSWORD })
    ).json()) as LoginJson;
    for (let i = 0; i < 3; i++) expect((await call(instance, 'GET', '/users', accessToken)).status).toBe(200);

    const { rows } = await sql<{ pid: number }>`
      select pid from pg_stat_activity
      where application_name = ${`${applicationName}:user-changes`} and query ilike 'listen%'`.execute(db);
    const pid = rows[0]?.pid;
    expect(pid, 'the listening backend').toBeTypeOf('number');
    if (pid === undefined) return;
    process.kill(pid, 'SIGSTOP');
    onTestFinished(() => {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
      return Promise.resolve();
    });

    // The demotion's notification is never delivered: that backend does not read any more.
    const demotedAt = performance.now();
    await db.updateTable('users').set({ role: 'user' }).where('id', '=', admin.id).execute();
    await timeUntil(async () => (await call(instance, 'GET', '/users', accessToken)).status === 403, 10_000);
    const delay = performance.now() - demotedAt;
    // Heartbeats every third of the bound: silence is noticed within the bound plus one beat.
    expect(delay).toBeLessThan(HEARTBEAT_TIMEOUT_MS + HEARTBEAT_TIMEOUT_MS / 3 + 1000);
  }, 60_000);
});
