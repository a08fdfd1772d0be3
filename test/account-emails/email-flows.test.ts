import type { App } from '../../src/app.ts';
import { AccountTokenRepository } from '../../src/account-emails/account-tokens.repository.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { hashAccountToken } from '../../src/account-emails/account-tokens.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { tokenFromLink } from '../helpers/smtp.ts';
import { APP_URL, startMailingApp } from '../helpers/email.ts';
import {
  bearer,
  expectError,
  expectUnauthorized,
  expectUserShape,
  PASSWORD,
  postJson,
  type LoginJson,
  type UserJson,
} from '../helpers/http.ts';

const NEW_PASSWORD = 'a brand new passphrase';

async function register(app: App, email: string, name = 'Ada') {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<{ user: UserJson }>().user;
}

describe('email verification over SMTP', () => {
  test('register sends a verification link; following it verifies the address once', async ({ onTestFinished }) => {
    const { app, smtp, outbox, database } = await startMailingApp(onTestFinished);
    const user = await register(app, 'ada@example.com', 'Ada <b>Lovelace</b>');
    expect(user.emailVerifiedAt).toBeNull();

    const [email] = await smtp.waitForMessages(1);
    expect(email?.to).toEqual(['ada@example.com']);
    expect(email?.from).toBe('no-reply@app.example.test');
    expect(email?.subject).toBe('Confirm your email address');
    expect(email?.text).toContain(`${APP_URL}/verify-email?token=`);
    // The name is the user's own text: escaped in the HTML part, never markup.
    expect(email?.html).toContain('Ada &lt;b&gt;Lovelace&lt;/b&gt;');
    expect(email?.html).not.toContain('<b>Lovelace');
    const token = tokenFromLink(email?.text ?? '', '/verify-email');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const verified = await postJson(app, '/auth/email/verify', { token });
    expect(verified.statusCode, verified.body).toBe(200);
    expect(verified.headers['cache-control']).toBe('no-store');
    const body = verified.json<{ user: UserJson }>();
    expectUserShape(body.user);
    expect(body.user.id).toBe(user.id);
    expect(body.user.emailVerifiedAt).not.toBeNull();

    // Recorded once, for the owner; never the token.
    const events = await database.db
      .selectFrom('audit_events')
      .select(['type', 'user_id', 'details'])
      .where('type', 'in', ['user.registered', 'email.verified'])
      .orderBy('occurred_at')
      .execute();
    expect(events).toEqual([
      { type: 'user.registered', user_id: user.id, details: { role: 'user' } },
      { type: 'email.verified', user_id: user.id, details: { via: 'verification' } },
    ]);
    expect(JSON.stringify(events)).not.toContain(token);

    // Single use.
    expectError(await postJson(app, '/auth/email/verify', { token }), {
      statusCode: 400,
      type: 'InvalidTokenError',
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
    // The sent row kept neither the token nor anything else of the body.
    const rows = await outbox();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ state: 'sent', data: null, attempts: 1, template: 'email_verification' });
    expect(JSON.stringify(rows)).not.toContain(token);
  });

  test('a re-sent verification email supersedes the earlier link; none is sent once verified', async ({
    onTestFinished,
  }) => {
    const { app, smtp, outbox } = await startMailingApp(onTestFinished);
    const user = await register(app, 'grace@example.com', 'Grace');
    await smtp.waitForMessages(1);
    const session = (await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json<LoginJson>();

    const resent = await app.inject({
      method: 'POST',
      url: '/auth/email/verification',
      headers: bearer(session.accessToken),
    });
    expect(resent.statusCode, resent.body).toBe(202);
    const [first, second] = await smtp.waitForMessages(2);
    const oldToken = tokenFromLink(first?.text ?? '', '/verify-email');
    const newToken = tokenFromLink(second?.text ?? '', '/verify-email');
    expect(newToken).not.toBe(oldToken);

    expectError(await postJson(app, '/auth/email/verify', { token: oldToken }), {
      statusCode: 400,
      type: 'InvalidTokenError',
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
    expect((await postJson(app, '/auth/email/verify', { token: newToken })).statusCode).toBe(200);

    const again = await app.inject({
      method: 'POST',
      url: '/auth/email/verification',
      headers: bearer(session.accessToken),
    });
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual(resent.json());
    expect(await outbox()).toHaveLength(2);
  });

  test('re-sending needs a bearer token', async ({ onTestFinished }) => {
    const { app } = await startMailingApp(onTestFinished, { dispatch: false });
    expectUnauthorized(await app.inject({ method: 'POST', url: '/auth/email/verification' }));
  });

  test('AUTH_REQUIRE_VERIFIED_EMAIL refuses an unverified login with 403, only after a correct password', async ({
    onTestFinished,
  }) => {
    const { app, smtp, database } = await startMailingApp(onTestFinished, {
      env: { AUTH_REQUIRE_VERIFIED_EMAIL: 'true' },
    });
    const user = await register(app, 'linus@example.com', 'Linus');

    expectUnauthorized(
      await postJson(app, '/auth/login', { email: user.email, password: 'wrong password!' }),
      'INVALID_CREDENTIALS',
    );
    expectError(await postJson(app, '/auth/login', { email: user.email, password: PASSWORD }), {
      statusCode: 403,
      type: 'AuthorizationError',
      code: 'EMAIL_NOT_VERIFIED',
    });

    const failures = await database.db
      .selectFrom('audit_events')
      .select('details')
      .where('type', '=', 'login.failed')
      .where('user_id', '=', user.id)
      .orderBy('occurred_at')
      .orderBy('id')
      .execute();
    expect(failures.map((row) => row.details)).toEqual([
      { reason: 'wrong_password' },
      { reason: 'email_not_verified' },
    ]);

    const [email] = await smtp.waitForMessages(1);
    await postJson(app, '/auth/email/verify', { token: tokenFromLink(email?.text ?? '', '/verify-email') });
    expect((await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).statusCode).toBe(200);
  });
});

describe('password reset over SMTP', () => {
  test('forgot → link → reset: new password works, every session ended at once, address verified, token used up', async ({
    onTestFinished,
  }) => {
    const { app, smtp, database } = await startMailingApp(onTestFinished);
    const user = await register(app, 'ken@example.com', 'Ken');
    await smtp.waitForMessages(1);
    const session = (await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json<LoginJson>();
    const other = (await postJson(app, '/auth/login', { email: user.email, password: PASSWORD })).json<LoginJson>();
    expect((await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) })).statusCode).toBe(200);

    const forgot = await postJson(app, '/auth/password/forgot', { email: '  KEN@example.com ' });
    expect(forgot.statusCode, forgot.body).toBe(202);
    const messages = await smtp.waitForMessages(2);
    const email = messages[1];
    expect(email?.subject).toBe('Reset your password');
    expect(email?.to).toEqual(['ken@example.com']);
    const token = tokenFromLink(email?.text ?? '', '/reset-password');
    // Stored only as its hash.
    const stored = await new AccountTokenRepository(database.db).findByHash(hashAccountToken(token));
    expect(stored).toMatchObject({ purpose: 'password_reset', user_id: user.id, used_at: null });
    expect(stored?.expires_at.getTime()).toBeGreaterThan(Date.now() + 59 * 60_000);
    expect(stored?.expires_at.getTime()).toBeLessThanOrEqual(Date.now() + 60 * 60_000);

    const reset = await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD });
    expect(reset.statusCode, reset.body).toBe(204);

    // Every session ended: refresh tokens fail, and so do the access tokens, before they expire.
    for (const ended of [session, other]) {
      expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: ended.refreshToken }));
      expectUnauthorized(await app.inject({ url: '/auth/me', headers: bearer(ended.accessToken) }));
    }
    expectUnauthorized(
      await postJson(app, '/auth/login', { email: user.email, password: PASSWORD }),
      'INVALID_CREDENTIALS',
    );
    const events = await database.db
      .selectFrom('audit_events')
      .select(['type', 'actor_id', 'details'])
      .where('user_id', '=', user.id)
      .where('type', 'in', ['password.reset_requested', 'password.reset', 'email.verified', 'session.ended'])
      .orderBy('occurred_at')
      .orderBy('id')
      .execute();
    expect(events.map((event) => event.type)).toEqual([
      'password.reset_requested',
      'email.verified',
      'password.reset',
      'session.ended',
      'session.ended',
    ]);
    expect(events.filter((event) => event.type === 'session.ended').map((event) => event.details)).toEqual([
      expect.objectContaining({ reason: 'password_reset' }),
      expect.objectContaining({ reason: 'password_reset' }),
    ]);
    expect(JSON.stringify(events)).not.toContain(token);
    const sessions = await database.db
      .selectFrom('sessions')
      .select('end_reason')
      .where('user_id', '=', user.id)
      .execute();
    expect(sessions.map((row) => row.end_reason)).toEqual(['password_reset', 'password_reset']);
    const relogin = await postJson(app, '/auth/login', { email: user.email, password: NEW_PASSWORD });
    expect(relogin.statusCode).toBe(200);
    expect(relogin.json<LoginJson>().user.emailVerifiedAt).not.toBeNull();
    const row = await new UserRepository(database.db).findById(user.id);
    expect(row?.password_hash).toMatch(/^\$argon2id\$/);

    expectError(await postJson(app, '/auth/password/reset', { token, newPassword: 'yet another passphrase' }), {
      statusCode: 400,
      type: 'InvalidTokenError',
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
  });

  test('forgot answers the same for an unknown address and sends nothing', async ({ onTestFinished }) => {
    const { app, smtp, outbox, database } = await startMailingApp(onTestFinished);
    await register(app, 'known@example.com', 'Known');
    await smtp.waitForMessages(1);

    const known = await postJson(app, '/auth/password/forgot', { email: 'known@example.com' });
    const unknown = await postJson(app, '/auth/password/forgot', { email: 'nobody@example.com' });
    expect(unknown.statusCode).toBe(202);
    expect(unknown.body).toBe(known.body);
    expect(unknown.headers['content-type']).toBe(known.headers['content-type']);

    await smtp.waitForMessages(2);
    await expect
      .poll(async () => (await outbox()).map((row) => [row.recipient, row.state]), { timeout: 5000 })
      .toEqual([
        ['known@example.com', 'sent'],
        ['known@example.com', 'sent'],
      ]);
    expect(smtp.to('nobody@example.com')).toEqual([]);
    expect(smtp.received).toHaveLength(2);
    // The known owner is told of the request; nothing is stored for an address nobody owns.
    const requested = await database.db
      .selectFrom('audit_events')
      .select(['user_id', 'ip_address'])
      .where('type', '=', 'password.reset_requested')
      .execute();
    expect(requested).toEqual([{ user_id: expect.any(String), ip_address: '127.0.0.1' }]);
  });

  test('a newer reset link leaves the older one working (anyone may ask for one); using either retires both', async ({
    onTestFinished,
  }) => {
    const { app, smtp } = await startMailingApp(onTestFinished);
    await register(app, 'margaret@example.com', 'Margaret');
    await postJson(app, '/auth/password/forgot', { email: 'margaret@example.com' });
    await smtp.waitForMessages(2);
    await postJson(app, '/auth/password/forgot', { email: 'margaret@example.com' });
    const messages = await smtp.waitForMessages(3);
    const [older, newer] = messages
      .filter((message) => message.subject === 'Reset your password')
      .map((message) => tokenFromLink(message.text, '/reset-password'));

    expect((await postJson(app, '/auth/password/reset', { token: older, newPassword: NEW_PASSWORD })).statusCode).toBe(
      204,
    );
    expectError(await postJson(app, '/auth/password/reset', { token: newer, newPassword: 'yet another passphrase' }), {
      statusCode: 400,
      type: 'InvalidTokenError',
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
  });
});
