import { execFile } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Registry } from '@prometheus-io/client';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { DB } from '../../../db-types/index.ts';
import { PRUNE_RULES } from '../../../src/platform/jobs/prune.repository.ts';
import { MaintenanceMetrics } from '../../../src/platform/jobs/maintenance-metrics.ts';
import { MAINTENANCE_LOCK, MaintenanceJob } from '../../../src/platform/jobs/maintenance.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');
const DAY = 86_400_000;
const NOW = new Date('2026-12-01T12:00:00Z');
const GRACE_SECONDS = 7 * 86_400;

/** One user with refresh tokens in every state the job must tell apart, dated relative to `now`. */
async function seedTokens(db: Kysely<DB>, extraOldExpired = 0, now = NOW): Promise<void> {
  const daysAgo = (days: number) => new Date(now.getTime() - days * DAY);
  const { id: userId } = await db
    .insertInto('users')
    .values({ email: 'prune@example.com', name: 'Prune', password_hash: 'hash' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const token = (label: string, fields: { expires: Date; revoked?: Date; rotated?: Date }) => ({
    user_id: userId,
    family_id: userId,
    token_hash: label,
    expires_at: fields.expires,
    revoked_at: fields.revoked ?? null,
    rotated_at: fields.rotated ?? null,
  });
  await db
    .insertInto('refresh_tokens')
    .values([
      token('expired-long-ago', { expires: daysAgo(8) }),
      token('expired-within-grace', { expires: daysAgo(1) }),
      token('revoked-long-ago', { expires: daysAgo(-20), revoked: daysAgo(8) }),
      token('revoked-within-grace', { expires: daysAgo(-20), revoked: daysAgo(1) }),
      token('rotated-not-expired', { expires: daysAgo(-20), rotated: daysAgo(9) }),
      token('live', { expires: daysAgo(-30) }),
      ...Array.from({ length: extraOldExpired }, (_, i) => token(`expired-${i}`, { expires: daysAgo(10 + i) })),
    ])
    .execute();
}

async function remainingTokens(db: Kysely<DB>): Promise<string[]> {
  const rows = await db.selectFrom('refresh_tokens').select('token_hash').orderBy('token_hash').execute();
  return rows.map((row) => row.token_hash);
}

function job(db: Kysely<DB>, overrides: Partial<ConstructorParameters<typeof MaintenanceJob>[0]> = {}) {
  return new MaintenanceJob({
    db,
    policy: { refreshTokenGraceSeconds: GRACE_SECONDS, auditRetentionDays: 365, emailOutboxRetentionDays: 30 },
    batchSize: 1000,
    pauseMs: 0,
    now: () => NOW,
    ...overrides,
  });
}

const KEPT = ['expired-within-grace', 'live', 'revoked-within-grace', 'rotated-not-expired'];

describe('the maintenance job', () => {
  test('deletes expired and revoked refresh tokens past the grace period and keeps every other token', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db);

    const report = await job(db).runOnce();

    expect(report).toMatchObject({
      outcome: 'ok',
      pruned: { 'refresh_tokens.expired': 1, 'refresh_tokens.revoked': 1 },
    });
    expect(await remainingTokens(db)).toEqual(KEPT);
    // Nothing left to do: a second run deletes nothing.
    expect(await job(db).runOnce()).toMatchObject({
      pruned: { 'refresh_tokens.expired': 0, 'refresh_tokens.revoked': 0 },
    });
  });

  test('deletes in batches of MAINTENANCE_BATCH_SIZE with a pause between them, and counts rows per table and rule', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db, 6);
    const registry = new Registry();
    const metrics = new MaintenanceMetrics(registry);

    const rules = PRUNE_RULES.filter((rule) => rule.table === 'refresh_tokens');
    const report = await job(db, { batchSize: 3, pauseMs: 60, metrics, rules }).runOnce();

    // 7 expired rows: batches of 3, 3, 1; then 1 revoked row: one batch. Two full batches, two pauses.
    expect(report).toMatchObject({
      outcome: 'ok',
      pruned: { 'refresh_tokens.expired': 7, 'refresh_tokens.revoked': 1 },
      batches: 4,
    });
    expect(report.outcome === 'skipped' ? 0 : report.durationMs).toBeGreaterThanOrEqual(2 * 60);
    expect(await remainingTokens(db)).toEqual(KEPT);

    const text = await registry.metrics();
    expect(text).toContain('maintenance_pruned_rows_total{table="refresh_tokens",rule="refresh_tokens.expired"} 7');
    expect(text).toContain('maintenance_pruned_rows_total{table="refresh_tokens",rule="refresh_tokens.revoked"} 1');
    expect(text).toContain('maintenance_runs_total{outcome="ok"} 1');
    const lastRun = Number(/^maintenance_last_run_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
    expect(Math.abs(lastRun - Date.now() / 1000)).toBeLessThan(60);
    const duration = Number(/^maintenance_last_run_duration_seconds (\S+)$/m.exec(text)?.[1]);
    expect(duration).toBeGreaterThanOrEqual(0.12);
  });

  test('pauses in proportion to how long a batch took, so it spends at most MAINTENANCE_MAX_BUSY_PERCENT of a run deleting', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db, 6);
    const rules = PRUNE_RULES.filter((rule) => rule.name === 'refresh_tokens.expired');
    // Each batch "takes" 20 ms by this clock (it is read once before and once after a batch), the
    // third 200 ms: a slow batch buys a long pause.
    const durations = [20, 20, 200];
    let reads = 0;
    let time = 0;
    const clock = () => {
      if (reads++ % 2 === 1) time += durations[(reads >> 1) - 1] ?? 0;
      return time;
    };
    const pauses: number[] = [];
    const sleep = (ms: number) => {
      pauses.push(ms);
      return Promise.resolve();
    };

    // 7 expired rows in batches of 2: four batches, the last one short, so three pauses.
    const busy10 = await job(db, { batchSize: 2, pauseMs: 50, maxBusyPercent: 10, clock, sleep, rules }).runOnce();
    expect(busy10).toMatchObject({ outcome: 'ok', pruned: { 'refresh_tokens.expired': 7 }, batches: 4 });
    // 20 ms busy at 10% means at least 180 ms idle; the pause is never below MAINTENANCE_PAUSE_MS.
    expect(pauses.map(Math.round)).toEqual([180, 180, 1800]);

    const other = await isolatedDatabase(onTestFinished);
    await seedTokens(other.db, 6);
    pauses.length = 0;
    reads = 0;
    await job(other.db, { batchSize: 2, pauseMs: 50, maxBusyPercent: 100, clock, sleep, rules }).runOnce();
    expect(pauses).toEqual([50, 50, 50]);
  });

  test('runs in one instance at a time: while another session holds the lock it skips and deletes nothing', async ({
    onTestFinished,
  }) => {
    const { db, url } = await isolatedDatabase(onTestFinished);
    await seedTokens(db);
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    onTestFinished(async () => {
      await other.end();
    });
    await other.query('select pg_advisory_lock(hashtextextended($1, 0))', [MAINTENANCE_LOCK]);
    const registry = new Registry();
    const metrics = new MaintenanceMetrics(registry);

    await expect(job(db, { metrics }).runOnce()).resolves.toEqual({ outcome: 'skipped' });
    expect(await remainingTokens(db)).toHaveLength(KEPT.length + 2);
    expect(await registry.metrics()).toContain('maintenance_runs_total{outcome="skipped"} 1');

    await other.query('select pg_advisory_unlock(hashtextextended($1, 0))', [MAINTENANCE_LOCK]);
    await expect(job(db).runOnce()).resolves.toMatchObject({ outcome: 'ok' });
    expect(await remainingTokens(db)).toEqual(KEPT);
  });

  test('two jobs started at once: exactly one prunes, the other skips', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db, 20);
    // Small batches with pauses keep the first run (and its lock) alive while the second asks.
    const reports = await Promise.all([
      job(db, { batchSize: 2, pauseMs: 20 }).runOnce(),
      job(db, { batchSize: 2, pauseMs: 20 }).runOnce(),
    ]);
    expect(reports.map((report) => report.outcome).sort()).toEqual(['ok', 'skipped']);
    expect(await remainingTokens(db)).toEqual(KEPT);
  });

  test('start() runs on its schedule until stop(), which waits for the run in progress', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db);
    const registry = new Registry();
    const maintenance = job(db, { intervalMs: 50, metrics: new MaintenanceMetrics(registry) });
    onTestFinished(() => maintenance.stop());

    maintenance.start(0);
    const runs = async () =>
      Number(/^maintenance_runs_total\{outcome="ok"\} (\S+)$/m.exec(await registry.metrics())?.[1]);
    const deadline = Date.now() + 10_000;
    while ((await runs()) < 3 && Date.now() < deadline) await sleep(20);
    expect(await runs()).toBeGreaterThanOrEqual(3);
    await maintenance.stop();
    const stoppedAt = await runs();
    await sleep(200);
    expect(await runs()).toBe(stoppedAt);
    expect(await remainingTokens(db)).toEqual(KEPT);
  });

  test('stop() cuts a long pause short: shutdown does not wait for the throttle', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db, 6);
    // After the first batch the job pauses a minute.
    const maintenance = job(db, { batchSize: 2, pauseMs: 60_000, intervalMs: 60_000 });
    maintenance.start(0);
    const deadline = Date.now() + 10_000;
    while ((await remainingTokens(db)).length > KEPT.length + 6 && Date.now() < deadline) await sleep(20);
    expect((await remainingTokens(db)).length).toBe(KEPT.length + 6);
    const started = performance.now();
    await maintenance.stop();
    expect(performance.now() - started).toBeLessThan(5_000);
    expect((await remainingTokens(db)).length).toBe(KEPT.length + 6);
  });

  test('stop() ends a long run after its current batch, leaving the rest for the next run', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    await seedTokens(db, 30);
    const maintenance = job(db, { batchSize: 1, pauseMs: 30, intervalMs: 60_000 });
    maintenance.start(0);
    await sleep(150);
    await maintenance.stop();
    const left = (await remainingTokens(db)).length;
    // Some batches ran, not all 32 rows were deleted.
    expect(left).toBeGreaterThan(KEPT.length);
    expect(left).toBeLessThan(KEPT.length + 32);
    await expect(job(db).runOnce()).resolves.toMatchObject({ outcome: 'ok' });
    expect(await remainingTokens(db)).toEqual(KEPT);
  });

  test('deletes sessions that expired or ended past the grace period, and audit events past AUDIT_RETENTION_DAYS', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const daysAgo = (days: number) => new Date(NOW.getTime() - days * DAY);
    const { id: userId } = await db
      .insertInto('users')
      .values({ email: 'sessions@example.com', name: 'Sessions', password_hash: 'hash' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const session = (label: number, fields: { expires: Date; ended?: Date }) => ({
      id: `00000000-0000-4000-8000-00000000000${label}`,
      user_id: userId,
      expires_at: fields.expires,
      ended_at: fields.ended ?? null,
      end_reason: fields.ended === undefined ? null : ('logout' as const),
    });
    await db
      .insertInto('sessions')
      .values([
        session(1, { expires: daysAgo(8) }),
        session(2, { expires: daysAgo(1) }),
        session(3, { expires: daysAgo(-20), ended: daysAgo(8) }),
        session(4, { expires: daysAgo(-20), ended: daysAgo(1) }),
        session(5, { expires: daysAgo(-20) }),
      ])
      .execute();
    await db
      .insertInto('audit_events')
      .values([
        { type: 'login.succeeded', user_id: userId, occurred_at: daysAgo(366) },
        { type: 'login.failed', user_id: userId, occurred_at: daysAgo(364) },
      ])
      .execute();

    const report = await job(db, {
      policy: { refreshTokenGraceSeconds: GRACE_SECONDS, auditRetentionDays: 365, emailOutboxRetentionDays: 30 },
    }).runOnce();

    expect(report).toMatchObject({
      outcome: 'ok',
      pruned: { 'sessions.expired': 1, 'sessions.ended': 1, 'audit_events.expired': 1 },
    });
    const sessions = await db.selectFrom('sessions').select('id').orderBy('id').execute();
    expect(sessions.map((row) => row.id.at(-1))).toEqual(['2', '4', '5']);
    const events = await db.selectFrom('audit_events').select('type').execute();
    expect(events).toEqual([{ type: 'login.failed' }]);
  });

  test('deletes account tokens past their expiry and the grace period, and outbox messages that are done past EMAIL_OUTBOX_RETENTION_DAYS', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const daysAgo = (days: number) => new Date(NOW.getTime() - days * DAY);
    const { id: userId } = await db
      .insertInto('users')
      .values({ email: 'links@example.com', name: 'Links', password_hash: 'hash' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const token = (label: string, expires: Date, used?: Date) => ({
      user_id: userId,
      purpose: 'password_reset' as const,
      token_hash: label,
      expires_at: expires,
      used_at: used ?? null,
    });
    await db
      .insertInto('account_tokens')
      .values([
        token('expired-long-ago', daysAgo(8)),
        token('used-and-expired-long-ago', daysAgo(9), daysAgo(9)),
        token('expired-within-grace', daysAgo(1)),
        token('used-not-expired', daysAgo(-1), daysAgo(0)),
        token('live', daysAgo(-1)),
      ])
      .execute();
    const message = (
      recipient: string,
      state: 'pending' | 'sending' | 'sent' | 'skipped' | 'failed',
      created: Date,
    ) => ({
      user_id: userId,
      recipient,
      template: 'password_reset',
      data: state === 'pending' ? { token: 't' } : null,
      state,
      created_at: created,
    });
    await db
      .insertInto('email_outbox')
      .values([
        message('sent-old@example.com', 'sent', daysAgo(31)),
        message('skipped-old@example.com', 'skipped', daysAgo(40)),
        message('failed-old@example.com', 'failed', daysAgo(60)),
        message('sent-recent@example.com', 'sent', daysAgo(29)),
        // Never pruned, however old: a message not yet delivered is still owed to its recipient.
        message('pending-old@example.com', 'pending', daysAgo(90)),
        message('sending-old@example.com', 'sending', daysAgo(90)),
      ])
      .execute();

    const report = await job(db).runOnce();

    expect(report).toMatchObject({ outcome: 'ok', pruned: { 'account_tokens.expired': 2, 'email_outbox.done': 3 } });
    const tokens = await db.selectFrom('account_tokens').select('token_hash').orderBy('token_hash').execute();
    expect(tokens.map((row) => row.token_hash)).toEqual(['expired-within-grace', 'live', 'used-not-expired']);
    const messages = await db.selectFrom('email_outbox').select('recipient').orderBy('recipient').execute();
    expect(messages.map((row) => row.recipient)).toEqual([
      'pending-old@example.com',
      'sending-old@example.com',
      'sent-recent@example.com',
    ]);
  });

  test('has a rule per kind of row, each naming a table of the schema', async ({ onTestFinished }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const { rows } = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public'`.execute(db);
    const tables = new Set(rows.map((row) => row.table_name));
    expect(PRUNE_RULES.map((rule) => rule.name)).toEqual([
      'refresh_tokens.expired',
      'refresh_tokens.revoked',
      'sessions.expired',
      'sessions.ended',
      'audit_events.expired',
      'account_tokens.expired',
      'email_changes.expired',
      'oauth_flows.expired',
      'oauth_exchange_codes.expired',
      'email_outbox.done',
    ]);
    for (const rule of PRUNE_RULES) expect(tables, rule.name).toContain(rule.table);
  });
});

describe('npm run db:prune', () => {
  test('runs the job once against DATABASE_URL and reports what it deleted', async ({ onTestFinished }) => {
    const { db, url } = await isolatedDatabase(onTestFinished);
    // The command runs on the real clock; with a grace of one hour the ones that expired or were
    // revoked a day ago go too.
    await seedTokens(db, 0, new Date());
    const { stdout } = await execFileAsync(process.execPath, ['tools/cli/db-prune.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, NODE_ENV: 'test', DATABASE_URL: url, REFRESH_TOKEN_GRACE_SECONDS: '3600' },
      timeout: 30_000,
    });
    expect(stdout).toMatch(/^Pruned postgres:\/\/.+ in \d+ ms \(\d+ batch\(es\)\)$/m);
    expect(stdout).toContain('refresh_tokens.expired: 2 row(s) deleted');
    expect(stdout).toContain('refresh_tokens.revoked: 2 row(s) deleted');
    expect(await remainingTokens(db)).toEqual(['live', 'rotated-not-expired']);
  });
});
