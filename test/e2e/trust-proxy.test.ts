import type { Kysely } from 'kysely';
import { vi } from 'vitest';
import type { DB } from '../../db-types/index.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { LogCapture, testApp } from '../helpers/app.ts';

// request.ip is what the rate limiter counts by: it must follow X-Forwarded-For exactly as far as
// TRUST_PROXY allows, and no further. Fastify logs it as the request's remoteAddress.
async function ipSeen(
  db: Kysely<DB>,
  onTestFinished: (fn: () => Promise<void>) => void,
  trustProxy: string,
  forwardedFor: string,
): Promise<unknown> {
  const logs = new LogCapture();
  const app = await testApp(db, onTestFinished, {
    env: { TRUST_PROXY: trustProxy, LOG_LEVEL: 'info' },
    logStream: logs,
  });
  await app.inject({
    method: 'GET',
    url: '/health/live',
    remoteAddress: '10.0.0.9',
    headers: { 'x-forwarded-for': forwardedFor },
  });
  // The request's one log line is written once the response has gone out.
  const completed = await vi.waitFor(() => {
    const line = logs.lines
      .map((text) => JSON.parse(text) as { msg?: string; req?: { remoteAddress?: unknown } })
      .find((entry) => entry.msg === 'request completed');
    if (line === undefined) throw new Error('no "request completed" line yet');
    return line;
  });
  return completed.req?.remoteAddress;
}

describe('TRUST_PROXY', () => {
  test('ignores X-Forwarded-For by default, so a client cannot choose its own address', async ({
    db,
    onTestFinished,
  }) => {
    expect(await ipSeen(db, onTestFinished, 'false', '203.0.113.7')).toBe('10.0.0.9');
  });

  test('with a hop count, takes the address that many proxies away and ignores what the client prepended', async ({
    db,
    onTestFinished,
  }) => {
    // The client wrote 198.51.100.1 itself; the one trusted proxy appended the real client address.
    expect(await ipSeen(db, onTestFinished, '1', '198.51.100.1, 203.0.113.7')).toBe('203.0.113.7');
  });
});
