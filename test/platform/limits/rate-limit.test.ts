import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import type { App } from '../../../src/app.ts';
import type { AccountThrottledEvent } from '../../../src/platform/limits/throttle.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD } from '../../helpers/http.ts';

function expectRateLimited(response: LightMyRequestResponse, maxSeconds = 60): number {
  expectError(response, { statusCode: 429, type: 'RateLimitError', code: 'RATE_LIMITED' });
  const retryAfter = Number(response.headers['retry-after']);
  expect(Number.isInteger(retryAfter), `retry-after: ${String(response.headers['retry-after'])}`).toBe(true);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(maxSeconds);
  return retryAfter;
}

async function post(app: App, url: string, body: unknown, from = '10.0.0.1', headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url,
    remoteAddress: from,
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify(body),
  });
}

async function failLogin(app: App, email: string, from: string): Promise<LightMyRequestResponse> {
  return post(app, '/auth/login', { email, password: 'a wrong guess' }, from);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('login throttling (failures per account and client address)', () => {
  test('locks out one account from one address after LOGIN_MAX_FAILURES failures, with retry-after; another address still logs in', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { LOGIN_MAX_FAILURES: '3' } });
    const user = await createUser(db, { email: 'target@example.com' });

    const spellings = ['target@example.com', 'TARGET@example.com', ' target@Example.com '];
    for (const email of spellings) expect((await failLogin(app, email, '10.0.1.1')).statusCode).toBe(401);
    // Even the right password is refused from that address now: the pair is locked out.
    expectRateLimited(await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.1.1'));
    // The owner, from anywhere else, is not.
    expect((await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.1.2')).statusCode).toBe(
      200,
    );
  });

  test('counts failures only: a dozen successful logins from one address (an office) are never throttled', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, {
      env: { LOGIN_MAX_FAILURES: '2', LOGIN_ACCOUNT_MAX_FAILURES: '2' },
    });
    const users = await Promise.all([1, 2, 3].map((i) => createUser(db, { email: `office${i}@example.com` })));
    for (let round = 0; round < 4; round++) {
      for (const user of users) {
        const response = await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '192.0.2.10');
        expect(response.statusCode, response.body).toBe(200);
      }
    }
  });

  test("a success clears that account's failures from that address", async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { LOGIN_MAX_FAILURES: '3' } });
    const user = await createUser(db);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) expect((await failLogin(app, user.email, '10.0.4.1')).statusCode).toBe(401);
      expect((await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.4.1')).statusCode).toBe(
        200,
      );
    }
  });

  test('the lockout grows with every repeated lockout of the same pair', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { LOGIN_MAX_FAILURES: '2', LOGIN_LOCKOUT_SECONDS: '1' } });
    const user = await createUser(db);
    for (let i = 0; i < 2; i++) await failLogin(app, user.email, '10.0.5.1');
    expect(expectRateLimited(await failLogin(app, user.email, '10.0.5.1'))).toBe(1);
    await sleep(1_100);
    for (let i = 0; i < 2; i++) expect((await failLogin(app, user.email, '10.0.5.1')).statusCode).toBe(401);
    expect(expectRateLimited(await failLogin(app, user.email, '10.0.5.1'))).toBe(2);
  });

  test('slows an account guessed from many addresses without locking it, and tells its owner once', async ({
    db,
    onTestFinished,
  }) => {
    const events: AccountThrottledEvent[] = [];
    const app = await testApp(db, onTestFinished, {
      env: { LOGIN_ACCOUNT_MAX_FAILURES: '4', LOGIN_ACCOUNT_MAX_DELAY_SECONDS: '2' },
      onAccountThrottled: (event) => {
        events.push(event);
      },
    });
    const user = await createUser(db);
    for (let i = 0; i < 4; i++) expect((await failLogin(app, user.email, `10.0.6.${i}`)).statusCode).toBe(401);
    // An 11th address, the right password: slowed for a moment, not locked.
    expect(
      expectRateLimited(await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.6.99'), 2),
    ).toBe(1);
    await sleep(1_100);
    expect((await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.6.99')).statusCode).toBe(
      200,
    );
    expect(events).toEqual([
      expect.objectContaining({ scope: 'login', account: user.email, failures: 4, delaySeconds: 1 }),
    ]);
    // The owner is told in their audit log, once, with where the crossing attempt came from.
    const throttled = await db
      .selectFrom('audit_events')
      .select(['user_id', 'ip_address', 'details'])
      .where('type', '=', 'login.throttled')
      .execute();
    expect(throttled).toEqual([
      { user_id: user.id, ip_address: '10.0.6.3', details: { scope: 'login', failures: 4, delaySeconds: 1 } },
    ]);
    const { accessToken } = (
      await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.6.98')
    ).json<{
      accessToken: string;
    }>();
    const own = await app.inject({
      url: '/auth/events?limit=100',
      headers: { authorization: `Bearer ${accessToken}` },
    });
    expect(own.json<{ items: Array<{ type: string }> }>().items.map((item) => item.type)).toContain('login.throttled');
  });

  test('throttles unknown and existing accounts identically (no enumeration through 429s)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { LOGIN_MAX_FAILURES: '3' } });
    const user = await createUser(db);
    const outcome = async (email: string) => {
      const seen: string[] = [];
      for (let i = 0; i < 5; i++) {
        const response = await failLogin(app, email, '10.0.7.1');
        seen.push(`${response.statusCode} ${String(response.headers['retry-after'])}`);
      }
      return seen;
    };
    expect(await outcome('nobody-here@example.com')).toEqual(await outcome(user.email));
  });

  test('keys addresses canonically: one IPv6 /64 whatever the spelling, and IPv4-mapped IPv6 as IPv4', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { LOGIN_MAX_FAILURES: '3' } });
    const user = await createUser(db);
    for (const from of ['2001:db8::1', '2001:DB8::1', '2001:db8:0:0:0:0:0:1']) await failLogin(app, user.email, from);
    expectRateLimited(await failLogin(app, user.email, '2001:db8::abcd:1'));
    expect((await failLogin(app, user.email, '2001:db8:0:1::1')).statusCode).toBe(401);

    for (const from of ['10.2.0.1', '::ffff:10.2.0.1', '::FFFF:10.2.0.1']) await failLogin(app, user.email, from);
    expectRateLimited(await failLogin(app, user.email, '10.2.0.1'));
  });
});

describe('flood caps per client address', () => {
  test('answers the login attempt over the per-address cap with 429 RateLimitError and retry-after', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGIN: '3' } });

    for (let i = 0; i < 3; i++)
      expect((await failLogin(app, `nobody${i}@example.com`, '10.0.0.1')).statusCode).toBe(401);
    expectRateLimited(await failLogin(app, 'nobody9@example.com', '10.0.0.1'));
    // Another address is not affected.
    expect((await failLogin(app, 'nobody9@example.com', '10.0.0.2')).statusCode).toBe(401);
  });

  test('does not let a spoofed X-Forwarded-For reset the limit when no proxy is trusted', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGIN: '2' } });
    const spoofed = (i: number) =>
      post(app, '/auth/login', { email: `spoof${i}@example.com`, password: 'guess' }, '10.0.2.1', {
        'x-forwarded-for': `203.0.113.${i}`,
      });
    for (let i = 0; i < 2; i++) expect((await spoofed(i)).statusCode).toBe(401);
    expectRateLimited(await spoofed(99));
  });

  test('limits registrations per address', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_REGISTER: '2' } });
    for (let i = 0; i < 2; i++) {
      const response = await post(app, '/auth/register', {
        email: `new${i}@example.com`,
        password: PASSWORD,
        name: 'New',
      });
      expect(response.statusCode, response.body).toBe(201);
    }
    expectRateLimited(
      await post(app, '/auth/register', { email: 'new9@example.com', password: PASSWORD, name: 'New' }),
    );
    expect(await db.selectFrom('users').select('email').where('email', '=', 'new9@example.com').execute()).toEqual([]);
  });

  test('limits refreshes per address', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_REFRESH: '2' } });
    for (let i = 0; i < 2; i++) {
      expect(
        (await post(app, '/auth/refresh', { refreshToken: `unknown-token-${i}-aaaaaaaaaaaaaaaaaaaaaaaa` })).statusCode,
      ).toBe(401);
    }
    expectRateLimited(await post(app, '/auth/refresh', { refreshToken: 'unknown-token-9-aaaaaaaaaaaaaaaaaaaaaaaa' }));
  });

  test('limits logouts per address (issue 22 item 4)', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGOUT: '3' } });
    for (let i = 0; i < 3; i++) {
      expect(
        (await post(app, '/auth/logout', { refreshToken: `revoked-or-unknown-${i}-aaaaaaaaaaaa` })).statusCode,
      ).toBe(401);
    }
    expectRateLimited(await post(app, '/auth/logout', { refreshToken: 'revoked-or-unknown-9-aaaaaaaaaaaa' }));
  });

  test('never throttles health checks or the current-user endpoint', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, {
      env: { RATE_LIMIT_LOGIN: '1', RATE_LIMIT_REGISTER: '1', RATE_LIMIT_REFRESH: '1', RATE_LIMIT_LOGOUT: '1' },
    });
    for (let i = 0; i < 5; i++) {
      expect((await app.inject({ url: '/health/live', remoteAddress: '10.0.3.1' })).statusCode).toBe(200);
      expect((await app.inject({ url: '/auth/me', remoteAddress: '10.0.3.1' })).statusCode).toBe(401);
    }
  });
});

describe('password checks behind a token', () => {
  test('a stolen access token cannot brute-force the current password (issue 22 item 1)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const change = (currentPassword: string) =>
      post(
        app,
        '/auth/password',
        { currentPassword, newPassword: 'a brand new passphrase' },
        '10.0.8.1',
        bearer(accessToken),
      );
    for (let i = 0; i < 5; i++) expect((await change(`wrong guess ${i}`)).statusCode).toBe(401);
    // The right one is refused too now: guessing stopped at 5.
    expectRateLimited(await change(PASSWORD), 3600);
    const row = await db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    expect(row.password_hash).toBe(user.password_hash);
  });

  test("one user's burst of password checks cannot starve another user's login (issue 22 item 1)", async ({
    db,
    onTestFinished,
  }) => {
    // Capacity 1 + 8; one caller may hold 2 of it. Real (OWASP) hashes keep the queue contended while
    // the burst arrives: a 1 ms test hash finishes before the next request of the burst reaches it.
    const app = await testApp(db, onTestFinished, {
      env: { HASH_CONCURRENCY: '1', HASH_QUEUE_LIMIT: '8', LOGIN_MAX_FAILURES: '1000' },
      realHashing: true,
    });
    const attacker = await createUser(db);
    const victim = await createUser(db);
    const { accessToken } = await login(app, attacker.email);
    const burst = Array.from({ length: 40 }, (_, i) =>
      post(
        app,
        '/auth/password',
        { currentPassword: `guess ${i}`, newPassword: 'a brand new passphrase' },
        '10.0.9.1',
        bearer(accessToken),
      ),
    );
    const victimLogin = post(app, '/auth/login', { email: victim.email, password: PASSWORD }, '10.0.9.2');
    const [answers, victimAnswer] = await Promise.all([Promise.all(burst), victimLogin]);
    expect(victimAnswer.statusCode, victimAnswer.body).toBe(200);
    const statuses = answers.map((response) => response.statusCode);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(30);
    expect(statuses.every((status) => status === 401 || status === 429)).toBe(true);
  });
});

describe('refresh tokens that can never work again', () => {
  test('a revoked refresh token is refused without waiting for (or taking) its user row lock (issue 22 item 4)', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const { refreshToken } = await login(app, user.email);
    expect((await post(app, '/auth/logout', { refreshToken })).statusCode).toBe(204);

    // Another unit of work holds the user's row: presenting the revoked token must not queue behind it.
    await db.transaction().execute(async (trx) => {
      await sql`select id from users where id = ${user.id} for update`.execute(trx);
      const started = performance.now();
      const [logout, refresh] = await Promise.all([
        post(app, '/auth/logout', { refreshToken }),
        post(app, '/auth/refresh', { refreshToken }),
      ]);
      expect(logout.statusCode).toBe(401);
      expect(refresh.statusCode).toBe(401);
      expect(performance.now() - started).toBeLessThan(1_000);
    });
  });
});

describe('the email routes key client addresses canonically too (issue 22 item 3)', () => {
  test.for([
    ['/auth/password/forgot', (i: number) => ({ email: `someone-${i}@example.com` })],
    ['/auth/email/verify', (i: number) => ({ token: `not-a-token-${i}` })],
    ['/auth/password/reset', (i: number) => ({ token: `not-a-token-${i}`, newPassword: 'a brand new passphrase' })],
  ] as const)(
    '%s: one IPv6 /64 whatever the spelling, IPv4-mapped IPv6 as IPv4',
    async ([url, body], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_EMAIL: '3' } });
      let i = 0;
      for (const from of ['2001:db8::1', '2001:DB8::1', '2001:db8:0:0:0:0:0:1']) {
        expect((await post(app, url, body(i++), from)).statusCode).toBeLessThan(429);
      }
      expectRateLimited(await post(app, url, body(i++), '2001:db8::abcd:1'));
      expect((await post(app, url, body(i++), '2001:db8:0:1::1')).statusCode).toBeLessThan(429);

      for (const from of ['10.2.0.1', '::ffff:10.2.0.1', '::FFFF:10.2.0.1']) {
        expect((await post(app, url, body(i++), from)).statusCode).toBeLessThan(429);
      }
      expectRateLimited(await post(app, url, body(i), '10.2.0.1'));
    },
  );
});
