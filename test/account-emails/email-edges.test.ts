import { randomBytes } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.ts';
import { EmailComposer } from '../../src/platform/email/outbox.ts';
import { emailTransportFor } from '../../src/platform/email/transports.ts';
import { AppMetrics } from '../../src/platform/metrics/metrics.ts';
import { OutboxDispatcher } from '../../src/platform/email/dispatcher.ts';
import { LogCapture, testApp, testConfig } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { tokenFromLink } from '../helpers/smtp.ts';
import { startMailingApp } from '../helpers/email.ts';
import { bearer, expectError, PASSWORD, postJson, type LoginJson, type UserJson } from '../helpers/http.ts';

// The rest of issue 17's rules: every email route is rate-limited per client address (and per
// account where there is one), SMTP_REQUIRE_TLS is honoured, the log transport shows the link,
// and a reset request for an unknown address is the same request as for a known one.

async function post(
  app: App,
  url: string,
  body: unknown,
  from: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    remoteAddress: from,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

function expectRateLimited(response: LightMyRequestResponse): void {
  expectError(response, { statusCode: 429, type: 'RateLimitError', code: 'RATE_LIMITED' });
  expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
}

async function register(app: App, email: string): Promise<UserJson> {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Edge' });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<{ user: UserJson }>().user;
}

const LIMIT = 3;
const unknownToken = () => randomBytes(32).toString('base64url');

describe('rate limits of the email routes (RATE_LIMIT_EMAIL per window)', () => {
  test.for([
    { route: '/auth/email/verify', body: () => ({ token: unknownToken() }), status: 400 },
    {
      route: '/auth/password/reset',
      body: () => ({ token: unknownToken(), newPassword: 'a new passphrase' }),
      status: 400,
    },
    {
      route: '/auth/password/forgot',
      body: () => ({ email: `${randomBytes(4).toString('hex')}@example.com` }),
      status: 202,
    },
  ])('$route: per client address', async ({ route, body, status }, { onTestFinished }) => {
    const metrics = new AppMetrics();
    const { app } = await startMailingApp(onTestFinished, {
      dispatch: false,
      metrics,
      env: { RATE_LIMIT_EMAIL: String(LIMIT) },
    });
    for (let i = 0; i < LIMIT; i++) expect((await post(app, route, body(), '10.1.0.1')).statusCode).toBe(status);
    expectRateLimited(await post(app, route, body(), '10.1.0.1'));
    // Another address has its own allowance.
    expect((await post(app, route, body(), '10.1.0.2')).statusCode).toBe(status);
    const limited = (await metrics.rateLimited.get()).values.filter((v) => v.value > 0).map((v) => v.labels.limiter);
    expect(limited).toHaveLength(1);
    expect(String(limited[0])).toMatch(/-ip$/);
  });

  test('/auth/password/forgot: per address asked for, whichever client asks, past which requests are answered 202 and send nothing', async ({
    onTestFinished,
  }) => {
    const { app, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      env: { RATE_LIMIT_EMAIL: String(LIMIT) },
    });
    await register(app, 'victim@example.com');
    for (let i = 0; i < LIMIT; i++) {
      expect(
        (await post(app, '/auth/password/forgot', { email: 'victim@example.com' }, `10.2.0.${i}`)).statusCode,
      ).toBe(202);
    }
    // Spelled differently, it is the same address: answered like any other (a 429 would let a
    // flood refuse the owner's own request), but nothing more is queued.
    expect((await post(app, '/auth/password/forgot', { email: ' VICTIM@example.com' }, '10.2.1.1')).statusCode).toBe(
      202,
    );
    expect((await post(app, '/auth/password/forgot', { email: 'other@example.com' }, '10.2.1.1')).statusCode).toBe(202);
    // The dropped request queued nothing: a flood cannot fill a mailbox.
    const resets = (await outbox()).filter((row) => row.template === 'password_reset');
    expect(resets.map((row) => row.recipient)).toEqual(Array.from({ length: LIMIT }, () => 'victim@example.com'));
  });

  test('/auth/email/verification: per account, whichever client asks, and per client address', async ({
    onTestFinished,
  }) => {
    const { app, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      env: { RATE_LIMIT_EMAIL: String(LIMIT) },
    });
    const sessions: LoginJson[] = [];
    for (const email of ['one@example.com', 'two@example.com']) {
      await register(app, email);
      sessions.push((await postJson(app, '/auth/login', { email, password: PASSWORD })).json<LoginJson>());
    }
    const [one, two] = sessions.map((session) => bearer(session.accessToken));
    for (let i = 0; i < LIMIT; i++) {
      expect((await post(app, '/auth/email/verification', undefined, `10.3.0.${i}`, one)).statusCode).toBe(202);
    }
    expectRateLimited(await post(app, '/auth/email/verification', undefined, '10.3.1.1', one));
    expect((await post(app, '/auth/email/verification', undefined, '10.3.1.1', two)).statusCode).toBe(202);
    expect((await outbox()).filter((row) => row.recipient === 'one@example.com')).toHaveLength(1 + LIMIT);

    // Per address: 10.3.1.1 has asked twice (the refused request counts too); one more, then no.
    for (let i = 2; i < LIMIT; i++) {
      expect((await post(app, '/auth/email/verification', undefined, '10.3.1.1', two)).statusCode).toBe(202);
    }
    expectRateLimited(await post(app, '/auth/email/verification', undefined, '10.3.1.1', two));
  });
});

describe('SMTP settings', () => {
  test('SMTP_REQUIRE_TLS: a server that offers no STARTTLS gets nothing; the attempts fail and are retried', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, { env: { SMTP_REQUIRE_TLS: 'true' } });
    await register(app, 'secret@example.com');
    await expect.poll(async () => (await outbox())[0]?.attempts ?? 0, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    const [row] = await outbox();
    expect(row?.state).not.toBe('sent');
    expect(row?.last_error).toMatch(/TLS/i);
    expect(smtp.received).toEqual([]);
  });
});

describe('the log transport', () => {
  test('without SMTP_URL the link is in the log at info, and following it verifies the address', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const env = { LOG_LEVEL: 'info', EMAIL_POLL_INTERVAL_MS: '50', APP_URL: 'http://localhost:5173' };
    const config = testConfig(env);
    expect(config.email.transport).toBe('log');
    const log = new LogCapture();
    const holder: { dispatcher?: OutboxDispatcher } = {};
    const app = await testApp(database.db, onTestFinished, {
      env,
      logStream: log,
      onEmailQueued: () => holder.dispatcher?.wake(),
    });
    // As src/lifecycle.ts builds it for a server without SMTP_URL.
    const transport = emailTransportFor(config.email, app.log, config.email.dispatcher.sendTimeoutMs);
    if (transport === undefined) throw new Error('no transport');
    const composer = new EmailComposer({ db: database.db, settings: config.email, clock: () => new Date() });
    holder.dispatcher = new OutboxDispatcher({
      db: database.db,
      transport,
      compose: (message) => composer.compose(message),
      config: config.email.dispatcher,
      log: app.log,
    });
    holder.dispatcher.start();
    onTestFinished(async () => {
      await holder.dispatcher?.stop();
    });

    await register(app, 'dev@example.com');
    const logged = () =>
      log.lines
        .map((l) => JSON.parse(l) as { msg?: string; level?: number; email?: { to: string; text: string } })
        .find((l) => l.msg === 'email (log transport)');
    await expect.poll(logged, { timeout: 5000 }).toBeDefined();
    const line = logged();
    expect(line).toMatchObject({ level: 30, email: { to: 'dev@example.com' } });
    const token = tokenFromLink(line?.email?.text ?? '', '/verify-email');
    expect(line?.email?.text).toContain('http://localhost:5173/verify-email?token=');
    const verified = await postJson(app, '/auth/email/verify', { token });
    expect(verified.statusCode, verified.body).toBe(200);
  });
});

describe('password/forgot for an address with and without an account', () => {
  test('does about the same work: a row (without a token) only for the account, none for an address nobody owns, no email sent in the request, about the same time', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, {
      dispatch: false,
      env: { RATE_LIMIT_EMAIL: '1000' },
    });
    await register(app, 'known@example.com');
    const ROUNDS = 15;
    const timings: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] };
    for (let i = 0; i < ROUNDS; i++) {
      // Interleaved, so a slow moment of the machine falls on both.
      for (const kind of i % 2 === 0 ? (['known', 'unknown'] as const) : (['unknown', 'known'] as const)) {
        const email = kind === 'known' ? 'known@example.com' : `nobody-${i}@example.com`;
        const started = performance.now();
        const response = await postJson(app, '/auth/password/forgot', { email });
        timings[kind].push(performance.now() - started);
        expect(response.statusCode).toBe(202);
        expect(response.json()).toEqual({ status: 'accepted' });
      }
    }
    const rows = (await outbox()).filter((row) => row.template === 'password_reset');
    // Issue 33 item 5: an address nobody owns stores nothing, so repeating such requests grows no table.
    expect(rows.map((row) => row.recipient)).toEqual(Array.from({ length: ROUNDS }, () => 'known@example.com'));
    // The token is issued when the email goes out, not in the request.
    expect(new Set(rows.map((row) => JSON.stringify([row.data, row.state, row.attempts])))).toEqual(
      new Set([JSON.stringify([{}, 'pending', 0])]),
    );
    expect(smtp.received).toEqual([]);
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const [known, unknown] = [median(timings.known), median(timings.unknown)];
    // The same statement either way: medians within a few milliseconds (an argon2 hash, a
    // token, or an SMTP conversation in the request would each be tens of milliseconds more).
    expect(Math.abs(known - unknown), `medians ${known.toFixed(1)} ms and ${unknown.toFixed(1)} ms`).toBeLessThan(
      Math.max(10, 0.5 * Math.min(known, unknown)),
    );
  });
});
