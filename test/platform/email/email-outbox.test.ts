import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { App } from '../../../src/app.ts';
import { createDatabase } from '../../../src/platform/db/database.ts';
import { EmailOutboxRepository } from '../../../src/platform/email/email-outbox.repository.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import type { DispatcherEvents } from '../../../src/platform/email/dispatcher.ts';
import { describe, expect, TEST_POOL, test } from '../../helpers/database.ts';
import { parseExposition } from '../metrics/prometheus-text.ts';
import { startMailingApp } from '../../helpers/email.ts';
import { PASSWORD, postJson } from '../../helpers/http.ts';

// The outbox's delivery guarantees, on a committed database and a real SMTP server: several
// dispatchers never send one message twice, a claim whose dispatcher died is taken over after
// its lease, attempts are bounded, shutdown hands back what it had not started, and only a
// committed registration ever sends anything.

async function register(app: App, email: string): Promise<void> {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Outbox Olga' });
  expect(response.statusCode, response.body).toBe(201);
}

/** Counts what one dispatcher did. */
function counting(): { events: DispatcherEvents; sent: () => number; released: () => number } {
  let sent = 0;
  let released = 0;
  return {
    events: {
      onSent: () => {
        sent++;
      },
      onReleased: () => {
        released++;
      },
    },
    sent: () => sent,
    released: () => released,
  };
}

function metricValue(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = parseExposition(body).get(name);
  return family?.samples.find((sample) => Object.entries(labels).every(([k, v]) => sample.labels[k] === v))?.value;
}

describe('the email outbox', () => {
  test('two dispatchers on two pools deliver every message exactly once, each claimed once', async ({
    onTestFinished,
  }) => {
    const { app, smtp, database, dispatcher, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      env: { RATE_LIMIT_REGISTER: '1000' },
    });
    const MESSAGES = 30;
    const addresses = Array.from({ length: MESSAGES }, (_, i) => `reader-${i}@example.com`);
    for (const address of addresses) await register(app, address);
    expect(smtp.received).toEqual([]);

    // The second instance: connections of its own to the same committed database.
    const otherDb = createDatabase({ ...TEST_POOL, url: database.url });
    onTestFinished(async () => {
      await otherDb.destroy();
    });
    // Small batches, so the two take turns over many claims rather than one taking everything.
    const env = { EMAIL_BATCH_SIZE: '3' };
    const first = counting();
    const second = counting();
    const a = dispatcher({ events: first.events, instanceId: 'instance-a', env });
    const b = dispatcher({ events: second.events, instanceId: 'instance-b', db: otherDb, env });
    a.start();
    b.start();

    await smtp.waitForMessages(MESSAGES, 20_000);
    await expect
      .poll(async () => (await outbox()).filter((row) => row.state === 'sent').length, { timeout: 5000 })
      .toBe(MESSAGES);
    // Long enough for a duplicate to show up: both keep polling every 50 ms.
    await sleep(500);

    expect(smtp.received).toHaveLength(MESSAGES);
    expect(smtp.received.map((email) => email.to).sort()).toEqual(addresses.map((address) => [address]).sort());
    // A claim counts an attempt: one each means no message was ever claimed twice.
    expect((await outbox()).map((row) => row.attempts)).toEqual(addresses.map(() => 1));
    expect(first.sent() + second.sent()).toBe(MESSAGES);
    expect(first.sent()).toBeGreaterThan(0);
    expect(second.sent()).toBeGreaterThan(0);
  });

  test('a message claimed by a dispatcher that died is sent by another once the lease runs out, once', async ({
    onTestFinished,
  }) => {
    const LEASE_MS = 1000;
    const { app, smtp, database, dispatcher, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      env: { EMAIL_CLAIM_LEASE_MS: String(LEASE_MS), EMAIL_SEND_TIMEOUT_MS: '500' },
    });
    await register(app, 'orphan@example.com');

    // What a crash right after the claim leaves behind: the claim statement a dispatcher runs
    // committed, and its process is gone before it sends or records anything.
    const crashed = new EmailOutboxRepository(database.db);
    const claimedAt = new Date();
    const [orphan] = await crashed.claimDue({ limit: 10, now: claimedAt, leaseMs: LEASE_MS, claimedBy: 'crashed:1' });
    expect(orphan).toBeDefined();

    const survivor = dispatcher({ instanceId: 'survivor:2' });
    survivor.start();
    await sleep(LEASE_MS / 2);
    // Within the lease the claim is respected: the crashed instance might still be sending.
    expect(smtp.received).toEqual([]);
    expect((await outbox())[0]).toMatchObject({ state: 'sending', claimed_by: 'crashed:1', attempts: 1 });

    const [email] = await smtp.waitForMessages(1, 10_000);
    expect(Date.now() - claimedAt.getTime()).toBeGreaterThanOrEqual(LEASE_MS);
    expect(email?.to).toEqual(['orphan@example.com']);
    await expect.poll(async () => (await outbox())[0]?.state, { timeout: 5000 }).toBe('sent');
    const [row] = await outbox();
    expect(row).toMatchObject({ attempts: 2, claimed_by: null, data: null });

    // The crashed instance's outcome, should it ever record one, no longer counts: the claim is gone.
    expect(await crashed.markSent(orphan?.id ?? '', 'crashed:1', new Date())).toBe(false);
    expect(await crashed.scheduleRetry(orphan?.id ?? '', 'crashed:1', new Date(), 'late')).toBe(false);
    expect(await crashed.markFailed(orphan?.id ?? '', 'crashed:1', 'late')).toBe(false);
    expect(await crashed.release(orphan?.id ?? '', 'crashed:1', new Date())).toBe(false);
    expect((await outbox())[0]).toEqual(row);
    await sleep(300);
    expect(smtp.received).toHaveLength(1);
  });

  test('an SMTP server that keeps refusing: attempts back off exponentially with jitter, then the message fails once, counted and logged', async ({
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const { app, smtp, dispatcher, outbox, log } = await startMailingApp(onTestFinished, { dispatch: false });
    await register(app, 'unlucky@example.com');
    smtp.mode = 'reject';

    // Passes run by hand on a clock the test moves: the backoff is read off the rows exactly.
    let now = new Date();
    const MAX_ATTEMPTS = 4;
    const BASE_MS = 1000;
    const CAP_MS = 3000;
    const worker = dispatcher({
      events: metrics.dispatcherEvents,
      clock: () => now,
      env: {
        EMAIL_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
        EMAIL_RETRY_BASE_MS: String(BASE_MS),
        EMAIL_RETRY_MAX_MS: String(CAP_MS),
      },
    });
    const [queued] = await outbox();
    const token = queued?.data === null ? undefined : (queued?.data as Record<string, string> | undefined)?.token;
    expect(token).toEqual(expect.any(String));

    const delays: number[] = [];
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const [before] = await outbox();
      const due = before?.next_attempt_at ?? now;
      if (attempt > 1) {
        now = new Date(due.getTime() - 1);
        expect(await worker.runOnce(), `attempt ${attempt} is not due before its time`).toBe(0);
      }
      now = new Date(Math.max(due.getTime(), now.getTime()));
      expect(await worker.runOnce(), `attempt ${attempt}`).toBe(1);
      expect(smtp.faults).toBe(attempt);
      const [after] = await outbox();
      expect(after?.attempts).toBe(attempt);
      expect(after?.last_error).toContain('554');
      if (attempt < MAX_ATTEMPTS) {
        expect(after).toMatchObject({ state: 'pending', claimed_by: null });
        const delay = (after?.next_attempt_at.getTime() ?? 0) - now.getTime();
        const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** (attempt - 1));
        expect(delay, `the wait after attempt ${attempt}`).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay, `the wait after attempt ${attempt}`).toBeLessThanOrEqual(ceiling);
        delays.push(delay);
      } else {
        expect(after).toMatchObject({ state: 'failed', data: null, claimed_by: null });
      }
    }
    expect(delays).toHaveLength(MAX_ATTEMPTS - 1);

    const counter = async (name: 'emailsFailed' | 'emailRetries') =>
      (await metrics[name].get()).values.find((v) => v.labels.template === 'email_verification')?.value;
    expect(await counter('emailsFailed')).toBe(1);
    expect(await counter('emailRetries')).toBe(MAX_ATTEMPTS - 1);

    const givenUp = log.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === 'email given up after its last attempt');
    expect(givenUp).toHaveLength(1);
    expect(givenUp[0]).toMatchObject({
      level: 40,
      messageId: queued?.id,
      template: 'email_verification',
      attempts: MAX_ATTEMPTS,
      reason: expect.stringContaining('554'),
    });
    expect(log.text).not.toContain(token);
    expect(log.text).not.toContain('unlucky@example.com');

    // Failed is final: a healthy server a day later gets nothing.
    smtp.mode = 'accept';
    now = new Date(now.getTime() + 86_400_000);
    expect(await worker.runOnce()).toBe(0);
    expect(smtp.received).toEqual([]);
  });

  test('stopping releases a message claimed but not yet handed to SMTP; another dispatcher sends it at once', async ({
    onTestFinished,
  }) => {
    const { app, smtp, dispatcher, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      // A lease far longer than the test: the message can only come back by being released.
      env: { EMAIL_CLAIM_LEASE_MS: '600000' },
    });
    await register(app, 'handed-back@example.com');

    let entered!: () => void;
    const composing = new Promise<void>((resolve) => (entered = resolve));
    let proceed!: () => void;
    const gate = new Promise<void>((resolve) => (proceed = resolve));
    const stopping = counting();
    const first = dispatcher({
      instanceId: 'stopping:1',
      events: stopping.events,
      compose: async (message, real) => {
        entered();
        await gate;
        return real(message);
      },
    });
    first.start();
    await composing;
    expect((await outbox())[0]).toMatchObject({ state: 'sending', claimed_by: 'stopping:1', attempts: 1 });

    const stopped = first.stop();
    proceed();
    await stopped;
    expect(stopping.released()).toBe(1);
    expect(stopping.sent()).toBe(0);
    expect(smtp.received).toEqual([]);
    const [released] = await outbox();
    // Due at once, and the attempt that never happened is not counted.
    expect(released).toMatchObject({ state: 'pending', claimed_by: null, claimed_at: null, attempts: 0 });
    expect(released?.next_attempt_at.getTime()).toBeLessThanOrEqual(Date.now());

    const next = counting();
    dispatcher({ instanceId: 'next:2', events: next.events }).start();
    await smtp.waitForMessages(1, 3000);
    await expect.poll(async () => (await outbox())[0]?.state, { timeout: 5000 }).toBe('sent');
    expect((await outbox())[0]?.attempts).toBe(1);
    await sleep(300);
    expect(smtp.to('handed-back@example.com')).toHaveLength(1);
  });

  test('stopping lets a send already in the SMTP conversation finish and records it', async ({ onTestFinished }) => {
    const { app, smtp, dispatcher, outbox } = await startMailingApp(onTestFinished, { dispatch: false });
    await register(app, 'in-flight@example.com');
    smtp.acceptDelayMs = 400;

    const worker = dispatcher();
    worker.start();
    await expect.poll(() => smtp.dataStarted, { timeout: 5000 }).toBe(1);
    const started = performance.now();
    await worker.stop();
    // It waited for the server's answer rather than abandoning the conversation.
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
    expect(smtp.to('in-flight@example.com')).toHaveLength(1);
    expect((await outbox())[0]).toMatchObject({ state: 'sent', attempts: 1, data: null });
  });

  test('a registration whose transaction rolls back queues nothing and sends nothing', async ({ onTestFinished }) => {
    const { app, smtp, database, outbox } = await startMailingApp(onTestFinished);
    // Fails the registration's transaction at COMMIT, after the user, its token and its outbox
    // row were all written: the last moment anything could go wrong.
    await sql`
      create function refuse_doomed() returns trigger language plpgsql as $$
      begin
        if new.recipient = 'doomed@example.com' then raise exception 'refused at commit'; end if;
        return null;
      end $$`.execute(database.db);
    await sql`
      create constraint trigger refuse_doomed after insert on email_outbox
      deferrable initially deferred for each row execute function refuse_doomed()`.execute(database.db);

    const response = await postJson(app, '/auth/register', {
      email: 'doomed@example.com',
      password: PASSWORD,
      name: 'Doomed',
    });
    expect(response.statusCode, response.body).toBe(500);
    expect(response.json()).toMatchObject({ error: { code: 'INTERNAL', statusCode: 500 } });

    const count = async (table: 'users' | 'account_tokens' | 'email_outbox') =>
      Number(
        (
          await database.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    expect(await count('users')).toBe(0);
    expect(await count('account_tokens')).toBe(0);
    expect(await outbox()).toEqual([]);
    // The dispatcher runs (polling every 50 ms) and finds nothing to send.
    await sleep(400);
    expect(smtp.received).toEqual([]);

    // The same address, committed this time: exactly one email.
    await sql`drop trigger refuse_doomed on email_outbox`.execute(database.db);
    await register(app, 'doomed@example.com');
    await smtp.waitForMessages(1);
    await sleep(300);
    expect(smtp.to('doomed@example.com')).toHaveLength(1);
    expect(await outbox()).toHaveLength(1);
  });

  test('GET /metrics shows the outbox depth and the age of its oldest message, back to 0 once sent', async ({
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, {
      metrics,
      env: { EMAIL_RETRY_BASE_MS: '300', EMAIL_RETRY_MAX_MS: '300' },
    });
    smtp.mode = 'reject';
    await register(app, 'waiting@example.com');
    await register(app, 'also-waiting@example.com');
    await expect.poll(() => smtp.faults, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
    await sleep(250);

    const scrape = async () => (await app.inject({ url: '/metrics' })).body;
    const waiting = await scrape();
    expect(metricValue(waiting, 'email_outbox_depth')).toBe(2);
    const [oldest] = await outbox();
    const age = metricValue(waiting, 'email_outbox_oldest_pending_age_seconds') ?? -1;
    expect(age).toBeGreaterThan(0.2);
    expect(age).toBeLessThanOrEqual((Date.now() - (oldest?.created_at.getTime() ?? 0)) / 1000 + 0.01);
    expect(metricValue(waiting, 'email_send_retries_total', { template: 'email_verification' })).toBeGreaterThan(0);

    smtp.mode = 'accept';
    await smtp.waitForMessages(2);
    await expect.poll(async () => metricValue(await scrape(), 'email_outbox_depth'), { timeout: 5000 }).toBe(0);
    const done = await scrape();
    expect(metricValue(done, 'email_outbox_oldest_pending_age_seconds')).toBe(0);
    expect(metricValue(done, 'email_sent_total', { template: 'email_verification' })).toBe(2);
    expect(metricValue(done, 'email_failed_total', { template: 'email_verification' })).toBe(0);
  });
});
