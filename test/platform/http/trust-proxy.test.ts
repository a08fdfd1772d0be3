import type { Kysely } from 'kysely';
import { vi } from 'vitest';
import type { DB } from '../../../db-types/index.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { LogCapture, testApp } from '../../helpers/app.ts';
import { bearer, createUser, PASSWORD } from '../../helpers/http.ts';

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

// Issue 33 item 9: a trusted proxy that appends to X-Forwarded-For passes on whatever the client
// wrote before it; `not-an-ip` became the session's address and the audit log's.
describe('client addresses from a trusted proxy', () => {
  test.for([
    ['not an address at all', 'not-an-ip', '10.0.0.9'],
    ['an address with a port', '203.0.113.7:443', '10.0.0.9'],
    ['an IPv4 address in hexadecimal', '0x7f.1', '10.0.0.9'],
    ['a long string', 'x'.repeat(300), '10.0.0.9'],
    ['an IPv4 address', '203.0.113.7', '203.0.113.7'],
    ['an IPv6 address', '2001:db8::7', '2001:db8::7'],
  ] as const)(
    'with X-Forwarded-For %s, the session and its audit event record %s',
    async ([, forwardedFor, recorded], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished, { env: { TRUST_PROXY: 'true' } });
      const user = await createUser(db);

      const response = await app.inject({
        method: 'POST',
        url: '/auth/login',
        remoteAddress: '10.0.0.9',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
        payload: JSON.stringify({ email: user.email, password: PASSWORD }),
      });

      expect(response.statusCode, response.body).toBe(200);
      const sessions = await app.inject({
        url: '/auth/sessions',
        headers: bearer(response.json<{ accessToken: string }>().accessToken),
      });
      const current = sessions
        .json<{ items: { current: boolean; ipAddress: string }[] }>()
        .items.find((s) => s.current);
      expect(current?.ipAddress).toBe(recorded);
      const events = await db
        .selectFrom('audit_events')
        .select('ip_address')
        .where('type', '=', 'login.succeeded')
        .execute();
      expect(events).toEqual([{ ip_address: recorded }]);
    },
  );
});
