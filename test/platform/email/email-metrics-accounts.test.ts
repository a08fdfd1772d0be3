import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '../../../src/app.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { startMailingApp } from '../../helpers/email.ts';
import { PASSWORD, postJson } from '../../helpers/http.ts';

// Issue 33 item 9: in development, GET /metrics told known from unknown addresses after a reset
// request: email_sent_total for an account, email_skipped_total for an address nobody owns. A
// request for an address nobody owns now leaves no message to skip, so no email counter moves.

async function emailCounters(app: App): Promise<string[]> {
  const response = await app.inject({ url: '/metrics' });
  expect(response.statusCode).toBe(200);
  return response.body.split('\n').filter((line) => /^email_(sent|skipped|failed|send_retries)_total/.test(line));
}

describe('GET /metrics after reset requests', () => {
  test('a reset request for an address nobody owns moves no email counter', async ({ onTestFinished }) => {
    const metrics = new AppMetrics();
    const { app, smtp } = await startMailingApp(onTestFinished, { metrics });
    const registered = await postJson(app, '/auth/register', {
      email: 'ada@example.com',
      password: PASSWORD,
      name: 'Ada',
    });
    expect(registered.statusCode).toBe(201);
    await smtp.waitForMessages(1);
    await expect
      .poll(async () => (await emailCounters(app)).join('\n'))
      .toContain('email_sent_total{template="email_verification"} 1');
    const before = await emailCounters(app);

    for (const email of ['nobody@example.com', 'no-one@example.org', 'ghost@example.net']) {
      expect((await postJson(app, '/auth/password/forgot', { email })).statusCode).toBe(202);
    }
    // Many dispatcher passes (it polls every 50 ms and is woken by each request).
    await sleep(500);

    expect(await emailCounters(app)).toEqual(before);
    expect(smtp.received).toHaveLength(1);
  });
});
