import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { createUser, expectError, PASSWORD } from './support.ts';

function expectRateLimited(response: LightMyRequestResponse): void {
  expectError(response, { statusCode: 429, type: 'RateLimitError', code: 'RATE_LIMITED' });
  const retryAfter = Number(response.headers['retry-after']);
  expect(Number.isInteger(retryAfter), `retry-after: ${String(response.headers['retry-after'])}`).toBe(true);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(60);
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

describe('rate limits', () => {
  test('answers the login attempt over the per-IP limit with 429 RateLimitError and retry-after', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGIN: '3' } });

    for (let i = 0; i < 3; i++) {
      const response = await post(app, '/auth/login', { email: `nobody${i}@example.com`, password: 'wrong password' });
      expect(response.statusCode).toBe(401);
    }
    expectRateLimited(await post(app, '/auth/login', { email: 'nobody9@example.com', password: 'wrong password' }));
    // Another address is not affected.
    expect(
      (await post(app, '/auth/login', { email: 'nobody9@example.com', password: 'wrong password' }, '10.0.0.2'))
        .statusCode,
    ).toBe(401);
  });

  test('limits login attempts per account too, whatever address they come from and however the email is spelt', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGIN: '3' } });
    const user = await createUser(db, { email: 'target@example.com' });

    const spellings = ['target@example.com', 'TARGET@example.com', ' target@Example.com '];
    for (const [i, email] of spellings.entries()) {
      expect((await post(app, '/auth/login', { email, password: 'guess' }, `10.0.1.${i}`)).statusCode).toBe(401);
    }
    // Even the right password is refused now: the account is locked out for the window.
    expectRateLimited(await post(app, '/auth/login', { email: user.email, password: PASSWORD }, '10.0.1.200'));
  });

  test('does not let a spoofed X-Forwarded-For reset the limit when no proxy is trusted', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_LOGIN: '2' } });

    for (let i = 0; i < 2; i++) {
      const response = await post(
        app,
        '/auth/login',
        { email: `spoof${i}@example.com`, password: 'guess' },
        '10.0.2.1',
        {
          'x-forwarded-for': `203.0.113.${i}`,
        },
      );
      expect(response.statusCode).toBe(401);
    }
    expectRateLimited(
      await post(app, '/auth/login', { email: 'spoof9@example.com', password: 'guess' }, '10.0.2.1', {
        'x-forwarded-for': '203.0.113.99',
      }),
    );
  });

  test('limits registrations per IP', async ({ db, onTestFinished }) => {
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

  test('limits refreshes per IP', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_REFRESH: '2' } });
    for (let i = 0; i < 2; i++) {
      expect(
        (await post(app, '/auth/refresh', { refreshToken: `unknown-token-${i}-aaaaaaaaaaaaaaaaaaaaaaaa` })).statusCode,
      ).toBe(401);
    }
    expectRateLimited(await post(app, '/auth/refresh', { refreshToken: 'unknown-token-9-aaaaaaaaaaaaaaaaaaaaaaaa' }));
  });

  test('never throttles health checks or the current-user endpoint', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, {
      env: { RATE_LIMIT_LOGIN: '1', RATE_LIMIT_REGISTER: '1', RATE_LIMIT_REFRESH: '1' },
    });
    for (let i = 0; i < 5; i++) {
      expect((await app.inject({ url: '/health/live', remoteAddress: '10.0.3.1' })).statusCode).toBe(200);
      expect((await app.inject({ url: '/auth/me', remoteAddress: '10.0.3.1' })).statusCode).toBe(401);
    }
  });
});
