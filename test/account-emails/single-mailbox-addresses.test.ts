import fc from 'fast-check';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type { App } from '../../src/app.ts';
import { EMAIL_MAX } from '../../src/auth/credentials.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD, postJson, type UserJson } from '../helpers/http.ts';

// Issue 33 item 7: an email address is one RFC 5321 Mailbox. Address lists, groups, display
// names, comments and quoted local parts registered, and the verification and reset mail went to
// whichever recipient nodemailer (what the mailer uses) read out of them.

/** Each request from an address of its own, so no per-address limit interferes with the table. */
let nextClient = 0;
const client = () => {
  nextClient++;
  return `10.33.${Math.floor(nextClient / 250) % 250}.${(nextClient % 250) + 1}`;
};

async function register(app: App, email: string) {
  return app.inject({
    method: 'POST',
    url: '/auth/register',
    remoteAddress: client(),
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ email, password: PASSWORD, name: 'Mallory' }),
  });
}

const HOSTILE: readonly (readonly [string, string])[] = [
  ['an address list', 'victim,attacker@evil.example'],
  ['a list with the domain after the comma', 'victim@corp.example,attacker@evil.example'],
  ['an angle address then a bare domain', '<attacker@evil.example>,corp.example'],
  ['a group', 'undisclosed:attacker@evil.example;'],
  ['a group with a display name', 'victim@corp.example: attacker@evil.example;'],
  ['a display name', 'Victim <attacker@evil.example>'],
  ['an angle address', '<attacker@evil.example>'],
  ['a semicolon list', 'victim@corp.example;attacker@evil.example'],
  ['a quoted local part', '"victim@corp.example"@evil.example'],
  ['a quoted local part with a space', '"a b"@evil.example'],
  ['a comment in the local part', 'victim(comment)@corp.example'],
  ['a comment after the domain', 'attacker@evil.example(victim@corp.example)'],
  ['a backslash escape', 'victim\\@corp.example@evil.example'],
  ['an address literal', 'attacker@[192.0.2.1]'],
  ['a domain without a dot', 'attacker@localhost'],
  ['a leading dot', '.attacker@evil.example'],
  ['a trailing dot in the local part', 'attacker.@evil.example'],
  ['two dots in a row', 'at..tacker@evil.example'],
  ['an empty domain label', 'attacker@evil..example'],
  ['a trailing dot in the domain', 'attacker@evil.example.'],
  ['a label starting with a hyphen', 'attacker@-evil.example'],
  ['a label ending with a hyphen', 'attacker@evil-.example'],
  ['a space inside', 'attacker @evil.example'],
  ['a fullwidth comma (NFKC makes it a comma)', 'victim\uff0cattacker@evil.example'],
  ['a source route', '@corp.example:attacker@evil.example'],
];

describe('email addresses are single RFC 5321 mailboxes', () => {
  test.for(HOSTILE)(
    'register refuses %s (%s) with 400 VALIDATION_FAILED naming email',
    async ([, email], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);

      const response = await register(app, email);

      expect(expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' }).field).toBe('email');
      expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
    },
  );

  test.for(HOSTILE)(
    'a reset request refuses %s (%s) with 400 VALIDATION_FAILED and queues nothing',
    async ([, email], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);

      const response = await app.inject({
        method: 'POST',
        url: '/auth/password/forgot',
        remoteAddress: client(),
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email }),
      });

      expect(expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' }).field).toBe('email');
      expect(await db.selectFrom('email_outbox').select('id').execute()).toEqual([]);
    },
  );

  test.for(HOSTILE)(
    'an email change to %s (%s) is 400 VALIDATION_FAILED naming newEmail, and an admin setting it is 400 too',
    async ([, email], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);
      const user = await createUser(db);
      const admin = await createUser(db, { role: 'admin' });
      const before = await db.selectFrom('email_outbox').select('id').execute();

      const change = await postJson(
        app,
        '/auth/email/change',
        { newEmail: email, password: PASSWORD },
        bearer((await login(app, user.email)).accessToken),
      );
      const byAdmin = await app.inject({
        method: 'PATCH',
        url: `/users/${user.id}`,
        headers: { ...bearer((await login(app, admin.email)).accessToken), 'content-type': 'application/json' },
        payload: JSON.stringify({ email }),
      });

      expect(expectError(change, { statusCode: 400, code: 'VALIDATION_FAILED' }).field).toBe('newEmail');
      expect(expectError(byAdmin, { statusCode: 400, code: 'VALIDATION_FAILED' }).field).toBe('email');
      expect(await db.selectFrom('email_outbox').select('id').execute()).toEqual(before);
      const stored = await db.selectFrom('users').select('email').where('id', '=', user.id).executeTakeFirst();
      expect(stored?.email).toBe(user.email);
    },
  );

  test('every address register accepts is read by nodemailer as exactly that one recipient', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    // Every RFC 5322 atext character, internationalised parts, and what fast-check calls an address.
    const examples = [
      "!#$%&'*+/=?^_`{|}~-@example.com",
      'a.b-c+tag@sub.example-domain.org',
      'ünïcødé@bücher.example',
      '山田@例え.テスト',
      'user@xn--bcher-kva.example',
    ];
    const generated = fc.sample(
      fc.emailAddress().filter((email) => email.length <= EMAIL_MAX && (email.split('@')[1] ?? '').includes('.')),
      { numRuns: 60, seed: 33 },
    );
    for (const email of [...examples, ...generated]) {
      const response = await register(app, email);
      expect(response.statusCode, `${email}: ${response.body}`).toBe(201);
      const stored = response.json<{ user: UserJson }>().user.email;
      expect(addressparser(stored), stored).toEqual([{ address: stored, name: '' }]);
    }
  });

  test('login with an address-list email answers the same 401 as an unknown account', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);

    const response = await postJson(app, '/auth/login', { email: 'victim,attacker@evil.example', password: PASSWORD });

    expectError(response, { statusCode: 401, code: 'INVALID_CREDENTIALS' });
  });
});
