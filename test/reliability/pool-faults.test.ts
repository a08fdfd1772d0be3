import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { isolatedDatabase } from '../helpers/database.ts';
import { accessTokenFor, createUser, PASSWORD } from '../helpers/http.ts';
import {
  appOnPool,
  expectUnavailable,
  httpRequest,
  registration,
  uniqueId,
  type HttpResponse,
  type OnFinished,
} from './support.ts';
import { waitFor } from '../helpers/processes.ts';

// Faults under the pool, on a committed database of the test's own on the suite's PostgreSQL.
// Each app's connections carry a unique application_name, so only they are locked out or killed.

const HTTP_PORTS = [3310, 3319] as const;

/** A superuser connection of the test's own, beside the app's pool: it holds locks and kills backends. */
async function adminClient(onFinished: OnFinished, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'reliability-admin' });
  await client.connect();
  onFinished(async () => {
    await client.end();
  });
  return client;
}

/**
 * The app's backends that wait for a lock right now. Inside a transaction pg_stat_activity is a
 * snapshot taken at its first read, so the snapshot is dropped first.
 */
async function waitingOnLocks(admin: pg.Client, applicationName: string): Promise<number> {
  await admin.query('select pg_stat_clear_snapshot()');
  const { rows } = await admin.query<{ count: string }>(
    "select count(*) from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'",
    [applicationName],
  );
  return Number(rows[0]?.count);
}

async function terminateBackendsOf(admin: pg.Client, applicationName: string): Promise<number> {
  await admin.query('select pg_stat_clear_snapshot()');
  const { rows } = await admin.query<{ terminated: boolean }>(
    'select pg_terminate_backend(pid) as terminated from pg_stat_activity where application_name = $1',
    [applicationName],
  );
  return rows.filter((row) => row.terminated).length;
}

/** A request that fails may fail once, with a clean 503; sent again, it must succeed. */
async function withOneRetry(
  send: () => Promise<HttpResponse>,
  success: number,
): Promise<{ first: HttpResponse; final: HttpResponse }> {
  const first = await send();
  if (first.status === success) return { first, final: first };
  expectUnavailable(first, 'DATABASE_UNAVAILABLE');
  return { first, final: await send() };
}

describe('connections killed under the pool', () => {
  test('serves the next requests on fresh connections after every idle connection was terminated; none fails twice', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl, pool, applicationName } = await appOnPool(onTestFinished, url, HTTP_PORTS, { DB_POOL_MAX: '4' });
    const admin = await adminClient(onTestFinished, url);
    const user = await createUser(db);
    const me = () => httpRequest(baseUrl, '/auth/me', { headers: { authorization: `Bearer ${accessTokenFor(user)}` } });

    // Warm the pool up to its four connections.
    const warm = await Promise.all(Array.from({ length: 12 }, me));
    expect(warm.map((response) => response.status)).toEqual(Array<number>(12).fill(200));
    expect(pool.totalCount).toBe(4);

    expect(await terminateBackendsOf(admin, applicationName)).toBe(4);

    const sequential = [];
    for (let i = 0; i < 6; i++) sequential.push(await withOneRetry(me, 200));
    const concurrent = await Promise.all(Array.from({ length: 8 }, () => withOneRetry(me, 200)));
    for (const { final } of [...sequential, ...concurrent]) expect(final.status, final.text).toBe(200);
    // A request can meet a killed connection before the pool has noticed its death, at most once per connection.
    const failedOnce = [...sequential, ...concurrent].filter(({ first }) => first.status !== 200);
    expect(failedOnce.length).toBeLessThanOrEqual(4);
    expect(pool.totalCount).toBeLessThanOrEqual(4);

    // Once the pool has heard of the deaths (the idle clients' error events), nothing fails at all.
    await Promise.all(Array.from({ length: 12 }, me));
    const open = pool.totalCount;
    expect(await terminateBackendsOf(admin, applicationName)).toBe(open);
    await waitFor('the pool to drop its dead connections', () => (pool.totalCount === 0 ? true : undefined), 5_000);
    const afterwards = await Promise.all(Array.from({ length: 8 }, me));
    expect(afterwards.map((response) => response.status)).toEqual(Array<number>(8).fill(200));
  });

  test('answers 503 DATABASE_UNAVAILABLE to requests whose connection is killed mid-query, and serves their retries', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl, pool, applicationName } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      DB_POOL_MAX: '4',
      RATE_LIMIT_REGISTER: '100000',
    });
    const admin = await adminClient(onTestFinished, url);
    const user = await createUser(db);
    const token = accessTokenFor(user);
    const me = () => httpRequest(baseUrl, '/auth/me', { headers: { authorization: `Bearer ${token}` } });
    const emails = [0, 1].map((i) => `killed-${uniqueId()}-${i}@example.com`);
    const register = (email: string) => () => httpRequest(baseUrl, '/auth/register', { body: registration(email) });

    // A lock from elsewhere holds every request at its first statement, so each has a connection checked out.
    await admin.query('begin');
    await admin.query('lock table users in access exclusive mode');
    const inFlight = [me(), me(), register(emails[0] ?? '')(), register(emails[1] ?? '')()];
    await waitFor('four requests waiting on the lock', async () =>
      (await waitingOnLocks(admin, applicationName)) === 4 ? true : undefined,
    );
    expect(await terminateBackendsOf(admin, applicationName)).toBe(4);
    await admin.query('commit');

    const answers = await Promise.all(inFlight);
    for (const response of answers) expectUnavailable(response, 'DATABASE_UNAVAILABLE');

    // Sent again, every one succeeds, and each registration is stored exactly once.
    const retried = await Promise.all([me(), me(), register(emails[0] ?? '')(), register(emails[1] ?? '')()]);
    expect(retried.map((response) => response.status)).toEqual([200, 200, 201, 201]);
    const stored = await db.selectFrom('users').select('email').where('email', 'in', emails).execute();
    expect(stored.map((row) => row.email).sort()).toEqual([...emails].sort());
    await waitFor('the pool to be idle again', () =>
      pool.idleCount === pool.totalCount && pool.waitingCount === 0 ? true : undefined,
    );
    expect(pool.totalCount).toBeLessThanOrEqual(4);
  });
});

describe('pool exhaustion', () => {
  test('answers 503 POOL_EXHAUSTED with retry-after once the configured wait is over, then drains back to idle', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const waitMs = 1_000;
    const { baseUrl, pool, applicationName } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      DB_POOL_MAX: '2',
      DB_CONNECTION_TIMEOUT_MS: String(waitMs),
    });
    const admin = await adminClient(onTestFinished, url);
    const user = await createUser(db);
    const me = () => httpRequest(baseUrl, '/auth/me', { headers: { authorization: `Bearer ${accessTokenFor(user)}` } });

    // Two slow requests take both connections: they wait on a lock held elsewhere.
    await admin.query('begin');
    await admin.query('lock table users in access exclusive mode');
    const slow = [me(), me()];
    await waitFor('both connections to wait on the lock', async () =>
      (await waitingOnLocks(admin, applicationName)) === 2 ? true : undefined,
    );

    // More work than connections: each extra request waits the configured time, then gets a clean 503.
    const extra = await Promise.all([me(), me(), me()]);
    for (const response of extra) {
      expectUnavailable(response, 'POOL_EXHAUSTED');
      expect(response.ms).toBeGreaterThanOrEqual(waitMs - 50);
      expect(response.ms).toBeLessThan(waitMs + 1_500);
    }
    const metricsDuring = await httpRequest(baseUrl, '/metrics');
    expect(metricsDuring.text).toMatch(/^db_pool_connections_idle 0$/m);

    await admin.query('commit');
    const released = await Promise.all(slow);
    expect(released.map((response) => response.status)).toEqual([200, 200]);

    await waitFor('the pool to drain', () =>
      pool.waitingCount === 0 && pool.idleCount === pool.totalCount ? true : undefined,
    );
    const metricsAfter = await httpRequest(baseUrl, '/metrics');
    expect(metricsAfter.text).toMatch(/^db_pool_clients_waiting 0$/m);
    const fresh = await me();
    expect(fresh.status).toBe(200);
    expect(fresh.ms).toBeLessThan(waitMs);
  });

  test('under twenty concurrent slow requests on two connections, answers each with 200 or POOL_EXHAUSTED, never a 500', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl, pool, applicationName } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      DB_POOL_MAX: '2',
      DB_CONNECTION_TIMEOUT_MS: '500',
    });
    const admin = await adminClient(onTestFinished, url);
    const user = await createUser(db);
    const me = () => httpRequest(baseUrl, '/auth/me', { headers: { authorization: `Bearer ${accessTokenFor(user)}` } });

    await admin.query('begin');
    await admin.query('lock table users in access exclusive mode');
    const burst = Array.from({ length: 20 }, me);
    await waitFor('both connections to wait on the lock', async () =>
      (await waitingOnLocks(admin, applicationName)) === 2 ? true : undefined,
    );
    // Hold the lock beyond the pool wait, so the queue overflows, then let go.
    await new Promise((resolve) => setTimeout(resolve, 800));
    await admin.query('commit');

    const answers = await Promise.all(burst);
    const statuses = answers.map((response) => response.status);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(2);
    expect(statuses.filter((status) => status === 503).length).toBeGreaterThanOrEqual(1);
    for (const response of answers) {
      if (response.status !== 200) expectUnavailable(response, 'POOL_EXHAUSTED');
    }
    await waitFor('the pool to drain', () =>
      pool.waitingCount === 0 && pool.idleCount === pool.totalCount ? true : undefined,
    );
    expect((await me()).status).toBe(200);
  });
});

describe('statement timeout', () => {
  test('answers 503 QUERY_TIMEOUT when a row lock held elsewhere stalls a refresh, leaves the lock holder unharmed and the token unspent', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const timeoutMs = 500;
    const { baseUrl } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      DB_STATEMENT_TIMEOUT_MS: String(timeoutMs),
    });
    const admin = await adminClient(onTestFinished, url);
    const user = await createUser(db);
    const login = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expect(login.status).toBe(200);
    const { refreshToken } = login.json<{ refreshToken: string }>();

    // Another session locks the token's row (and the user's) and keeps its transaction open.
    await admin.query('begin');
    await admin.query('select id from refresh_tokens where user_id = $1 for update', [user.id]);
    await admin.query("update users set name = 'Held by the admin' where id = $1", [user.id]);

    const stalled = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken } });
    expectUnavailable(stalled, 'QUERY_TIMEOUT');
    expect(stalled.ms).toBeGreaterThanOrEqual(timeoutMs - 50);
    expect(stalled.ms).toBeLessThan(timeoutMs + 1_500);

    // A login of the same user stalls on the user row the same way, and leaves no session behind.
    const stalledLogin = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expectUnavailable(stalledLogin, 'QUERY_TIMEOUT');

    // The lock holder was not disturbed: it goes on and commits.
    await admin.query("update users set name = 'Committed by the admin' where id = $1", [user.id]);
    await admin.query('commit');
    const stored = await db.selectFrom('users').select('name').where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(stored.name).toBe('Committed by the admin');

    // The timed-out requests changed nothing: one session, its token still live and usable once.
    const sessions = await db
      .selectFrom('refresh_tokens')
      .select(['family_id', 'rotated_at', 'revoked_at'])
      .where('user_id', '=', user.id)
      .execute();
    expect(sessions).toEqual([{ family_id: expect.any(String), rotated_at: null, revoked_at: null }]);
    const refreshed = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken } });
    expect(refreshed.status, refreshed.text).toBe(200);
  });
});
