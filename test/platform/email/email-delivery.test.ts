import { setTimeout as sleep } from 'node:timers/promises';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import type { SmtpMode } from '../../helpers/smtp.ts';
import { startMailingApp } from '../../helpers/email.ts';
import { PASSWORD, postJson } from '../../helpers/http.ts';

describe('email delivery when the SMTP server misbehaves', () => {
  test.for<SmtpMode>(['reject', 'drop', 'hang'])(
    'a message the SMTP server fails (mode %s) is retried and delivered exactly once when it is healthy; the API never waits',
    async (mode, { onTestFinished }) => {
      const metrics = new AppMetrics();
      const { app, smtp, outbox } = await startMailingApp(onTestFinished, { events: metrics.dispatcherEvents });
      smtp.mode = mode;

      const started = performance.now();
      const response = await postJson(app, '/auth/register', {
        email: 'ada@example.com',
        password: PASSWORD,
        name: 'Ada',
      });
      expect(response.statusCode).toBe(201);
      // The send timeout is 1 s: a request that waited on SMTP would take at least that long.
      expect(performance.now() - started).toBeLessThan(1000);

      await expect.poll(() => smtp.faults, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
      expect(smtp.received).toEqual([]);
      smtp.mode = 'accept';

      await smtp.waitForMessages(1);
      await expect.poll(async () => (await outbox())[0]?.state, { timeout: 5000 }).toBe('sent');
      // A while more: a second delivery would show up by now.
      await sleep(500);
      expect(smtp.to('ada@example.com')).toHaveLength(1);
      const [row] = await outbox();
      expect(row?.attempts).toBeGreaterThanOrEqual(3);
      expect(row?.data).toBeNull();
      expect(
        (await metrics.emailRetries.get()).values.find((v) => v.labels.template === 'email_verification')?.value,
      ).toBeGreaterThanOrEqual(2);
    },
  );
});
