import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { beforeAll } from 'vitest';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { assertRedisAnswers, TEST_REDIS_URL } from '../../helpers/redis.ts';
import { freePort } from '../../helpers/processes.ts';
import { expectError, postJson } from '../../helpers/http.ts';

const REDIS_URL = TEST_REDIS_URL;

beforeAll(assertRedisAnswers);

/** A Redis client for the test's own look at the shared store, closed when the test ends. */
function observer(onFinished: (fn: () => Promise<void>) => void): Redis {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  onFinished(async () => {
    redis.disconnect();
  });
  return redis;
}

async function clientNames(redis: Redis): Promise<string[]> {
  const list = await redis.client('LIST');
  return String(list)
    .split('\n')
    .map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '')
    .filter((name) => name !== '');
}

describe('the rate-limit store (REDIS_URL)', () => {
  test('keeps every counter in Redis under REDIS_KEY_PREFIX through one connection, and closes it when the app closes', async ({
    db,
    onTestFinished,
  }) => {
    const prefix = `vitest-${randomBytes(6).toString('hex')}:`;
    const redis = observer(onTestFinished);
    onTestFinished(async () => {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    });
    const app = await testApp(db, onTestFinished, { env: { REDIS_URL, REDIS_KEY_PREFIX: prefix } });

    expect(
      (await postJson(app, '/auth/login', { email: 'nobody@example.com', password: 'a wrong guess' })).statusCode,
    ).toBe(401);
    // The per-address flood cap, and the failure counters of the pair and of the account, each
    // with its window as expiry: Redis drops them then, and never before (noeviction).
    expect(await redis.keys(`${prefix}flood:*`)).toEqual([`${prefix}flood:login-ip:address:127.0.0.1`]);
    expect((await redis.keys(`${prefix}throttle:fail:*`)).length).toBe(2);
    for (const key of await redis.keys(`${prefix}*`)) expect(await redis.pttl(key)).toBeGreaterThan(0);
    // Emails never reach Redis: accounts are keyed by a hash.
    expect((await redis.keys(`${prefix}*`)).join(' ')).not.toContain('nobody');
    expect((await clientNames(redis)).filter((name) => name.startsWith(prefix))).toEqual([`${prefix}throttle`]);

    await app.close();
    expect(await clientNames(redis)).not.toContain(`${prefix}throttle`);
  });

  test('counts failed logins across instances: failures on one lock the pair out on the other', async ({
    db,
    onTestFinished,
  }) => {
    const prefix = `vitest-${randomBytes(6).toString('hex')}:`;
    const redis = observer(onTestFinished);
    onTestFinished(async () => {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    });
    const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, LOGIN_MAX_FAILURES: '4' };
    const [first, second] = await Promise.all([
      testApp(db, onTestFinished, { env }),
      testApp(db, onTestFinished, { env }),
    ]);
    const guess = { email: 'shared@example.com', password: 'a wrong guess' };
    for (const app of [first, second, first, second]) {
      expect((await postJson(app, '/auth/login', guess)).statusCode).toBe(401);
    }
    expectError(await postJson(first, '/auth/login', guess), {
      statusCode: 429,
      type: 'RateLimitError',
      code: 'RATE_LIMITED',
    });
    expectError(await postJson(second, '/auth/login', guess), {
      statusCode: 429,
      type: 'RateLimitError',
      code: 'RATE_LIMITED',
    });
  });

  test('refuses rate-limited requests with 503 RATE_LIMIT_UNAVAILABLE within seconds when Redis does not answer, and nothing else', async ({
    db,
    onTestFinished,
  }) => {
    // A loopback port nothing listens on.
    const port = await freePort(6432, 6440);
    const app = await testApp(db, onTestFinished, { env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
    const started = performance.now();

    const response = await postJson(app, '/auth/login', { email: 'nobody@example.com', password: 'a wrong guess' });

    expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code: 'RATE_LIMIT_UNAVAILABLE' });
    expect(response.headers['retry-after']).toBeDefined();
    expect(response.body).not.toMatch(/redis|ECONNREFUSED/i);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/auth/me' })).statusCode).toBe(401);
  });
});
