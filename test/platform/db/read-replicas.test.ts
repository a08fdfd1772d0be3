import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DB } from '../../../db-types/index.ts';
import { buildApp, type App } from '../../../src/app.ts';
import { createDatabase, type PoolConfig } from '../../../src/platform/db/database.ts';
import { migrateToLatest } from '../../../src/platform/db/migrator.ts';
import { createReadDatabase } from '../../../src/platform/db/replicas.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import { TEST_JWT_SECRET, testConfig } from '../../helpers/app.ts';
import { startStreamingReplication, type StreamingReplication } from '../../helpers/replication.ts';
import {
  bearer,
  createUser,
  login,
  PASSWORD,
  postJson,
  type TokenPairJson,
  type UserJson,
} from '../../helpers/http.ts';

// A real primary and a real hot standby made from it by pg_basebackup (streaming replication),
// both started by this file and removed after it. The application writes to the primary and sends
// only the user listing to the replica.

const DATABASE = 'app';
const POOL: Omit<PoolConfig, 'url'> = {
  poolMax: 4,
  connectionTimeoutMs: 2_000,
  idleTimeoutMs: 10_000,
  statementTimeoutMs: 10_000,
  applicationName: 'vitest-replicas',
};

let replication: StreamingReplication;
let primary: Kysely<DB>;

beforeAll(async () => {
  replication = await startStreamingReplication({ database: DATABASE });
  await migrateToLatest(replication.primaryUrl(DATABASE));
  primary = createDatabase({ ...POOL, url: replication.primaryUrl(DATABASE) });
  await replication.waitForReplay();
}, 120_000);

afterAll(async () => {
  await primary.destroy();
  await replication.destroy();
}, 60_000);

interface ReplicatedApp {
  readonly app: App;
  readonly metrics: AppMetrics;
}

/** The app on the primary with the standby as its read replica; `now` lets a test move time. */
async function replicatedApp(
  onFinished: (fn: () => Promise<void>) => void,
  options: { maxLagMs: number; checkIntervalMs: number; now?: () => number },
): Promise<ReplicatedApp> {
  const metrics = new AppMetrics();
  const readDb = createReadDatabase(primary, {
    replicaUrls: [replication.replicaUrl(DATABASE)],
    pool: POOL,
    events: metrics.replicaEvents,
    ...options,
  });
  const app = await buildApp({
    config: testConfig({ RATE_LIMIT_LOGIN: '1000', RATE_LIMIT_REGISTER: '1000' }),
    db: primary,
    readDb,
    jwtSecret: TEST_JWT_SECRET,
    metrics,
  });
  onFinished(async () => {
    await app.close();
    await readDb.destroy();
  });
  await app.ready();
  return { app, metrics };
}

/** Statements on `users` each server ran since the last reset (its pg_stat_statements). */
async function usersStatements(on: 'primary' | 'replica'): Promise<{ query: string; calls: number }[]> {
  const run =
    on === 'primary' ? replication.queryPrimary.bind(replication) : replication.queryReplica.bind(replication);
  return run<{ query: string; calls: number }>(
    DATABASE,
    `select query, calls::int as calls from pg_stat_statements
      where dbid = (select oid from pg_database where datname = current_database()) and query like '%"users"%'
      order by query`,
  );
}

async function resetStatements(): Promise<void> {
  await replication.queryPrimary(DATABASE, 'select pg_stat_statements_reset()');
  await replication.queryReplica(DATABASE, 'select pg_stat_statements_reset()');
}

/** One sample of the app's /metrics, by name and labels: `value('db_replica_reads_total', 'target="replica"')`. */
async function metricsOf(app: App): Promise<(name: string, labels?: string) => number | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body;
  return (name, labels = '') => {
    const line = text
      .split('\n')
      .find((candidate) => candidate.startsWith(labels === '' ? `${name} ` : `${name}{`) && candidate.includes(labels));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
}

async function listedEmails(app: App, accessToken: string): Promise<string[]> {
  const response = await app.inject({ url: '/users?limit=100', headers: bearer(accessToken) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<{ items: UserJson[] }>().items.map((user) => user.email);
}

const LISTING = /^select \* from "users" order by "created_at" desc, "id" desc limit \$1$/;

describe('read replicas (DATABASE_REPLICA_URLS)', () => {
  test('serve the user listing, and only it: login, /auth/me, /users/:id and writes run on the primary', async ({
    onTestFinished,
  }) => {
    const { app } = await replicatedApp(onTestFinished, { maxLagMs: 5_000, checkIntervalMs: 200 });
    const admin = await createUser(primary, { role: 'admin' });
    await replication.waitForReplay();
    await resetStatements();

    const session = await login(app, admin.email);
    expect((await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) })).statusCode).toBe(200);
    expect(await listedEmails(app, session.accessToken)).toContain(admin.email);
    expect((await app.inject({ url: `/users/${admin.id}`, headers: bearer(session.accessToken) })).statusCode).toBe(
      200,
    );
    const registered = await postJson(app, '/auth/register', {
      email: `new-${admin.id}@example.com`,
      password: PASSWORD,
      name: 'New',
    });
    expect(registered.statusCode).toBe(201);

    const onReplica = await usersStatements('replica');
    expect(onReplica).toHaveLength(1);
    expect(onReplica[0]?.query).toMatch(LISTING);
    expect(onReplica[0]?.calls).toBe(1);
    const onPrimary = await usersStatements('primary');
    expect(onPrimary.some(({ query }) => LISTING.test(query))).toBe(false);
    expect(onPrimary.some(({ query }) => query.startsWith('insert into "users"'))).toBe(true);
    expect(onPrimary.some(({ query }) => query.startsWith('update "users" set "last_login_at"'))).toBe(true);
    const metric = await metricsOf(app);
    expect(metric('db_replica_reads_total', 'target="replica"')).toBe(1);
    expect(metric('db_replica_reads_total', 'target="primary"')).toBe(0);
    expect(metric('db_replica_usable', 'replica="127.0.0.1:')).toBe(1);
  });

  test('read-your-writes stay on the primary while the replica lags; the listing is stale within DB_REPLICA_MAX_LAG_MS and falls back beyond it', async ({
    onTestFinished,
  }) => {
    const start = Date.now();
    let elapsed = 0;
    const { app } = await replicatedApp(onTestFinished, {
      maxLagMs: 2_000,
      checkIntervalMs: 1_000,
      now: () => start + elapsed,
    });
    const admin = await createUser(primary, { role: 'admin' });
    await replication.waitForReplay();
    const adminSession = await login(app, admin.email);
    expect(await listedEmails(app, adminSession.accessToken)).toContain(admin.email);

    // The standby keeps receiving WAL but stops applying it: it lags from now on.
    await replication.queryReplica('postgres', 'select pg_wal_replay_pause()');
    onTestFinished(async () => {
      await replication.queryReplica('postgres', 'select pg_wal_replay_resume()').catch(() => undefined);
    });

    const email = `lagging-${admin.id}@example.com`;
    expect((await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Newcomer' })).statusCode).toBe(
      201,
    );
    // Login right after register, the new user's /auth/me, a refresh and a password change all see the write.
    const session = await login(app, email);
    const me = await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) });
    expect(me.json<{ user: UserJson }>().user.email).toBe(email);
    const refreshed = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    const changed = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
      bearer(refreshed.json<TokenPairJson>().accessToken),
    );
    expect(changed.statusCode).toBe(204);
    expect((await postJson(app, '/auth/login', { email, password: 'a brand new passphrase' })).statusCode).toBe(200);

    // Measured a moment ago, the replica is within the bound: the listing comes from it, stale.
    expect(await listedEmails(app, adminSession.accessToken)).not.toContain(email);
    // Five seconds on, it is 5 s behind, beyond the 2 s bound: skipped, the primary answers.
    elapsed = 5_000;
    expect(await listedEmails(app, adminSession.accessToken)).toContain(email);
    let metric = await metricsOf(app);
    expect(metric('db_replica_fallbacks_total', 'reason="lagging"')).toBe(1);
    expect(metric('db_replica_reads_total', 'target="replica"')).toBe(2);
    expect(metric('db_replica_lag_seconds', 'replica="127.0.0.1:')).toBeGreaterThanOrEqual(5);
    expect(metric('db_replica_usable', 'replica="127.0.0.1:')).toBe(0);

    // Caught up again, it serves the listing again, fresh.
    await replication.queryReplica('postgres', 'select pg_wal_replay_resume()');
    await replication.waitForReplay();
    elapsed = 10_000;
    expect(await listedEmails(app, adminSession.accessToken)).toContain(email);
    metric = await metricsOf(app);
    expect(metric('db_replica_reads_total', 'target="replica"')).toBe(3);
    expect(metric('db_replica_lag_seconds', 'replica="127.0.0.1:')).toBe(0);
  });

  // Last: it stops the standby for good.
  test('keep every endpoint answering when the replica is stopped, counting the fallbacks', async ({
    onTestFinished,
  }) => {
    const { app } = await replicatedApp(onTestFinished, { maxLagMs: 5_000, checkIntervalMs: 100 });
    const admin = await createUser(primary, { role: 'admin' });
    await replication.waitForReplay();
    const adminSession = await login(app, admin.email);
    expect(await listedEmails(app, adminSession.accessToken)).toContain(admin.email);

    await replication.stopReplica();
    const started = performance.now();

    for (let i = 0; i < 3; i++) expect(await listedEmails(app, adminSession.accessToken)).toContain(admin.email);
    const email = `after-stop-${admin.id}@example.com`;
    expect((await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'After' })).statusCode).toBe(201);
    const session = await login(app, email);
    const me = await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) });
    expect(me.statusCode).toBe(200);
    const id = me.json<{ user: UserJson }>().user.id;
    expect((await app.inject({ url: `/users/${id}`, headers: bearer(session.accessToken) })).statusCode).toBe(200);
    const refreshed = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    const pair = refreshed.json<TokenPairJson>();
    expect(
      (
        await postJson(
          app,
          '/auth/password',
          { currentPassword: PASSWORD, newPassword: 'another new passphrase' },
          bearer(pair.accessToken),
        )
      ).statusCode,
    ).toBe(204);
    const again = await login(app, email, 'another new passphrase');
    expect((await postJson(app, '/auth/logout', { refreshToken: again.refreshToken })).statusCode).toBe(204);
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/health/ready' })).statusCode).toBe(200);
    expect(await listedEmails(app, adminSession.accessToken)).toContain(email);
    expect(performance.now() - started).toBeLessThan(10_000);

    const metric = await metricsOf(app);
    const fallbacks =
      (metric('db_replica_fallbacks_total', 'reason="error"') ?? 0) +
      (metric('db_replica_fallbacks_total', 'reason="unavailable"') ?? 0);
    expect(fallbacks).toBe(4);
    expect(metric('db_replica_reads_total', 'target="primary"')).toBe(4);
    expect(metric('db_replica_usable', 'replica="127.0.0.1:')).toBe(0);
  });
});
