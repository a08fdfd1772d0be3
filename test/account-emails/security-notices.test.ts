import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from '../../src/app.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { describe, expect, TEST_POOL, test } from '../helpers/database.ts';
import { tokenFromLink, type ReceivedEmail } from '../helpers/smtp.ts';
import { changeToken, mailTo, startMailingApp, type MailingApp } from '../helpers/email.ts';
import { bearer, createUser, expectError, login, PASSWORD, postJson, type UserJson } from '../helpers/http.ts';

// Security notices (api.md v3): the account's address is told of each security event, by email
// through the outbox, once, never with a token or a link; and registration that does not tell
// whether an address has an account (ASVS 6.3.8, REGISTRATION_ENUMERATION_SAFE).

const NOTICE = {
  passwordChanged: 'Your password was changed',
  passwordReset: 'Your password was reset',
  emailChanged: 'Your email address was changed',
  disabled: 'Your account was disabled',
  accountExists: 'Someone tried to use your email address',
  throttled: 'Someone is trying to sign in to your account',
} as const;

/** A notice has neither a link nor a token, in either part, and says why it was sent. */
function expectPlainNotice(email: ReceivedEmail | undefined, ...tokens: string[]) {
  expect(email).toBeDefined();
  for (const part of [email?.text ?? '', email?.html ?? '']) {
    expect(part).not.toMatch(/https?:\/\//);
    expect(part).not.toMatch(/token/i);
    expect(part).not.toContain('<a ');
    for (const token of tokens) expect(part).not.toContain(token);
    expect(part).toContain('You received this email because');
  }
}

async function verifiedUser(mailing: MailingApp, email: string, name = 'Test User') {
  const user = await createUser(mailing.database.db, { email, name });
  await new UserRepository(mailing.database.db).markEmailVerified(user.id, new Date());
  return user;
}

/** A second instance's dispatcher, on connections of its own, started beside the app's. */
function secondDispatcher(mailing: MailingApp, onFinished: (fn: () => Promise<void>) => void) {
  const otherDb = createDatabase({ ...TEST_POOL, url: mailing.database.url });
  onFinished(async () => {
    await otherDb.destroy();
  });
  mailing.dispatcher({ instanceId: 'instance-b', db: otherDb }).start();
}

function register(app: App, email: string, name = 'Newcomer') {
  return postJson(app, '/auth/register', { email, password: PASSWORD, name });
}

describe('security notices', () => {
  test('each security event sends its notice once, to the address of the time, with two dispatchers running', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    secondDispatcher(mailing, onTestFinished);
    const { app, smtp } = mailing;

    // A password change.
    const pat = await verifiedUser(mailing, 'pat@example.com');
    const patSession = await login(app, pat.email);
    const changed = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
      bearer(patSession.accessToken),
    );
    expect(changed.statusCode, changed.body).toBe(204);

    // A password reset.
    const rita = await verifiedUser(mailing, 'rita@example.com');
    expect((await postJson(app, '/auth/password/forgot', { email: rita.email })).statusCode).toBe(202);
    const [resetEmail] = await mailTo(smtp, rita.email, 'Reset your password');
    const resetToken = tokenFromLink(resetEmail?.text ?? '', '/reset-password');
    const reset = await postJson(app, '/auth/password/reset', { token: resetToken, newPassword: 'another passphrase' });
    expect(reset.statusCode, reset.body).toBe(204);

    // An email change: the notice goes to the old address.
    const erin = await verifiedUser(mailing, 'erin@old.example.com');
    const erinSession = await login(app, erin.email);
    const requested = await postJson(
      app,
      '/auth/email/change',
      { newEmail: 'erin@new.example.com', password: PASSWORD },
      bearer(erinSession.accessToken),
    );
    expect(requested.statusCode, requested.body).toBe(202);
    const [toNew] = await mailTo(smtp, 'erin@new.example.com', 'Confirm your new email address');
    const [toCurrent] = await mailTo(smtp, erin.email, 'Confirm the change of your email address');
    const changeTokens = [changeToken(toNew), changeToken(toCurrent)];
    for (const token of changeTokens) {
      expect((await postJson(app, '/auth/email/change/confirm', { token })).statusCode).toBe(200);
    }

    // An admin disables an account.
    const dave = await verifiedUser(mailing, 'dave@example.com');
    const admin = await createUser(mailing.database.db, { role: 'admin' });
    const adminSession = await login(app, admin.email);
    const disabled = await app.inject({
      method: 'PATCH',
      url: `/users/${dave.id}`,
      payload: { status: 'disabled' },
      headers: bearer(adminSession.accessToken),
    });
    expect(disabled.statusCode, disabled.body).toBe(200);

    const expected = [
      [pat.email, NOTICE.passwordChanged],
      [rita.email, NOTICE.passwordReset],
      [erin.email, NOTICE.emailChanged],
      [dave.email, NOTICE.disabled],
    ] as const;
    for (const [address, subject] of expected) {
      const [notice] = await mailTo(smtp, address, subject);
      expectPlainNotice(notice, resetToken, ...changeTokens);
    }
    await expect
      .poll(async () => (await mailing.outbox()).every((row) => row.state === 'sent'), { timeout: 5000 })
      .toBe(true);
    // Long enough for a duplicate to show up: both dispatchers keep polling every 50 ms.
    await sleep(500);
    for (const [address, subject] of expected) {
      expect(smtp.to(address).filter((email) => email.subject === subject)).toHaveLength(1);
    }
    const rows = await mailing.outbox();
    expect(smtp.received).toHaveLength(rows.length);
    expect(rows.every((row) => row.attempts === 1 && row.data === null)).toBe(true);
    // Nobody else was told anything about these events.
    expect(smtp.to('erin@new.example.com').map((email) => email.subject)).toEqual(['Confirm your new email address']);
  });

  test('an account guessed from many addresses is told by email, once', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished, { env: { LOGIN_ACCOUNT_MAX_FAILURES: '3' } });
    const { app, smtp } = mailing;
    const user = await verifiedUser(mailing, 'target@example.com');
    const guess = (from: string) =>
      app.inject({
        method: 'POST',
        url: '/auth/login',
        remoteAddress: from,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email: user.email, password: 'a wrong guess' }),
      });
    for (let i = 0; i < 3; i++) expect((await guess(`10.0.7.${i}`)).statusCode).toBe(401);
    const [notice] = await mailTo(smtp, user.email, NOTICE.throttled);
    expectPlainNotice(notice);
    // More guessing slows the account further but does not fill the mailbox.
    for (let i = 3; i < 8; i++) await guess(`10.0.7.${i}`);
    await sleep(300);
    const notices = (await mailing.outbox()).filter((row) => row.template === 'notice_login_throttled');
    expect(notices).toHaveLength(1);
  });

  test('the name is HTML-escaped in the HTML part and one plain line without links in the text part', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app, smtp } = mailing;
    const user = await verifiedUser(mailing, 'eve@example.com');
    // A row written before today's input rules: markup, a line break and a look-alike link.
    const name = 'Eve <b>Bold</b> & "co"\nReset here: https://evil.example/reset-password?token=x';
    await mailing.database.db.updateTable('users').set({ name }).where('id', '=', user.id).execute();
    const session = await login(app, user.email);
    const changed = await postJson(
      app,
      '/auth/password',
      { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
      bearer(session.accessToken),
    );
    expect(changed.statusCode).toBe(204);

    const [notice] = await mailTo(smtp, user.email, NOTICE.passwordChanged);
    const text = notice?.text ?? '';
    const html = notice?.html ?? '';
    expect(text.split('\n')[0]).toBe(
      'Hello Eve <b>Bold</b> & "co" Reset here: evil\u2024example/reset-password?token=x,',
    );
    expect(text.split('\n').some((line) => line.startsWith('Reset here'))).toBe(false);
    expect(html).toContain('Hello Eve &lt;b&gt;Bold&lt;/b&gt; &amp; &quot;co&quot; Reset here: evil\u2024example');
    expect(html).not.toContain('<b>');
    for (const part of [text, html]) expect(part).not.toMatch(/https?:\/\/|evil\.example/);
  });

  test('the name is escaped in the email-change links too', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const user = await verifiedUser(mailing, 'mal@example.com', 'Mal <script>x()</script>');
    const session = await login(mailing.app, user.email);
    const requested = await postJson(
      mailing.app,
      '/auth/email/change',
      { newEmail: 'mal@new.example.com', password: PASSWORD },
      bearer(session.accessToken),
    );
    expect(requested.statusCode).toBe(202);
    for (const [address, subject] of [
      ['mal@new.example.com', 'Confirm your new email address'],
      [user.email, 'Confirm the change of your email address'],
    ] as const) {
      const [email] = await mailTo(mailing.smtp, address, subject);
      expect(email?.html).toContain('Hello Mal &lt;script&gt;x()&lt;/script&gt;,');
      expect(email?.html).not.toContain('<script>');
      expect(email?.text).toContain('Hello Mal <script>x()</script>,');
      expect(email?.text).toContain('You received this email because');
    }
  });
});

describe('registration that does not tell who has an account (REGISTRATION_ENUMERATION_SAFE)', () => {
  test('off (the default): 201 {user} for a new address and 409 for a taken one, no notice', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    await createUser(mailing.database.db, { email: 'taken@example.com' });
    const fresh = await register(mailing.app, 'fresh@example.com');
    expect(fresh.statusCode, fresh.body).toBe(201);
    expect(fresh.json<{ user: UserJson }>().user.email).toBe('fresh@example.com');
    expectError(await register(mailing.app, 'taken@example.com'), { statusCode: 409, code: 'UNIQUE_VIOLATION' });
    const templates = (await mailing.outbox()).map((row) => row.template);
    expect(templates).toEqual(['email_verification']);
  });

  test('on: the same 202 body for a new and a taken address; the owner of the taken one gets a notice', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished, { env: { REGISTRATION_ENUMERATION_SAFE: 'true' } });
    const { app, smtp } = mailing;
    const owner = await createUser(mailing.database.db, { email: 'taken@example.com', name: 'Owner' });

    const fresh = await register(app, 'fresh@example.com');
    const taken = await register(app, ' Taken@Example.com ', 'Intruder');
    expect(fresh.statusCode, fresh.body).toBe(202);
    expect(taken.statusCode, taken.body).toBe(202);
    expect(taken.body).toBe(fresh.body);
    expect(fresh.json()).toEqual({ status: 'accepted' });

    // The new address is registered and verifies as usual.
    const [welcome] = await mailTo(smtp, 'fresh@example.com', 'Confirm your email address');
    const verified = await postJson(app, '/auth/email/verify', {
      token: tokenFromLink(welcome?.text ?? '', '/verify-email'),
    });
    expect(verified.statusCode).toBe(200);
    // The taken one is unchanged, and its owner (not the intruder) is greeted and told.
    const [notice] = await mailTo(smtp, owner.email, NOTICE.accountExists);
    expectPlainNotice(notice);
    expect(notice?.text).toMatch(/^Hello Owner,/);
    const owners = await mailing.database.db
      .selectFrom('users')
      .select(['id', 'name'])
      .where('email', '=', 'taken@example.com')
      .execute();
    expect(owners).toEqual([{ id: owner.id, name: 'Owner' }]);
    await login(app, owner.email);

    // Asked again, it answers the same but does not fill the owner's mailbox.
    expect((await register(app, 'taken@example.com')).body).toBe(fresh.body);
    const notices = (await mailing.outbox()).filter((row) => row.template === 'notice_account_exists');
    expect(notices).toHaveLength(1);
  });

  test('on: an email change to a taken address is answered 202 too, and only its owner is told', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished, { env: { REGISTRATION_ENUMERATION_SAFE: 'true' } });
    const { app, smtp } = mailing;
    const owner = await createUser(mailing.database.db, { email: 'taken@example.com', name: 'Owner' });
    const asker = await verifiedUser(mailing, 'asker@example.com');
    const session = await login(app, asker.email);
    const requested = await postJson(
      app,
      '/auth/email/change',
      { newEmail: owner.email, password: PASSWORD },
      bearer(session.accessToken),
    );
    expect(requested.statusCode, requested.body).toBe(202);
    expect(requested.json()).toEqual({ status: 'accepted' });
    const [notice] = await mailTo(smtp, owner.email, NOTICE.accountExists);
    expectPlainNotice(notice);
    await expect.poll(async () => (await mailing.outbox()).every((row) => row.state === 'sent')).toBe(true);
    expect(smtp.to(asker.email)).toEqual([]);
    expect((await mailing.outbox()).map((row) => row.template)).toEqual(['notice_account_exists']);
  });
});
