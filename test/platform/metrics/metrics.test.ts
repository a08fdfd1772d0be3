import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import type { DB } from '../../../db-types/index.ts';
import type { App } from '../../../src/app.ts';
import { createDatabase, createPool, type PoolConfig } from '../../../src/platform/db/database.ts';
import { withOperation } from '../../../src/platform/db/instrumentation.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import type { PasswordHasher } from '../../../src/auth/passwords.ts';
import { LogCapture, testApp, testConfig } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, TEST_POOL, test } from '../../helpers/database.ts';
import {
  accessTokenFor,
  bearer,
  createUser,
  expectError,
  expectUnauthorized,
  login,
  PASSWORD,
  postJson,
  type LoginJson,
} from '../../helpers/http.ts';
import { parseExposition, seriesKeyOf, type MetricFamily, type Sample } from './prometheus-text.ts';

/**
 * The application as `server.ts` wires it: its own pool on a committed database of its own, every
 * query feeding the app's metrics and the slow-query log, `/metrics` reading the pool's counters.
 */
interface InstrumentedApp {
  readonly app: App;
  readonly pool: pg.Pool;
  readonly db: Kysely<DB>;
  readonly url: string;
  /** The app's log lines (JSON), the slow-query log among them. */
  readonly logs: LogCapture;
}

async function instrumentedApp(
  onTestFinished: (fn: () => Promise<void>) => void,
  options: { env?: Record<string, string>; pool?: Partial<Omit<PoolConfig, 'url'>>; hasher?: PasswordHasher } = {},
): Promise<InstrumentedApp> {
  const { url } = await isolatedDatabase(onTestFinished);
  const env = { LOG_LEVEL: 'warn', ...options.env };
  const config = testConfig(env);
  const poolConfig = { ...TEST_POOL, ...options.pool, url };
  const metrics = new AppMetrics();
  const logs = new LogCapture();
  // As in server.ts: the query hook exists before the app whose logger it writes to.
  const logger: { current?: FastifyBaseLogger } = {};
  const pool = createPool(poolConfig);
  const db = createDatabase(poolConfig, { pool, ...metrics.databaseHooks(() => logger.current, config.database) });
  onTestFinished(async () => {
    await db.destroy();
  });
  const app = await testApp(db, onTestFinished, {
    env,
    metrics,
    logStream: logs,
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: poolConfig.poolMax,
    }),
    ...(options.hasher === undefined ? {} : { hasher: options.hasher }),
  });
  logger.current = app.log;
  return { app, pool, db, url, logs };
}

/** One scrape, parsed strictly; fails the test if it is not valid exposition text. */
class Scrape {
  readonly text: string;
  readonly families: Map<string, MetricFamily>;
  readonly samples: readonly Sample[];

  constructor(text: string) {
    this.text = text;
    this.families = parseExposition(text);
    this.samples = [...this.families.values()].flatMap((family) => family.samples);
  }

  /** The sum of every sample named `name` whose labels include `labels`; undefined when none does. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const matching = this.samples.filter(
      (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    );
    return matching.length === 0 ? undefined : matching.reduce((sum, sample) => sum + sample.value, 0);
  }

  labelValues(name: string, label: string): Set<string> {
    return new Set(this.samples.filter((s) => s.name === name).flatMap((s) => s.labels[label] ?? []));
  }

  /** Every series, except the Node runtime's own (their labels follow GC kinds and libuv handle types, not requests). */
  applicationSeries(): Set<string> {
    return new Set(
      this.samples.filter((s) => !s.name.startsWith('nodejs_') && !s.name.startsWith('process_')).map(seriesKeyOf),
    );
  }
}

async function scrape(app: App, headers: Record<string, string> = {}): Promise<Scrape> {
  const response = await app.inject({ method: 'GET', url: '/metrics', headers });
  expect(response.statusCode, response.body).toBe(200);
  expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Scrape(response.body);
}

/** Waits until one of the app's queries on the database at `url` is blocked on a lock (polled from a connection of its own). */
async function waitForLockWait(url: string, timeoutMs = 5_000): Promise<void> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const { rows } = await observer.query<{ waiting: string }>(
        `select count(*) as waiting from pg_stat_activity
          where datname = current_database() and application_name = $1 and wait_event_type = 'Lock'`,
        [TEST_POOL.applicationName],
      );
      if (Number(rows[0]?.waiting) > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('no application query started waiting for a lock');
  } finally {
    await observer.end();
  }
}

const OPERATION_LABEL = /^[a-z][A-Za-z_]*\.[a-z][A-Za-z_]*$/;

describe('GET /metrics after a scripted register, login, me and list', () => {
  test('is valid Prometheus text exposition holding every metric with values that match what happened', async ({
    onTestFinished,
  }) => {
    const { app, pool, db } = await instrumentedApp(onTestFinished, { env: { RATE_LIMIT_LOGIN: '3' } });
    const admin = await createUser(db, { email: 'admin@example.com', role: 'admin' });

    expect(
      (await postJson(app, '/auth/register', { email: 'ada@example.com', password: PASSWORD, name: 'Ada' })).statusCode,
    ).toBe(201);
    expectError(await postJson(app, '/auth/register', { email: 'ada@example.com', password: PASSWORD, name: 'Ada' }), {
      statusCode: 409,
      type: 'UniqueConstraintError',
      code: 'UNIQUE_VIOLATION',
    });
    const ada = await login(app, 'ada@example.com');
    const adminSession = await login(app, admin.email);
    expectError(await postJson(app, '/auth/login', { email: 'ada@example.com', password: 'not the password' }), {
      statusCode: 401,
      type: 'AuthenticationError',
      code: 'INVALID_CREDENTIALS',
    });
    expectError(await postJson(app, '/auth/login', { email: 'ada@example.com', password: PASSWORD }), {
      statusCode: 429,
      type: 'RateLimitError',
      code: 'RATE_LIMITED',
    });
    expect((await app.inject({ url: '/auth/me', headers: bearer(ada.accessToken) })).statusCode).toBe(200);
    expect((await app.inject({ url: '/users?limit=10', headers: bearer(adminSession.accessToken) })).statusCode).toBe(
      200,
    );
    expect((await postJson(app, '/auth/refresh', { refreshToken: ada.refreshToken })).statusCode).toBe(200);
    expect((await app.inject({ url: '/health/ready' })).statusCode).toBe(200);

    const metrics = await scrape(app);
    const poolNow = { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };

    const types = Object.fromEntries([...metrics.families.values()].map((family) => [family.name, family.type]));
    expect(types).toMatchObject({
      http_request_duration_seconds: 'histogram',
      db_query_duration_seconds: 'histogram',
      db_errors_total: 'counter',
      db_transaction_retries_total: 'counter',
      auth_logins_total: 'counter',
      auth_refresh_total: 'counter',
      auth_sessions_ended_total: 'counter',
      admin_actions_total: 'counter',
      auth_rate_limited_total: 'counter',
      auth_password_hash_queue_depth: 'gauge',
      db_pool_connections: 'gauge',
      db_pool_connections_idle: 'gauge',
      db_pool_clients_waiting: 'gauge',
      db_pool_connections_max: 'gauge',
      db_pool_utilisation_ratio: 'gauge',
    });
    for (const family of metrics.families.values()) expect(family.help, `HELP of ${family.name}`).toBeTruthy();

    // Queries: labelled `table.verb` (derived from the SQL), never by SQL text; one count per query run.
    const count = (operation: string, outcome = 'ok') =>
      metrics.value('db_query_duration_seconds_count', { operation, outcome }) ?? 0;
    expect(count('users.insert')).toBeGreaterThanOrEqual(2);
    expect(count('users.insert', 'UNIQUE_VIOLATION')).toBe(1);
    // Logins find by email, authentication reads the user with its session, the admin lists.
    expect(count('users.select')).toBeGreaterThanOrEqual(5);
    expect(count('users.update')).toBeGreaterThanOrEqual(2);
    expect(count('sessions.insert')).toBeGreaterThanOrEqual(2);
    expect(count('audit_events.insert')).toBeGreaterThanOrEqual(3);
    expect(count('refresh_tokens.insert')).toBeGreaterThanOrEqual(3);
    expect(count('refresh_tokens.select')).toBeGreaterThanOrEqual(1);
    expect(count('refresh_tokens.update')).toBeGreaterThanOrEqual(1);
    // The readiness check's ping and migration lookup.
    expect(count('health.ready')).toBeGreaterThanOrEqual(2);
    // Every session end reason and admin action kind is a series from the start, at 0 here.
    expect(metrics.value('auth_sessions_ended_total', { reason: 'user_disabled' })).toBe(0);
    expect(metrics.value('admin_actions_total', { kind: 'delete' })).toBe(0);
    expect(metrics.value('auth_refresh_total', { outcome: 'rotated' })).toBe(1);
    for (const operation of metrics.labelValues('db_query_duration_seconds_count', 'operation')) {
      expect(operation).toMatch(OPERATION_LABEL);
    }
    for (const outcome of metrics.labelValues('db_query_duration_seconds_count', 'outcome')) {
      expect(outcome).toMatch(/^(?:ok|[A-Z][A-Z_]*)$/);
    }
    const querySeconds = metrics.value('db_query_duration_seconds_sum') ?? 0;
    const queries = metrics.value('db_query_duration_seconds_count') ?? 0;
    expect(querySeconds).toBeGreaterThan(0);
    expect(querySeconds / queries).toBeLessThan(1);
    expect(metrics.value('db_errors_total', { category: 'UNIQUE_VIOLATION' })).toBe(1);
    expect(metrics.value('db_transaction_retries_total')).toBe(0);

    // Auth: exactly what the script did.
    expect(metrics.value('auth_logins_total', { outcome: 'success' })).toBe(2);
    expect(metrics.value('auth_logins_total', { outcome: 'failure' })).toBe(1);
    expect(metrics.value('auth_logins_total', { outcome: 'rate_limited' })).toBe(1);
    expect(metrics.value('auth_rate_limited_total', { limiter: 'login-ip' })).toBe(1);
    expect(metrics.value('auth_refresh_total', { outcome: 'rotated' })).toBe(1);
    expect(metrics.value('auth_refresh_total', { outcome: 'reused' })).toBe(0);
    expect(metrics.value('auth_refresh_total', { outcome: 'rejected' })).toBe(0);
    expect(metrics.value('auth_password_hash_queue_depth')).toBe(0);

    // HTTP: by route template and status class.
    const requests = (method: string, route: string, statusCode: string) =>
      metrics.value('http_request_duration_seconds_count', { method, route, status_code: statusCode });
    expect(requests('POST', '/auth/register', '2xx')).toBe(1);
    expect(requests('POST', '/auth/register', '4xx')).toBe(1);
    expect(requests('POST', '/auth/login', '2xx')).toBe(2);
    expect(requests('POST', '/auth/login', '4xx')).toBe(2);
    expect(requests('GET', '/auth/me', '2xx')).toBe(1);
    expect(requests('GET', '/users', '2xx')).toBe(1);
    expect(requests('POST', '/auth/refresh', '2xx')).toBe(1);
    expect(metrics.labelValues('http_request_duration_seconds_count', 'status_code')).toEqual(new Set(['2xx', '4xx']));
    expect(metrics.labelValues('http_request_duration_seconds_count', 'route')).not.toContain('/metrics');

    // Pool: what the pool says, nothing busy once the script is done.
    expect(metrics.value('db_pool_connections')).toBe(poolNow.total);
    expect(metrics.value('db_pool_connections_idle')).toBe(poolNow.idle);
    expect(metrics.value('db_pool_clients_waiting')).toBe(poolNow.waiting);
    expect(metrics.value('db_pool_connections_max')).toBe(TEST_POOL.poolMax);
    expect(poolNow.total).toBeGreaterThanOrEqual(1);
    expect(poolNow.idle).toBe(poolNow.total);
    expect(metrics.value('db_pool_utilisation_ratio')).toBe(0);
  });

  test.runIf(promtoolAvailable())(
    "passes `promtool check metrics` for the application's own metrics (the Node runtime's are the client library's)",
    async ({ onTestFinished }) => {
      const { app } = await instrumentedApp(onTestFinished);
      await app.inject({ url: '/health/ready' });
      const { text } = await scrape(app);

      const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      // Exit code 1 is a parse error; 3 lists lint problems, one per line, each starting with the metric name.
      expect(result.status, result.stderr + result.stdout).not.toBe(1);
      const problems = `${result.stdout}${result.stderr}`
        .split('\n')
        .filter((line) => line.trim() !== '' && !/^(?:nodejs_|process_)/.test(line));
      expect(problems).toEqual([]);
    },
  );
});

describe('pool and hashing gauges', () => {
  test('show a saturated pool while every connection is busy and a caller waits: utilisation 1, one waiting', async ({
    onTestFinished,
  }) => {
    const { app, pool } = await instrumentedApp(onTestFinished);
    const held = await Promise.all(Array.from({ length: TEST_POOL.poolMax }, () => pool.connect()));
    const waiter = pool.connect();
    try {
      const metrics = await scrape(app);
      expect(metrics.value('db_pool_connections')).toBe(TEST_POOL.poolMax);
      expect(metrics.value('db_pool_connections_idle')).toBe(0);
      expect(metrics.value('db_pool_clients_waiting')).toBe(1);
      expect(metrics.value('db_pool_utilisation_ratio')).toBe(1);
    } finally {
      for (const client of held) client.release();
      (await waiter).release();
    }

    const after = await scrape(app);
    expect(after.value('db_pool_clients_waiting')).toBe(0);
    expect(after.value('db_pool_utilisation_ratio')).toBe(0);
    expect(after.value('db_pool_connections_idle')).toBe(after.value('db_pool_connections'));
  });

  test('report the argon2 queue depth while registrations wait for a hashing slot', async ({ onTestFinished }) => {
    const { PasswordHasher } = await import('../../../src/auth/passwords.ts');
    const hasher = new PasswordHasher({ concurrency: 1, queueLimit: 64 });
    const { app } = await instrumentedApp(onTestFinished, { hasher });

    const progress = { done: false };
    const registrations = Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        postJson(app, '/auth/register', { email: `queued${i}@example.com`, password: PASSWORD, name: `Q${i}` }),
      ),
    ).finally(() => {
      progress.done = true;
    });
    let deepest = 0;
    while (!progress.done) {
      deepest = Math.max(deepest, (await scrape(app)).value('auth_password_hash_queue_depth') ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const response of await registrations) expect(response.statusCode).toBe(201);

    expect(deepest).toBeGreaterThanOrEqual(1);
    expect(deepest).toBeLessThanOrEqual(5);
    expect((await scrape(app)).value('auth_password_hash_queue_depth')).toBe(0);
  });
});

describe('database failures in the metrics', () => {
  /** A pool of one connection that gives up after 200 ms, and that connection taken away. */
  async function exhaustedPool(onTestFinished: (fn: () => Promise<void>) => void) {
    const instrumented = await instrumentedApp(onTestFinished, { pool: { poolMax: 1, connectionTimeoutMs: 200 } });
    const held = await instrumented.pool.connect();
    const response = await instrumented.app.inject({
      url: '/auth/me',
      headers: bearer(accessTokenFor({ id: randomUUID(), role: 'user' })),
    });
    held.release();
    expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code: 'POOL_EXHAUSTED' });
    return { ...instrumented, metrics: await scrape(instrumented.app) };
  }

  test('a 503 from an exhausted pool is a 5xx of its route in the HTTP histogram (what the 5xx alert reads)', async ({
    onTestFinished,
  }) => {
    const { metrics } = await exhaustedPool(onTestFinished);
    expect(metrics.value('http_request_duration_seconds_count', { route: '/auth/me', status_code: '5xx' })).toBe(1);
  });

  test('a request refused for want of a pooled connection counts in db_errors_total{category="POOL_EXHAUSTED"}', async ({
    onTestFinished,
  }) => {
    const { metrics } = await exhaustedPool(onTestFinished);
    expect(metrics.value('db_errors_total', { category: 'POOL_EXHAUSTED' })).toBe(1);
  });

  test('a refresh that hits a deadlock is retried, answers 200, and counts in db_transaction_retries_total', async ({
    onTestFinished,
  }) => {
    const { app, url } = await instrumentedApp(onTestFinished);
    await postJson(app, '/auth/register', { email: 'dead@example.com', password: PASSWORD, name: 'Dead' });
    const session: LoginJson = await login(app, 'dead@example.com');

    // Another session locks the user's token rows; the refresh takes the user's row lock, then
    // waits for its token row; the other session then asks for the user's row: a lock cycle
    // PostgreSQL breaks by aborting the refresh (this session's deadlock_timeout is long, so the
    // refresh's backend detects it first). The retry waits for the rollback and succeeds.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    onTestFinished(async () => {
      await other.end();
    });
    await other.query(`set deadlock_timeout = '60s'`);
    await other.query('begin');
    await other.query('select 1 from refresh_tokens where user_id = $1 for update', [session.user.id]);
    const refresh = postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    await waitForLockWait(url);
    await other.query('select 1 from users where id = $1 for update', [session.user.id]);
    await other.query('rollback');

    const response = await refresh;
    expect(response.statusCode, response.body).toBe(200);
    const metrics = await scrape(app);
    expect(metrics.value('db_errors_total', { category: 'SERIALIZATION_FAILURE' })).toBe(1);
    expect(metrics.value('db_transaction_retries_total')).toBe(1);
  });
});

describe('the slow-query log', () => {
  test('logs a query slower than SLOW_QUERY_MS at warn with operation, duration and SQL, parameters only counted, and counts it above the top finite bucket', async ({
    onTestFinished,
  }) => {
    const { app, db, logs } = await instrumentedApp(onTestFinished, { env: { SLOW_QUERY_MS: '200' } });
    const secret = `secret-${randomUUID()}`;

    await withOperation('reports.slowSummary', () =>
      sql`select pg_sleep(${1.1}), ${secret}::text as marker`.execute(db),
    );
    await withOperation('reports.fastSummary', () => sql`select ${secret}::text as marker`.execute(db));

    const entries = logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const slow = entries.filter((entry) => entry.msg === 'slow query');
    expect(slow).toHaveLength(1);
    expect(slow[0]).toMatchObject({
      level: 40,
      operation: 'reports.slowSummary',
      outcome: 'ok',
      sql: 'select pg_sleep($1), $2::text as marker',
      parameters: '[2 redacted]',
    });
    expect(slow[0]?.durationMs).toBeGreaterThanOrEqual(1100);
    expect(slow[0]?.durationMs).toBeLessThan(10_000);
    expect(logs.text).not.toContain(secret);
    expect(logs.text).not.toContain('1.1');

    const metrics = await scrape(app);
    const bucket = (le: string) =>
      metrics.value('db_query_duration_seconds_bucket', { operation: 'reports.slowSummary', outcome: 'ok', le });
    expect(bucket('1')).toBe(0);
    expect(bucket('+Inf')).toBe(1);
    expect(metrics.value('db_query_duration_seconds_sum', { operation: 'reports.slowSummary' })).toBeGreaterThanOrEqual(
      1.1,
    );
    expect(metrics.text).not.toContain(secret);
    expect(metrics.text).not.toContain('pg_sleep');
  });

  test('shows a login held up by a row lock as a slow users.select, with no email, id or hash in the log', async ({
    onTestFinished,
  }) => {
    const { app, url, logs } = await instrumentedApp(onTestFinished, { env: { SLOW_QUERY_MS: '100' } });
    await postJson(app, '/auth/register', { email: 'locked@example.com', password: PASSWORD, name: 'Locked' });

    const other = new pg.Client({ connectionString: url });
    await other.connect();
    onTestFinished(async () => {
      await other.end();
    });
    await other.query('begin');
    const { rows } = await other.query<{ id: string; password_hash: string }>(
      `select id, password_hash from users where email = 'locked@example.com' for update`,
    );
    const loggingIn = postJson(app, '/auth/login', { email: 'locked@example.com', password: PASSWORD });
    await waitForLockWait(url);
    await new Promise((resolve) => setTimeout(resolve, 150));
    await other.query('rollback');
    expect((await loggingIn).statusCode).toBe(200);

    const slow = logs.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => e.msg === 'slow query');
    // The login's session opens only once it holds the user's row (issue 33, item 1): that is where it waited.
    expect(slow.map((entry) => entry.operation)).toContain('users.select');
    const entry = slow.find((e) => e.operation === 'users.select');
    expect(entry?.sql).toMatch(/^select \* from "users" where "id" = \$1 for update$/);
    expect(entry?.parameters).toBe('[1 redacted]');
    expect(entry?.durationMs).toBeGreaterThanOrEqual(150);
    for (const value of ['locked@example.com', rows[0]?.id ?? 'id', rows[0]?.password_hash ?? 'hash', PASSWORD]) {
      expect(logs.text).not.toContain(value);
    }
  });

  test('with LOG_QUERIES=true logs every query at debug with operation and duration, never a parameter value', async ({
    onTestFinished,
  }) => {
    const { app, logs } = await instrumentedApp(onTestFinished, { env: { LOG_LEVEL: 'debug', LOG_QUERIES: 'true' } });
    const register = await postJson(app, '/auth/register', {
      email: 'verbose@example.com',
      password: PASSWORD,
      name: 'V',
    });
    expect(register.statusCode).toBe(201);
    await login(app, 'verbose@example.com');

    const queries = logs.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => e.msg === 'query');
    const operations = queries.map((entry) => entry.operation);
    expect(operations).toEqual(
      expect.arrayContaining(['users.insert', 'users.select', 'users.update', 'refresh_tokens.insert']),
    );
    for (const entry of queries) {
      expect(entry.level).toBe(20);
      expect(entry.durationMs).toEqual(expect.any(Number));
      expect(entry.parameters).toMatch(/^\[\d+ redacted\]$/);
    }
    expect(logs.text).not.toContain('verbose@example.com');
    expect(logs.text).not.toContain('$argon2id$');
    expect(logs.text).not.toContain(PASSWORD);
  });

  // Whether a query of this test crosses SLOW_QUERY_MS is up to the machine (CI under load once
  // took over 100 ms for one), so the test holds each slow-query line to the threshold rather than
  // assuming none: with LOG_QUERIES=false the only query lines are slow ones, and truly slow.
  test('logs no query when LOG_QUERIES is false, but one slower than SLOW_QUERY_MS', async ({ onTestFinished }) => {
    const { app, logs } = await instrumentedApp(onTestFinished, {
      env: { LOG_LEVEL: 'debug', LOG_QUERIES: 'false', SLOW_QUERY_MS: '100' },
    });
    await postJson(app, '/auth/register', { email: 'quiet@example.com', password: PASSWORD, name: 'Q' });
    await login(app, 'quiet@example.com');
    const entries = logs.lines.map((line) => JSON.parse(line) as { msg?: unknown; durationMs?: unknown });
    expect(entries.map((entry) => entry.msg)).not.toContain('query');
    for (const entry of entries.filter((e) => e.msg === 'slow query'))
      expect(entry.durationMs).toBeGreaterThanOrEqual(100);
  });
});

describe('label cardinality', () => {
  test('1,000 requests to 1,000 distinct unknown URLs add no series', async ({ onTestFinished }) => {
    const { app } = await instrumentedApp(onTestFinished);
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200);
    const before = await scrape(app);

    const methods = ['GET', 'POST', 'DELETE', 'PUT'] as const;
    for (let i = 0; i < 1000; i++) {
      const url =
        [`/no-such-page-${i}`, `/auth/nothing-${i}`, `/users/${randomUUID()}/extra-${i}`, `/x${i}/y?z=${i}`][i % 4] ??
        '/';
      const response = await app.inject({ method: methods[i % methods.length] ?? 'GET', url });
      expect(response.statusCode).toBe(404);
    }

    const after = await scrape(app);
    expect([...after.applicationSeries()].filter((series) => !before.applicationSeries().has(series))).toEqual([]);
    expect(after.value('http_request_duration_seconds_count')).toBe(
      before.value('http_request_duration_seconds_count'),
    );
    for (const marker of ['no-such-page', 'nothing-', 'extra-', '/x1']) expect(after.text).not.toContain(marker);
  });
});

describe('many apps in one process', () => {
  test('building 20 apps, 10 of them at once, never throws "already registered" and each app counts only its own requests', async ({
    db,
    onTestFinished,
  }) => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    onTestFinished(() => {
      process.off('warning', onWarning);
    });

    const apps: App[] = [];
    for (let i = 0; i < 10; i++) apps.push(await testApp(db, onTestFinished));
    apps.push(...(await Promise.all(Array.from({ length: 10 }, () => testApp(db, onTestFinished)))));

    const [first, second] = apps;
    if (first === undefined || second === undefined) throw new Error('no apps were built');
    for (let i = 0; i < 3; i++) expect((await first.inject({ url: '/health/live' })).statusCode).toBe(200);
    const live = { method: 'GET', route: '/health/live', status_code: '2xx' };
    expect((await scrape(first)).value('http_request_duration_seconds_count', live)).toBe(3);
    expect((await scrape(second)).value('http_request_duration_seconds_count', live)).toBeUndefined();
    expect(warnings.map((warning) => `${warning.name}: ${warning.message}`)).toEqual([]);
  });
});

describe('/metrics access', () => {
  const TOKEN = 'scrape-token-0123456789abcdef';

  test('with METRICS_TOKEN set, refuses a scrape without the bearer token with 401 in the error shape', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { METRICS_TOKEN: TOKEN } });

    for (const headers of [{}, bearer('wrong-token'), { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }]) {
      const response = await app.inject({ url: '/metrics', headers });
      expectUnauthorized(response);
      expect(response.body).not.toContain(TOKEN);
      expect(response.body).not.toContain('http_request_duration_seconds');
    }
    const metrics = await scrape(app, bearer(TOKEN));
    expect(metrics.families.has('auth_logins_total')).toBe(true);
  });

  test('without METRICS_TOKEN, anyone may scrape', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    expect((await scrape(app)).families.has('http_request_duration_seconds')).toBe(true);
  });

  test('is never rate limited, even where every auth limit is 1', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, {
      env: { METRICS_TOKEN: TOKEN, RATE_LIMIT_LOGIN: '1', RATE_LIMIT_REGISTER: '1', RATE_LIMIT_REFRESH: '1' },
    });
    const credentials = { email: 'nobody@example.com', password: PASSWORD };
    expectError(await postJson(app, '/auth/login', credentials), {
      statusCode: 401,
      type: 'AuthenticationError',
      code: 'INVALID_CREDENTIALS',
    });
    expectError(await postJson(app, '/auth/login', credentials), {
      statusCode: 429,
      type: 'RateLimitError',
      code: 'RATE_LIMITED',
    });

    for (let i = 0; i < 50; i++) {
      const response = await app.inject({ url: '/metrics', headers: bearer(TOKEN) });
      expect(response.statusCode).toBe(200);
      expect(response.headers['x-ratelimit-limit']).toBeUndefined();
    }
  });
});

function promtoolAvailable(): boolean {
  return spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
}
