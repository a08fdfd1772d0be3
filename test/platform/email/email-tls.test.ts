import type { App } from '../../../src/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { tokenFromLink } from '../../helpers/smtp.ts';
import { startMailingApp } from '../../helpers/email.ts';
import { PASSWORD, postJson } from '../../helpers/http.ts';

// SMTP over real TLS: the test SMTP server presents a throwaway self-signed certificate (made by
// `openssl` when the tests run), over smtps:// (TLS from the first byte) or STARTTLS.

async function register(app: App, email: string) {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Tls' });
  expect(response.statusCode, response.body).toBe(201);
}

describe('SMTP over TLS', () => {
  test('smtps:// delivers over TLS when SMTP_TLS_REJECT_UNAUTHORIZED=false accepts the self-signed certificate', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, {
      smtp: { tls: 'implicit' },
      env: { SMTP_TLS_REJECT_UNAUTHORIZED: 'false' },
    });
    expect(smtp.url).toMatch(/^smtps:\/\//);
    await register(app, 'implicit@example.com');
    const [email] = await smtp.waitForMessages(1);
    expect(email?.secure).toBe(true);
    expect(email?.to).toEqual(['implicit@example.com']);
    expect(tokenFromLink(email?.text ?? '', '/verify-email')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await expect.poll(async () => (await outbox()).map((row) => [row.state, row.attempts])).toEqual([['sent', 1]]);
    expect(smtp.connections).toBe(1);
  });

  test('smtps:// with certificate checks on (the default) refuses the self-signed certificate: retried, then given up with a clear log line', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox, log } = await startMailingApp(onTestFinished, {
      smtp: { tls: 'implicit' },
      env: { EMAIL_MAX_ATTEMPTS: '3', LOG_LEVEL: 'warn' },
    });
    await register(app, 'checked@example.com');
    await expect.poll(async () => (await outbox())[0]?.state, { timeout: 10_000 }).toBe('failed');
    const [row] = await outbox();
    expect(row?.attempts).toBe(3);
    expect(row?.last_error).toMatch(/self[- ]signed certificate/i);
    // Every attempt reached the server and ended in the TLS handshake; nothing was delivered.
    expect(smtp.connections).toBe(3);
    expect(smtp.received).toEqual([]);
    const given = log.lines
      .map((line) => JSON.parse(line) as { level: number; msg: string; reason?: string; attempts?: number })
      .filter((entry) => entry.msg === 'email given up after its last attempt');
    expect(given).toHaveLength(1);
    expect(given[0]).toMatchObject({ level: 40, attempts: 3, template: 'email_verification' });
    expect(given[0]?.reason).toMatch(/self[- ]signed certificate/i);
  });

  test('a refused certificate is retried until a dispatcher that accepts it sends the message, once', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox, dispatcher } = await startMailingApp(onTestFinished, {
      smtp: { tls: 'implicit' },
      dispatch: false,
    });
    const checking = dispatcher();
    checking.start();
    await register(app, 'retried@example.com');
    await expect.poll(async () => (await outbox())[0]?.attempts ?? 0, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    await checking.stop();
    const [pending] = await outbox();
    expect(pending?.state).toBe('pending');
    expect(smtp.received).toEqual([]);

    dispatcher({ env: { SMTP_TLS_REJECT_UNAUTHORIZED: 'false' } }).start();
    const [email] = await smtp.waitForMessages(1);
    expect(email?.secure).toBe(true);
    await expect.poll(async () => (await outbox())[0]?.state).toBe('sent');
    expect(smtp.received).toHaveLength(1);
  });

  test('SMTP_REQUIRE_TLS over smtp:// upgrades with STARTTLS and delivers', async ({ onTestFinished }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, {
      smtp: { tls: 'starttls' },
      env: { SMTP_REQUIRE_TLS: 'true', SMTP_TLS_REJECT_UNAUTHORIZED: 'false' },
    });
    expect(smtp.url).toMatch(/^smtp:\/\//);
    await register(app, 'starttls@example.com');
    const [email] = await smtp.waitForMessages(1);
    expect(email?.secure).toBe(true);
    await expect.poll(async () => (await outbox()).map((row) => row.state)).toEqual(['sent']);
  });

  test('STARTTLS with certificate checks on refuses the self-signed certificate and sends nothing', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, {
      smtp: { tls: 'starttls' },
      env: { SMTP_REQUIRE_TLS: 'true' },
    });
    await register(app, 'starttls-checked@example.com');
    await expect.poll(async () => (await outbox())[0]?.attempts ?? 0, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    const [row] = await outbox();
    expect(row?.state).not.toBe('sent');
    expect(row?.last_error).toMatch(/self[- ]signed certificate/i);
    expect(smtp.received).toEqual([]);
  });
});
