import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { collectDatabaseStats } from '../../tools/db-admin/stats.ts';
import { createUser } from '../helpers/http.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const SUBJECT = 'stats-subject';

/** Three connections of the application `stats-subject`: one idle, one idle in a transaction, one running a query. */
async function subjectConnections(
  url: string,
  onTestFinished: (fn: () => Promise<void>) => void,
  secret: string,
): Promise<void> {
  const clients = Array.from({ length: 3 }, () => new pg.Client({ connectionString: url, application_name: SUBJECT }));
  const [idle, inTransaction, active] = clients;
  if (idle === undefined || inTransaction === undefined || active === undefined)
    throw new Error('three clients expected');
  await Promise.all(clients.map((client) => client.connect()));
  const { rows: pids } = await active.query<{ pid: number }>('select pg_backend_pid() as pid');
  const sleeping = active.query('select pg_sleep(30)').catch(() => undefined);
  onTestFinished(async () => {
    // The sleeping client is busy: it is cancelled from another one.
    await idle.query('select pg_cancel_backend($1)', [pids[0]?.pid]);
    await sleeping;
    await Promise.all(clients.map((client) => client.end()));
  });
  await idle.query('select 1');
  await inTransaction.query('begin');
  await inTransaction.query('select $1::text as secret', [secret]);

  // Until the sleep shows up as active, a snapshot could miss it.
  for (let i = 0; i < 100; i++) {
    const { rows } = await idle.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where application_name = $1 and state = 'active' and query like 'select pg_sleep%'`,
      [SUBJECT],
    );
    if ((rows[0]?.n ?? 0) > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // The polling itself left `idle` idle again, with its last statement the poll.
  await idle.query('select 1');
}

describe('collectDatabaseStats', () => {
  test("lists the application's connections by state with their statements (placeholders, not values), and not its own", async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const secret = `secret-${randomUUID()}`;
    await subjectConnections(url, onTestFinished, secret);

    const stats = await collectDatabaseStats(db, { applicationName: SUBJECT });

    expect(stats.application.applicationName).toBe(SUBJECT);
    expect(stats.application.byState).toEqual({ idle: 1, 'idle in transaction': 1, active: 1 });
    const [first] = stats.application.connections;
    expect(first).toMatchObject({ state: 'active', query: 'select pg_sleep(30)', waitEvent: 'Timeout:PgSleep' });
    expect(first?.stateMs).toBeGreaterThanOrEqual(0);
    const waiting = stats.application.connections.find((c) => c.state === 'idle in transaction');
    expect(waiting).toMatchObject({ query: 'select $1::text as secret', waitEvent: null });
    expect(waiting?.transactionMs).toBeGreaterThanOrEqual(0);
    expect(stats.application.connections.find((c) => c.state === 'idle')).toMatchObject({
      transactionMs: null,
      waitEvent: null,
    });
    expect(JSON.stringify(stats)).not.toContain(secret);

    const ownApplication = await collectDatabaseStats(db, { applicationName: 'vitest' });
    expect(ownApplication.application.connections).toEqual([]);
  });

  test('describes the server and the tables: size, estimated rows after ANALYZE, migrations applied', async ({
    onTestFinished,
  }) => {
    const { url, db, pool } = await isolatedDatabase(onTestFinished);
    for (let i = 0; i < 3; i++) await createUser(db);
    await pool.query('analyze users');

    const { server, tables } = await collectDatabaseStats(db, { applicationName: SUBJECT });

    expect(server.database).toBe(new URL(url).pathname.slice(1));
    expect(server.version).toMatch(/^\d+/);
    expect(server.databaseBytes).toBeGreaterThan(1024 * 1024);
    expect(server.maxConnections).toBeGreaterThan(0);
    expect(server.connections).toBeGreaterThanOrEqual(1);
    expect(server.connections).toBeLessThanOrEqual(server.maxConnections);
    expect(server.startedAt.getTime()).toBeLessThan(Date.now());
    expect(server.pendingMigrations).toEqual([]);

    const users = tables.find((table) => table.name === 'users');
    expect(users).toMatchObject({ rowEstimate: 3, deadRows: 0 });
    expect(users?.totalBytes).toBeGreaterThan(0);
    expect(users?.lastAnalyze).toBeInstanceOf(Date);
    expect(tables.map((table) => table.name)).toContain('refresh_tokens');
  });

  test('says why the slowest statements are unavailable unless pg_stat_statements is loaded, and lists them when it is', async ({
    onTestFinished,
  }) => {
    const { db, pool } = await isolatedDatabase(onTestFinished);
    const { rows } = await pool.query<{ preloaded: string }>(
      `select current_setting('shared_preload_libraries') as preloaded`,
    );
    const loaded = (rows[0]?.preloaded ?? '').includes('pg_stat_statements');

    const { statements } = await collectDatabaseStats(db, { applicationName: SUBJECT, statementLimit: 3 });

    if (loaded) {
      await pool.query('create extension if not exists pg_stat_statements');
      const withExtension = await collectDatabaseStats(db, { applicationName: SUBJECT, statementLimit: 3 });
      expect(withExtension.statements.available).toBe(true);
      if (withExtension.statements.available) expect(withExtension.statements.statements.length).toBeLessThanOrEqual(3);
    } else {
      expect(statements).toEqual({ available: false, reason: expect.stringContaining('shared_preload_libraries') });
    }
  });
});

describe('node tools/cli/db-stats.ts', () => {
  function runCli(url: string, args: string[] = []) {
    return execFileAsync(process.execPath, ['tools/cli/db-stats.ts', ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'test',
        DATABASE_URL: url,
        DB_APPLICATION_NAME: SUBJECT,
        DB_POOL_MAX: '7',
      },
      timeout: 30_000,
    });
  }

  test('prints the server, pool settings, application connections, statements and tables, without the password', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    await subjectConnections(url, onTestFinished, 'not-shown');

    const { stdout } = await runCli(url);

    expect(stdout).toMatch(/^Database postgres:\/\//);
    // server_version is e.g. `18.4` (embedded) or `15.20 (Debian 15.20-0+deb12u1)`.
    expect(stdout).toMatch(/PostgreSQL \d+[^,]*, up .+; migrations up to date/);
    expect(stdout).toContain('DB_POOL_MAX 7 · connection timeout 5000 ms');
    expect(stdout).toContain(`Connections of ${SUBJECT} (pg_stat_activity, every instance)`);
    expect(stdout).toContain('3 connection(s): 1 active, 1 idle in transaction, 1 idle');
    expect(stdout).toMatch(/^ {2}\d+ +active +[\d.]+ m?s +[\d.]+ m?s +Timeout:PgSleep .*select pg_sleep\(30\)$/m);
    expect(stdout).toMatch(/Slowest statements/);
    expect(stdout).toMatch(/^ {2}users +\d+ +\d+ +[\d.]+ [kMG]?B /m);
    expect(stdout).not.toContain('not-shown');
    const password = new URL(url).password;
    if (password !== '') expect(stdout).not.toContain(password);
  });

  test('prints the same figures as JSON with --json', async ({ onTestFinished }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const { stdout } = await runCli(url, ['--json', '--limit', '5']);
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(Object.keys(report).sort()).toEqual(['application', 'pool', 'server', 'statements', 'tables', 'url']);
    expect(report.pool).toMatchObject({ poolMax: 7, applicationName: SUBJECT });
  });

  test('refuses a bad --limit with the usage and exit code 2', async ({ onTestFinished }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const failure = await runCli(url, ['--limit', 'lots']).then(
      () => undefined,
      (error: unknown) => error as { code?: number; stderr?: string },
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain('Usage: npm run db:stats');
  });
});
