import type { LightMyRequestResponse } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import type { App } from '../../src/app.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { describe, expect, test } from '../helpers/database.ts';
import type { ReceivedEmail } from '../helpers/smtp.ts';
import { APP_URL, changeToken, mailTo, startMailingApp, type MailingApp } from '../helpers/email.ts';
import {
  bearer,
  createUser,
  decodeJwt,
  expectError,
  expectUnauthorized,
  expectUserShape,
  login,
  PASSWORD,
  postJson,
  type UserJson,
} from '../helpers/http.ts';

// Changing the email address (api.md v3): both addresses confirm, over a real SMTP server; the
// change takes effect in one transaction once both links were used and the address is still free.

const OLD = 'ada@old.example.com';
const NEW = 'ada@new.example.com';
const TO_NEW = 'Confirm your new email address';
const TO_CURRENT = 'Confirm the change of your email address';
const CHANGED = 'Your email address was changed';

interface Outcome {
  status: 'awaiting_other' | 'changed';
  user: UserJson;
}

/** An account whose address is verified, with two sessions: the one that asks, and another device. */
async function account(mailing: MailingApp, options: { verified?: boolean } = {}) {
  const db = mailing.database.db;
  const user = await createUser(db, { email: OLD, name: 'Ada' });
  if (options.verified !== false) await new UserRepository(db).markEmailVerified(user.id, new Date());
  const asking = await login(mailing.app, OLD);
  const other = await login(mailing.app, OLD);
  return { user, asking, other };
}

function requestChange(app: App, accessToken: string, newEmail: string, password = PASSWORD) {
  return postJson(app, '/auth/email/change', { newEmail, password }, bearer(accessToken));
}

function confirm(app: App, token: string): Promise<LightMyRequestResponse> {
  return postJson(app, '/auth/email/change/confirm', { token });
}

function outcome(response: LightMyRequestResponse): Outcome {
  expect(response.statusCode, response.body).toBe(200);
  expect(response.headers['cache-control']).toBe('no-store');
  const body = response.json<Outcome>();
  expectUserShape(body.user);
  return body;
}

/** The two links of the latest request, by the address they went to. */
async function links(mailing: MailingApp, newEmail: string, count = 1): Promise<{ toNew: string; toCurrent: string }> {
  const [toNew] = (await mailTo(mailing.smtp, newEmail, TO_NEW, count)).slice(-1);
  const [toCurrent] = (await mailTo(mailing.smtp, OLD, TO_CURRENT, count)).slice(-1);
  return { toNew: changeToken(toNew), toCurrent: changeToken(toCurrent) };
}

async function auditTypes(mailing: MailingApp, userId: string): Promise<string[]> {
  const rows = await mailing.database.db
    .selectFrom('audit_events')
    .select('type')
    .where('user_id', '=', userId)
    .where('type', 'like', 'email.%')
    .orderBy('occurred_at')
    .orderBy('id')
    .execute();
  return rows.map((row) => row.type);
}

async function me(app: App, accessToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: '/auth/me', headers: bearer(accessToken) });
}

function expectNoLinkOrToken(email: ReceivedEmail | undefined, ...tokens: string[]) {
  for (const part of [email?.text ?? '', email?.html ?? '']) {
    expect(part).not.toMatch(/https?:\/\//);
    expect(part).not.toContain('token');
    expect(part).not.toContain('<a ');
    for (const token of tokens) expect(part).not.toContain(token);
  }
}

describe('POST /auth/email/change and /auth/email/change/confirm', () => {
  test.for(['new', 'current'] as const)(
    'moves the account once both links were used, the %s address first',
    async (first, { onTestFinished }) => {
      const mailing = await startMailingApp(onTestFinished);
      const { app } = mailing;
      const { user, asking, other } = await account(mailing);

      const requested = await requestChange(app, asking.accessToken, ' Ada@New.Example.com ');
      expect(requested.statusCode, requested.body).toBe(202);
      expect(requested.json()).toEqual({ status: 'accepted' });

      const { toNew, toCurrent } = await links(mailing, NEW);
      const [currentEmail] = await mailTo(mailing.smtp, OLD, TO_CURRENT);
      // The current address is told where the account would move, and links go to the client app.
      expect(currentEmail?.text).toContain(NEW);
      expect(currentEmail?.text).toContain(`${APP_URL}/confirm-email-change?token=`);
      const [firstToken, secondToken] = first === 'new' ? [toNew, toCurrent] : [toCurrent, toNew];

      const halfway = outcome(await confirm(app, firstToken));
      expect(halfway.status).toBe('awaiting_other');
      expect(halfway.user.email).toBe(OLD);
      expect((await me(app, other.accessToken)).statusCode).toBe(200);

      const done = outcome(await confirm(app, secondToken));
      expect(done.status).toBe('changed');
      expect(done.user).toMatchObject({ id: user.id, email: NEW });
      expect(done.user.emailVerifiedAt).not.toBeNull();

      // Every other session ended (access and refresh tokens); the one that asked stays.
      expectUnauthorized(await me(app, other.accessToken));
      expectUnauthorized(await postJson(app, '/auth/refresh', { refreshToken: other.refreshToken }));
      const mine = await me(app, asking.accessToken);
      expect(mine.statusCode).toBe(200);
      expect(mine.json<{ user: UserJson }>().user.email).toBe(NEW);

      // The account signs in with the new address only.
      await login(app, NEW);
      expectUnauthorized(await postJson(app, '/auth/login', { email: OLD, password: PASSWORD }), 'INVALID_CREDENTIALS');

      // Links work once.
      expectError(await confirm(app, firstToken), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
      expectError(await confirm(app, secondToken), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });

      expect(await auditTypes(mailing, user.id)).toEqual(['email.change_requested', 'email.changed']);
      const ended = await mailing.database.db
        .selectFrom('sessions')
        .select(['id', 'end_reason'])
        .where('user_id', '=', user.id)
        .where('ended_at', 'is not', null)
        .execute();
      expect(ended.map((row) => row.end_reason).sort()).toEqual(['email_changed', 'email_changed']);
      expect(ended.map((row) => row.id)).not.toContain(decodeJwt(asking.accessToken).payload.sid);

      // The old address is told, without a link or a token.
      const [notice] = await mailTo(mailing.smtp, OLD, CHANGED);
      expectNoLinkOrToken(notice, toNew, toCurrent);
      expect(mailing.smtp.to(NEW).map((email) => email.subject)).toEqual([TO_NEW]);
    },
  );

  test('both links used at the same moment: one answers awaiting_other, the other changed, once', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { user, asking } = await account(mailing);
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const { toNew, toCurrent } = await links(mailing, NEW);

    const answers = await Promise.all([confirm(app, toNew), confirm(app, toCurrent)]);
    expect(answers.map((answer) => outcome(answer).status).sort()).toEqual(['awaiting_other', 'changed']);
    expect(await auditTypes(mailing, user.id)).toEqual(['email.change_requested', 'email.changed']);
    await mailTo(mailing.smtp, OLD, CHANGED);
  });

  test('one link alone changes nothing: the status stays awaiting_other', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { user, asking, other } = await account(mailing);
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const { toNew } = await links(mailing, NEW);

    expect(outcome(await confirm(app, toNew)).status).toBe('awaiting_other');
    // Presented again it is used up, whichever link it was.
    expectError(await confirm(app, toNew), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });

    expect((await new UserRepository(mailing.database.db).findById(user.id))?.email).toBe(OLD);
    expectUnauthorized(await postJson(app, '/auth/login', { email: NEW, password: PASSWORD }), 'INVALID_CREDENTIALS');
    expect((await me(app, other.accessToken)).statusCode).toBe(200);
    expect(await auditTypes(mailing, user.id)).toEqual(['email.change_requested']);
  });

  test('a newer request supersedes both links of the earlier one', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { user, asking } = await account(mailing);
    const SECOND = 'ada@second.example.com';
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const earlier = await links(mailing, NEW);
    expect((await requestChange(app, asking.accessToken, SECOND)).statusCode).toBe(202);
    const later = await links(mailing, SECOND, 1);
    // The current address got two links by now: the later one is the second.
    const [, secondToCurrent] = await mailTo(mailing.smtp, OLD, TO_CURRENT, 2);

    for (const token of [earlier.toNew, earlier.toCurrent]) {
      expectError(await confirm(app, token), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    }
    expect(outcome(await confirm(app, later.toNew)).status).toBe('awaiting_other');
    const done = outcome(await confirm(app, changeToken(secondToCurrent)));
    expect(done).toMatchObject({ status: 'changed', user: { id: user.id, email: SECOND } });
  });

  test('an address taken between the request and the last confirmation: 409, nothing changed', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { user, asking, other } = await account(mailing);
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const { toNew, toCurrent } = await links(mailing, NEW);
    expect(outcome(await confirm(app, toNew)).status).toBe('awaiting_other');

    const registered = await postJson(app, '/auth/register', { email: NEW, password: PASSWORD, name: 'Quick' });
    expect(registered.statusCode, registered.body).toBe(201);

    expectError(await confirm(app, toCurrent), { statusCode: 409, code: 'UNIQUE_VIOLATION' });
    const row = await new UserRepository(mailing.database.db).findById(user.id);
    expect(row?.email).toBe(OLD);
    expect((await me(app, other.accessToken)).statusCode).toBe(200);
    expect(await auditTypes(mailing, user.id)).toEqual(['email.change_requested']);
    // Nothing was queued for the change: no notice to the old address.
    const templates = (await mailing.outbox()).map((message) => message.template);
    expect(templates).not.toContain('notice_email_changed');
  });

  test('a wrong password is 401 and sends nothing', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    const { user, asking } = await account(mailing);
    expectUnauthorized(
      await requestChange(mailing.app, asking.accessToken, NEW, 'not the password'),
      'INVALID_CREDENTIALS',
    );
    expect(await mailing.outbox()).toEqual([]);
    expect(await auditTypes(mailing, user.id)).toEqual([]);
  });

  test('a stolen access token cannot guess the password through the email change', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    const { asking } = await account(mailing);
    for (let i = 0; i < 5; i++) {
      expectUnauthorized(
        await requestChange(mailing.app, asking.accessToken, NEW, `wrong guess ${i}`),
        'INVALID_CREDENTIALS',
      );
    }
    // The right one is refused too now: guessing stopped at LOGIN_MAX_FAILURES.
    const refused = expectError(await requestChange(mailing.app, asking.accessToken, NEW), {
      statusCode: 429,
      code: 'RATE_LIMITED',
    });
    expect(refused.message).not.toBe('');
    expect(await mailing.outbox()).toEqual([]);
  });

  test('an address another account has is 409 at the request (the default setting)', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    const { asking } = await account(mailing);
    await createUser(mailing.database.db, { email: NEW });
    const refused = expectError(await requestChange(mailing.app, asking.accessToken, NEW.toUpperCase()), {
      statusCode: 409,
      type: 'UniqueConstraintError',
      code: 'UNIQUE_VIOLATION',
    });
    expect(refused.field).toBe('newEmail');
    expect(await mailing.outbox()).toEqual([]);
  });

  test.for([
    ['not an address', { newEmail: 'nope', password: PASSWORD }],
    ['its own address', { newEmail: OLD, password: PASSWORD }],
    ['no password', { newEmail: NEW }],
  ] as const)('refuses %s with 400', async ([, body], { onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished, { dispatch: false });
    const { asking } = await account(mailing);
    const response = await postJson(mailing.app, '/auth/email/change', body, bearer(asking.accessToken));
    expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' });
  });

  test('needs a bearer token', async ({ onTestFinished }) => {
    const { app } = await startMailingApp(onTestFinished, { dispatch: false });
    expectUnauthorized(await postJson(app, '/auth/email/change', { newEmail: NEW, password: PASSWORD }));
  });

  test('an account whose address was never verified confirms with the new address only', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { user, asking } = await account(mailing, { verified: false });
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const [toNew] = await mailTo(mailing.smtp, NEW, TO_NEW);

    const done = outcome(await confirm(app, changeToken(toNew)));
    expect(done).toMatchObject({ status: 'changed', user: { id: user.id, email: NEW } });
    expect(done.user.emailVerifiedAt).not.toBeNull();
    // No link went to the unverified address; it still gets the notice.
    await mailTo(mailing.smtp, OLD, CHANGED);
    expect(mailing.smtp.to(OLD).map((email) => email.subject)).toEqual([CHANGED]);
  });

  test('turning on a second factor cancels a change asked for without one (the new link alone would have done)', async ({
    onTestFinished,
  }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    // A session with only the (stolen) password asks; the owner then turns on a second factor.
    const { user, asking, other } = await account(mailing, { verified: false });
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const [toNew] = await mailTo(mailing.smtp, NEW, TO_NEW);
    const enrol = await postJson(app, '/auth/mfa/totp', {}, bearer(other.accessToken));
    const { factor, secret } = enrol.json<{ factor: { id: string }; secret: string }>();
    const code = TOTP.generate({ secret: Secret.fromBase32(secret), period: 30, digits: 6 });
    const verified = await postJson(app, `/auth/mfa/totp/${factor.id}/verify`, { code }, bearer(other.accessToken));
    expect(verified.statusCode, verified.body).toBe(200);

    expectError(await confirm(app, changeToken(toNew)), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    expect((await new UserRepository(mailing.database.db).findById(user.id))?.email).toBe(OLD);
  });

  test('a reset link sent to the old address stops working once the account moved', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app } = mailing;
    const { asking } = await account(mailing);
    expect((await postJson(app, '/auth/password/forgot', { email: OLD })).statusCode).toBe(202);
    const [reset] = await mailTo(mailing.smtp, OLD, 'Reset your password');
    expect((await requestChange(app, asking.accessToken, NEW)).statusCode).toBe(202);
    const { toNew, toCurrent } = await links(mailing, NEW);
    outcome(await confirm(app, toNew));
    expect(outcome(await confirm(app, toCurrent)).status).toBe('changed');

    const resetToken = /reset-password\?token=([^\s&]+)/.exec(reset?.text ?? '')?.[1] ?? '';
    expectError(
      await postJson(app, '/auth/password/reset', {
        token: decodeURIComponent(resetToken),
        newPassword: 'taken over!!',
      }),
      { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' },
    );
  });

  test('the support path: an admin moves a user who lost the old mailbox, audited', async ({ onTestFinished }) => {
    const mailing = await startMailingApp(onTestFinished);
    const { app, smtp, database } = mailing;
    const { user, asking } = await account(mailing);
    const admin = await createUser(database.db, { role: 'admin' });
    const adminToken = (await login(app, admin.email)).accessToken;
    const patch = (body: Record<string, string>) =>
      app.inject({ method: 'PATCH', url: `/users/${user.id}`, payload: body, headers: bearer(adminToken) });

    await createUser(database.db, { email: 'someone@example.com' });
    const taken = expectError(await patch({ email: 'someone@example.com' }), {
      statusCode: 409,
      code: 'UNIQUE_VIOLATION',
    });
    expect(taken.field).toBe('email');

    const moved = await patch({ email: NEW });
    expect(moved.statusCode, moved.body).toBe(200);
    // The new address has not proved itself yet: it gets a verification link.
    expect(moved.json<{ user: UserJson }>().user).toMatchObject({ email: NEW, emailVerifiedAt: null });
    const [welcome] = await mailTo(smtp, NEW, 'Confirm your email address');
    expect(welcome?.text).toContain(`${APP_URL}/verify-email?token=`);
    const [notice] = await mailTo(smtp, OLD, CHANGED);
    expectNoLinkOrToken(notice);
    expectUnauthorized(await me(app, asking.accessToken));

    const events = await database.db
      .selectFrom('audit_events')
      .select(['type', 'actor_id', 'details'])
      .where('user_id', '=', user.id)
      .where('type', '=', 'email.changed')
      .execute();
    expect(events).toEqual([{ type: 'email.changed', actor_id: admin.id, details: { via: 'admin' } }]);
  });
});
