import { randomBytes } from 'node:crypto';
import type { App } from '../../src/app.ts';
import { AccountTokenRepository } from '../../src/account-emails/account-tokens.repository.ts';
import { hashAccountToken } from '../../src/account-emails/account-tokens.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { tokenFromLink, type TestSmtpServer } from '../helpers/smtp.ts';
import { startMailingApp } from '../helpers/email.ts';
import { expectError, login, PASSWORD, postJson, type UserJson } from '../helpers/http.ts';

// Every way a verification or reset token can be wrong answers the contract's one 400
// INVALID_OR_EXPIRED_TOKEN in the one error shape (never a 500, never a hint of which way it was
// wrong), and changes nothing. The tokens come from real emails over SMTP.

const NEW_PASSWORD = 'a brand new passphrase';
const HOUR = 3_600_000;

type Route = '/auth/email/verify' | '/auth/password/reset';

function body(route: Route, token: unknown): Record<string, unknown> {
  return route === '/auth/email/verify' ? { token } : { token, newPassword: NEW_PASSWORD };
}

async function expectInvalidToken(app: App, route: Route, token: unknown): Promise<void> {
  expectError(await postJson(app, route, body(route, token)), {
    statusCode: 400,
    type: 'InvalidTokenError',
    code: 'INVALID_OR_EXPIRED_TOKEN',
  });
}

async function register(app: App, email: string): Promise<UserJson> {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Token Tester' });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<{ user: UserJson }>().user;
}

/** The token of the newest email to `email` with a link to `path`. */
async function newestToken(smtp: TestSmtpServer, email: string, path: string, count: number): Promise<string> {
  await smtp.waitForMessages(count);
  const links = smtp.to(email).filter((message) => message.text.includes(path));
  const newest = links.at(-1);
  if (newest === undefined) throw new Error(`no ${path} email to ${email}`);
  return tokenFromLink(newest.text, path);
}

/** A clock the test moves: the app's (token expiry) and the dispatcher's (reset tokens are issued there). */
function movableClock(): { clock: () => Date; advance: (ms: number) => void } {
  let offset = 0;
  return {
    clock: () => new Date(Date.now() + offset),
    advance: (ms) => {
      offset += ms;
    },
  };
}

describe('verification and reset tokens that are not (or no longer) good', () => {
  test('a verification token works until 24 h after it was issued, and not after', async ({ onTestFinished }) => {
    const time = movableClock();
    const { app, smtp } = await startMailingApp(onTestFinished, { clock: time.clock });
    await register(app, 'early@example.com');
    await register(app, 'late@example.com');
    const early = await newestToken(smtp, 'early@example.com', '/verify-email', 2);
    const late = await newestToken(smtp, 'late@example.com', '/verify-email', 2);

    time.advance(24 * HOUR - 60_000);
    expect((await postJson(app, '/auth/email/verify', { token: early })).statusCode).toBe(200);
    time.advance(2 * 60_000);
    await expectInvalidToken(app, '/auth/email/verify', late);
    const login = await postJson(app, '/auth/login', { email: 'late@example.com', password: PASSWORD });
    expect(login.json<{ user: UserJson }>().user.emailVerifiedAt).toBeNull();
  });

  test('a reset token works until 1 h after it was issued, and not after; the password stays', async ({
    onTestFinished,
  }) => {
    const time = movableClock();
    const { app, smtp } = await startMailingApp(onTestFinished, { clock: time.clock });
    await register(app, 'early@example.com');
    await register(app, 'late@example.com');
    await postJson(app, '/auth/password/forgot', { email: 'early@example.com' });
    await postJson(app, '/auth/password/forgot', { email: 'late@example.com' });
    const early = await newestToken(smtp, 'early@example.com', '/reset-password', 4);
    const late = await newestToken(smtp, 'late@example.com', '/reset-password', 4);

    time.advance(HOUR - 60_000);
    const reset = await postJson(app, '/auth/password/reset', { token: early, newPassword: NEW_PASSWORD });
    expect(reset.statusCode, reset.body).toBe(204);
    time.advance(2 * 60_000);
    await expectInvalidToken(app, '/auth/password/reset', late);
    await login(app, 'late@example.com', PASSWORD);
  });

  test.for<Route>(['/auth/email/verify', '/auth/password/reset'])(
    '%s: malformed, over-long, unknown and wrong-purpose tokens are all 400 INVALID_OR_EXPIRED_TOKEN; nothing changes',
    async (route, { onTestFinished }) => {
      // The per-address limit of these routes would answer 429 before the list is through.
      const { app, smtp, database } = await startMailingApp(onTestFinished, { env: { RATE_LIMIT_EMAIL: '1000' } });
      const user = await register(app, 'ada@example.com');
      const verification = await newestToken(smtp, user.email, '/verify-email', 1);
      await postJson(app, '/auth/password/forgot', { email: user.email });
      const reset = await newestToken(smtp, user.email, '/reset-password', 2);
      const [good, otherPurpose] = route === '/auth/email/verify' ? [verification, reset] : [reset, verification];

      const wellFormedUnknown = randomBytes(32).toString('base64url');
      for (const token of [
        '',
        ' ',
        'x',
        good.slice(0, 42),
        `${good}A`,
        `${good}=`,
        ` ${good}`,
        `${good}\n`,
        good.replace(/^./, '+'),
        good.replace(/^./, '/'),
        good.replace(/^./, 'é'),
        `${good.slice(0, 42)}\u0000`,
        encodeURIComponent(`${good}&x=1`),
        good.toUpperCase() === good ? good.toLowerCase() : good.toUpperCase(),
        wellFormedUnknown,
        // The token's stored form is its hash; presenting the hash is not presenting the token.
        hashAccountToken(good),
        otherPurpose,
        // Over-long: past any token's length, up to just under the 16 KiB body limit of /auth/*.
        'A'.repeat(44),
        good.repeat(100),
        'A'.repeat(4097),
        'A'.repeat(16 * 1024 - 100),
      ]) {
        await expectInvalidToken(app, route, token);
      }

      // None of them used up the good token or the other purpose's: both still work.
      const tokens = new AccountTokenRepository(database.db);
      expect((await tokens.findByHash(hashAccountToken(good)))?.used_at).toBeNull();
      expect((await tokens.findByHash(hashAccountToken(otherPurpose)))?.used_at).toBeNull();
      const used = await postJson(app, route, body(route, good));
      expect(used.statusCode, used.body).toBe(route === '/auth/email/verify' ? 200 : 204);
      // And once used, it is used.
      await expectInvalidToken(app, route, good);
    },
  );

  test.for<Route>(['/auth/email/verify', '/auth/password/reset'])(
    '%s: a token that is not a string is a 400 validation error on `token`; a body past the limit is 413',
    async (route, { onTestFinished }) => {
      const { app } = await startMailingApp(onTestFinished, { dispatch: false });
      for (const token of [null, 42, true, ['x'], { token: 'x' }]) {
        expectError(await postJson(app, route, body(route, token)), {
          statusCode: 400,
          type: 'ValidationError',
          code: 'VALIDATION_FAILED',
          field: 'token',
        });
      }
      expectError(await postJson(app, route, route === '/auth/email/verify' ? {} : { newPassword: NEW_PASSWORD }), {
        statusCode: 400,
        type: 'ValidationError',
        code: 'VALIDATION_FAILED',
        field: 'token',
      });
      expectError(await postJson(app, route, body(route, 'A'.repeat(17 * 1024))), {
        statusCode: 413,
        type: 'PayloadTooLargeError',
        code: 'PAYLOAD_TOO_LARGE',
      });
    },
  );

  test('two requests presenting one verification token at once: exactly one succeeds', async ({ onTestFinished }) => {
    const { app, smtp } = await startMailingApp(onTestFinished);
    await register(app, 'twice@example.com');
    const token = await newestToken(smtp, 'twice@example.com', '/verify-email', 1);
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => postJson(app, '/auth/email/verify', { token })),
    );
    expect(responses.map((response) => response.statusCode).sort()).toEqual([200, 400, 400, 400, 400]);
    for (const response of responses.filter((r) => r.statusCode === 400)) {
      expectError(response, { statusCode: 400, type: 'InvalidTokenError', code: 'INVALID_OR_EXPIRED_TOKEN' });
    }
  });

  test('two resets with one token at once: exactly one sets its password', async ({ onTestFinished }) => {
    const { app, smtp } = await startMailingApp(onTestFinished);
    await register(app, 'race@example.com');
    await postJson(app, '/auth/password/forgot', { email: 'race@example.com' });
    const token = await newestToken(smtp, 'race@example.com', '/reset-password', 2);
    const passwords = ['first new passphrase', 'second new passphrase', 'third new passphrase'];
    const responses = await Promise.all(
      passwords.map((newPassword) => postJson(app, '/auth/password/reset', { token, newPassword })),
    );
    expect(responses.map((response) => response.statusCode).sort()).toEqual([204, 400, 400]);
    const winner = passwords[responses.findIndex((response) => response.statusCode === 204)];
    for (const password of passwords) {
      const attempt = await postJson(app, '/auth/login', { email: 'race@example.com', password });
      expect(attempt.statusCode, password).toBe(password === winner ? 200 : 401);
    }
  });

  test('a reset refused for its new password leaves the token usable; a bad token leaves the password', async ({
    onTestFinished,
  }) => {
    const { app, smtp } = await startMailingApp(onTestFinished);
    await register(app, 'weak@example.com');
    await postJson(app, '/auth/password/forgot', { email: 'weak@example.com' });
    const token = await newestToken(smtp, 'weak@example.com', '/reset-password', 2);

    const weak = await postJson(app, '/auth/password/reset', { token, newPassword: 'short' });
    expectError(weak, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED', field: 'newPassword' });
    await expectInvalidToken(app, '/auth/password/reset', randomBytes(32).toString('base64url'));
    await login(app, 'weak@example.com', PASSWORD);

    expect((await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
    await login(app, 'weak@example.com', NEW_PASSWORD);
  });
});
