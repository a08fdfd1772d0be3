import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.ts';
import { testApp } from '../helpers/app.ts';
import { tokenFromLink } from '../helpers/smtp.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { startMailingApp } from '../helpers/email.ts';
import { createUser, expectError, PASSWORD, type LoginJson } from '../helpers/http.ts';

// api.md, "Abuse resistance": an attacker who knows only the address cannot stop the owner from
// signing in from a device that signed in before, nor from getting a working reset link.

const OWNER = '10.40.0.1';
const NEW_PASSWORD = 'a brand new passphrase';

async function post(app: App, url: string, body: unknown, from: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    remoteAddress: from,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
}

/** Strangers guess the password from `addresses` distinct addresses, `each` times each. */
async function guessFromElsewhere(app: App, email: string, addresses: number, each: number): Promise<void> {
  for (let a = 0; a < addresses; a++) {
    for (let i = 0; i < each; i++) await post(app, '/auth/login', { email, password: 'a wrong guess' }, `10.66.${a}.1`);
  }
}

function expectRateLimited(response: LightMyRequestResponse): void {
  expectError(response, { statusCode: 429, type: 'RateLimitError', code: 'RATE_LIMITED' });
}

const THROTTLE = { LOGIN_MAX_FAILURES: '3', LOGIN_ACCOUNT_MAX_FAILURES: '5' };

describe('device tokens: the owner signs in from a known device whatever strangers try', () => {
  test('a login that sends back its device token succeeds while strangers have slowed the account for unknown devices, and gets a new token', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: THROTTLE });
    const user = await createUser(db);
    const first = await post(app, '/auth/login', { email: user.email, password: PASSWORD }, OWNER);
    expect(first.statusCode, first.body).toBe(200);
    const { deviceToken } = first.json<LoginJson>();

    await guessFromElsewhere(app, user.email, 5, 2);

    // Unknown devices (even at the owner's address) wait out the slowdown…
    expectRateLimited(await post(app, '/auth/login', { email: user.email, password: PASSWORD }, OWNER));
    // …the owner's device does not, from any address.
    for (const from of [OWNER, '10.40.9.9']) {
      const known = await post(app, '/auth/login', { email: user.email, password: PASSWORD, deviceToken }, from);
      expect(known.statusCode, known.body).toBe(200);
      expect(known.json<LoginJson>().deviceToken).not.toBe(deviceToken);
    }
  });

  test("a device token's failures lock out that device token only", async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: THROTTLE });
    const user = await createUser(db);
    const phone = (await post(app, '/auth/login', { email: user.email, password: PASSWORD }, OWNER)).json<LoginJson>();
    const laptop = (await post(app, '/auth/login', { email: user.email, password: PASSWORD }, OWNER)).json<LoginJson>();

    for (let i = 0; i < 3; i++) {
      const wrong = { email: user.email, password: 'a wrong guess', deviceToken: phone.deviceToken };
      expect((await post(app, '/auth/login', wrong, OWNER)).statusCode).toBe(401);
    }

    const right = { email: user.email, password: PASSWORD };
    expectRateLimited(await post(app, '/auth/login', { ...right, deviceToken: phone.deviceToken }, OWNER));
    expect((await post(app, '/auth/login', { ...right, deviceToken: laptop.deviceToken }, OWNER)).statusCode).toBe(200);
    // Nor did they count against the address or the account: an unknown device there still signs in.
    expect((await post(app, '/auth/login', right, OWNER)).statusCode).toBe(200);
  });

  test.for([
    { name: "another account's device token", token: async (app: App, other: string) => tokenOf(app, other) },
    { name: 'a forged device token', token: async () => `${'A'.repeat(22)}.9999999999.${'B'.repeat(43)}` },
    { name: 'a string that is no device token', token: async () => 'not-a-device-token' },
  ])('$name is an unknown device: throttled like no token at all', async ({ token }, { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: THROTTLE });
    const user = await createUser(db);
    const other = await createUser(db);
    const deviceToken = await token(app, other.email);

    await guessFromElsewhere(app, user.email, 5, 2);

    expectRateLimited(await post(app, '/auth/login', { email: user.email, password: PASSWORD, deviceToken }, OWNER));
  });
});

async function tokenOf(app: App, email: string): Promise<string> {
  const response = await post(app, '/auth/login', { email, password: PASSWORD }, OWNER);
  expect(response.statusCode, response.body).toBe(200);
  return response.json<LoginJson>().deviceToken;
}

describe('password reset while strangers flood the forgot route', () => {
  test('the owner is never refused a reset request, and the link they got first still works', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished, { env: { RATE_LIMIT_EMAIL: '4' } });
    const email = 'owner@example.com';
    expect((await post(app, '/auth/register', { email, password: PASSWORD, name: 'Owner' }, OWNER)).statusCode).toBe(
      201,
    );
    expect((await post(app, '/auth/password/forgot', { email }, OWNER)).statusCode).toBe(202);
    const [first] = (await smtp.waitForMessages(2)).filter((message) => message.subject === 'Reset your password');
    const link = tokenFromLink(first?.text ?? '', '/reset-password');

    // Strangers ask for the owner's link from many addresses: each answered like any request.
    for (let i = 0; i < 12; i++) {
      expect((await post(app, '/auth/password/forgot', { email }, `10.77.${i}.1`)).statusCode).toBe(202);
    }
    // The owner asks again: not refused, whatever the account's cap says.
    expect((await post(app, '/auth/password/forgot', { email }, OWNER)).statusCode).toBe(202);
    await expect
      .poll(async () => (await outbox()).filter((row) => row.state === 'pending').length, { timeout: 5000 })
      .toBe(0);

    // The flood superseded nothing: the first link sets the password.
    const reset = await post(app, '/auth/password/reset', { token: link, newPassword: NEW_PASSWORD }, OWNER);
    expect(reset.statusCode, reset.body).toBe(204);
    expect((await post(app, '/auth/login', { email, password: NEW_PASSWORD }, OWNER)).statusCode).toBe(200);
    // And the mailbox got a handful of links, not one per request.
    expect(smtp.to(email).filter((message) => message.subject === 'Reset your password').length).toBeLessThanOrEqual(3);
  });
});
