import type { App } from '../../src/app.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { tokenFromLink } from '../helpers/smtp.ts';
import { mailTo, startMailingApp, type MailingApp } from '../helpers/email.ts';
import { bearer, createUser, expectError, login, PASSWORD, postJson, type UserJson } from '../helpers/http.ts';

// A disabled account (api.md: PATCH /users/:id `status: "disabled"`) gets no reset email, and no
// link it was sent earlier sets a password or verifies its address while it is disabled.

const NEW_PASSWORD = 'a brand new passphrase';

async function register(app: App, email: string) {
  const response = await postJson(app, '/auth/register', { email, password: PASSWORD, name: 'Target' });
  expect(response.statusCode, response.body).toBe(201);
  return response.json<{ user: UserJson }>().user;
}

/** An admin of the app, and PATCH /users/:id { status } as that admin. */
async function adminOf(mailing: MailingApp) {
  const admin = await createUser(mailing.database.db, { role: 'admin' });
  const { accessToken } = await login(mailing.app, admin.email);
  return async (id: string, status: 'active' | 'disabled') => {
    const response = await mailing.app.inject({
      method: 'PATCH',
      url: `/users/${id}`,
      headers: { ...bearer(accessToken), 'content-type': 'application/json' },
      payload: JSON.stringify({ status }),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json<{ user: UserJson }>().user.status).toBe(status);
  };
}

async function passwordHashOf(mailing: MailingApp, id: string): Promise<string | undefined> {
  return (await new UserRepository(mailing.database.db).findById(id))?.password_hash;
}

function expectInvalidToken(response: Awaited<ReturnType<typeof postJson>>) {
  expectError(response, { statusCode: 400, type: 'InvalidTokenError', code: 'INVALID_OR_EXPIRED_TOKEN' });
}

describe('email flows of a disabled account', () => {
  test('forgot for a disabled account answers exactly like an unknown address and mails nothing', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app, smtp, outbox } = mailing;
    const setStatus = await adminOf(mailing);
    const user = await register(app, 'disabled@example.com');
    await smtp.waitForMessages(1); // the verification email of the registration
    await setStatus(user.id, 'disabled');

    const disabled = await postJson(app, '/auth/password/forgot', { email: 'disabled@example.com' });
    const unknown = await postJson(app, '/auth/password/forgot', { email: 'nobody@example.com' });
    expect(disabled.statusCode).toBe(202);
    expect(unknown.statusCode).toBe(202);
    expect(disabled.body).toBe(unknown.body);
    expect(disabled.headers['content-type']).toBe(unknown.headers['content-type']);

    // Neither request queued anything (no active account owns either address): no token, no email.
    await expect
      .poll(async () => (await outbox()).map((row) => [row.recipient, row.template, row.state]), { timeout: 5000 })
      .toEqual([
        ['disabled@example.com', 'email_verification', 'sent'],
        // (v3) The owner is told of the disabling; the notice carries no link.
        ['disabled@example.com', 'notice_account_disabled', 'sent'],
      ]);
    const tokens = await mailing.database.db
      .selectFrom('account_tokens')
      .select('purpose')
      .where('user_id', '=', user.id)
      .execute();
    expect(tokens.map((token) => token.purpose)).toEqual(['email_verification']);
    expect(smtp.to('disabled@example.com').map((email) => email.subject)).toEqual([
      'Confirm your email address',
      'Your account was disabled',
    ]);

    // Enabled again, the same request mails a link at once: the skip was the status, nothing else.
    await setStatus(user.id, 'active');
    expect((await postJson(app, '/auth/password/forgot', { email: 'disabled@example.com' })).statusCode).toBe(202);
    const [reset] = await mailTo(smtp, 'disabled@example.com', 'Reset your password');
    expect(reset?.to).toEqual(['disabled@example.com']);
  });

  test('a reset link sent before an admin disabled the account sets nothing, even once it is enabled again', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app, smtp } = mailing;
    const setStatus = await adminOf(mailing);
    const user = await register(app, 'grace@example.com');
    await postJson(app, '/auth/password/forgot', { email: 'grace@example.com' });
    const messages = await smtp.waitForMessages(2);
    const reset = messages.find((message) => message.subject === 'Reset your password');
    const token = tokenFromLink(reset?.text ?? '', '/reset-password');
    const hashBefore = await passwordHashOf(mailing, user.id);

    await setStatus(user.id, 'disabled');
    expectInvalidToken(await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD }));
    expect(await passwordHashOf(mailing, user.id)).toBe(hashBefore);

    await setStatus(user.id, 'active');
    expectInvalidToken(await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD }));
    expect(await passwordHashOf(mailing, user.id)).toBe(hashBefore);
    // The old password still signs in; the new one never did.
    expect((await postJson(app, '/auth/login', { email: 'grace@example.com', password: PASSWORD })).statusCode).toBe(
      200,
    );
    expect(
      (await postJson(app, '/auth/login', { email: 'grace@example.com', password: NEW_PASSWORD })).statusCode,
    ).toBe(401);
  });

  test('a reset link of an account disabled in the database (no admin request) is refused at use', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app, smtp } = mailing;
    const user = await register(app, 'hedy@example.com');
    await postJson(app, '/auth/password/forgot', { email: 'hedy@example.com' });
    const messages = await smtp.waitForMessages(2);
    const reset = messages.find((message) => message.subject === 'Reset your password');
    const token = tokenFromLink(reset?.text ?? '', '/reset-password');
    const hashBefore = await passwordHashOf(mailing, user.id);

    await new UserRepository(mailing.database.db).update(user.id, { status: 'disabled' }, new Date());
    expectInvalidToken(await postJson(app, '/auth/password/reset', { token, newPassword: NEW_PASSWORD }));
    expect(await passwordHashOf(mailing, user.id)).toBe(hashBefore);
    const row = await mailing.database.db
      .selectFrom('account_tokens')
      .select(['used_at'])
      .where('user_id', '=', user.id)
      .where('purpose', '=', 'password_reset')
      .executeTakeFirstOrThrow();
    expect(row.used_at).toBeNull();
  });

  test('a disabled account is sent no verification email and its link verifies nothing until it is enabled', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    const { app, smtp, outbox } = mailing;
    const setStatus = await adminOf(mailing);
    const user = await register(app, 'katherine@example.com');
    // The registration's email was queued while the account was active; it is disabled before
    // the dispatcher gets to it.
    await setStatus(user.id, 'disabled');
    mailing.dispatcher().start();
    await expect
      .poll(async () => (await outbox()).map((row) => [row.template, row.state]), { timeout: 5000 })
      .toEqual([
        ['email_verification', 'skipped'],
        ['notice_account_disabled', 'sent'],
      ]);
    // Only the notice of the disabling went out (a notice reaches a disabled account).
    expect(smtp.received.map((email) => email.subject)).toEqual(['Your account was disabled']);

    // Enabled, a re-sent link arrives; disabled again before it is followed, it verifies nothing.
    await setStatus(user.id, 'active');
    const { accessToken } = await login(app, 'katherine@example.com');
    const resent = await app.inject({ method: 'POST', url: '/auth/email/verification', headers: bearer(accessToken) });
    expect(resent.statusCode, resent.body).toBe(202);
    const [email] = await mailTo(smtp, 'katherine@example.com', 'Confirm your email address');
    const token = tokenFromLink(email?.text ?? '', '/verify-email');
    await setStatus(user.id, 'disabled');
    expectInvalidToken(await postJson(app, '/auth/email/verify', { token }));
    expect((await new UserRepository(mailing.database.db).findById(user.id))?.email_verified_at).toBeNull();

    // The refusal did not use the link up: enabled again while it is live, it works.
    await setStatus(user.id, 'active');
    const verified = await postJson(app, '/auth/email/verify', { token });
    expect(verified.statusCode, verified.body).toBe(200);
    expect(verified.json<{ user: UserJson }>().user.emailVerifiedAt).not.toBeNull();
  });
});
