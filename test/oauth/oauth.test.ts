import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { createApiClient } from '../../client/index.ts';
import { afterAll, beforeAll } from 'vitest';
import type { DB } from '../../db-types/index.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { signInAtProvider, startOidcProvider, type TestIdentityProvider } from '../helpers/oidc-provider.ts';
import {
  API_URL,
  ApiBrowser,
  APP_URL,
  authorize,
  callbackOf,
  landing,
  oauthEnv,
  REDIRECT_TO,
  signInAndExchange,
  signInThrough,
} from './oauth-support.ts';
import {
  accessTokenFor,
  bearer,
  createUser,
  decodeJwt,
  expectError,
  expectUserShape,
  login,
  postJson,
  type LoginJson,
} from '../helpers/http.ts';

// Sign-in through another identity provider, against a real OpenID Provider (oidc-provider) on a
// local port: its users sign in and consent over HTTP, its ID tokens are signed with its own keys.

let idp: TestIdentityProvider;

beforeAll(async () => {
  idp = await startOidcProvider({ redirectUris: [callbackOf('idp')], otherClientIds: ['another-app'] });
});
afterAll(async () => {
  await idp.stop();
});

/** A provider user with a fresh id and address, asserted as given. */
function providerUser(claims: { email?: string; email_verified?: boolean; name?: string } = {}): string {
  const sub = `sub-${randomUUID()}`;
  idp.accounts.set(sub, { email: `${sub}@example.com`, email_verified: true, name: 'Provider User', ...claims });
  return sub;
}

async function identitiesOf(db: Kysely<DB>, userId: string) {
  return db.selectFrom('identities').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
}

async function usersWithEmail(db: Kysely<DB>, email: string) {
  return db.selectFrom('users').selectAll().where('email', '=', email).execute();
}

async function auditTypes(db: Kysely<DB>, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('audit_events')
    .select('type')
    .where('user_id', '=', userId)
    .orderBy('occurred_at')
    .orderBy('id')
    .execute();
  return rows.map((row) => row.type);
}

async function verifiedUser(db: Kysely<DB>, email: string) {
  const user = await createUser(db, { email });
  await db.updateTable('users').set({ email_verified_at: new Date() }).where('id', '=', user.id).execute();
  return user;
}

describe('sign-in through an identity provider', () => {
  test('lists the configured providers with their names', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }, { OIDC_IDP_NAME: 'Test IdP' }) });
    const response = await app.inject({ url: '/auth/providers' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ items: [{ id: 'idp', name: 'Test IdP' }] });
  });

  test('signs up a new account without a password, its email verified as the provider asserts', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser({ name: 'Ada Lovelace' });
    const browser = new ApiBrowser();
    const started = await authorize(app, browser);
    expect(started.statusCode).toBe(302);
    const cookie = started.cookies.find((c) => c.name === 'oauth_browser');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/auth/oauth', maxAge: 600 });
    const authorizationUrl = new URL(String(started.headers.location));
    expect(authorizationUrl.origin).toBe(idp.issuer);
    expect(Object.fromEntries(authorizationUrl.searchParams)).toMatchObject({
      client_id: idp.clientId,
      redirect_uri: callbackOf('idp'),
      response_type: 'code',
      scope: 'openid email profile',
      code_challenge_method: 'S256',
      state: expect.any(String),
      nonce: expect.any(String),
      code_challenge: expect.any(String),
    });

    const back = await browser.get(app, (await signInAtProvider(authorizationUrl.href, sub)).href);
    const { url, fragment } = landing(back);
    expect(url.origin + url.pathname).toBe(REDIRECT_TO);
    expect(url.search).toBe('');
    expect([...fragment.keys()]).toEqual(['code']);

    const exchanged = await postJson(app, '/auth/oauth/exchange', { code: fragment.get('code') });
    expect(exchanged.statusCode, exchanged.body).toBe(200);
    const body = exchanged.json<LoginJson>();
    const user = expectUserShape(body.user);
    expect(user).toMatchObject({
      email: `${sub}@example.com`,
      name: 'Ada Lovelace',
      emailVerifiedAt: expect.any(String),
    });
    expect(body).toMatchObject({ tokenType: 'Bearer', deviceToken: expect.any(String) });
    expect(decodeJwt(body.accessToken).payload).toMatchObject({ sub: user.id, aal: 'aal1', amr: ['oidc:idp'] });
    const [row] = await usersWithEmail(db, user.email);
    expect(row?.password_hash).toBe('');
    expect(await db.selectFrom('email_outbox').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
    expect(await identitiesOf(db, user.id)).toEqual([
      expect.objectContaining({ provider: 'idp', subject: sub, email: user.email, email_verified: true }),
    ]);
    expect(await auditTypes(db, user.id)).toEqual(['user.registered', 'identity.linked', 'login.succeeded']);
    const signedIn = await db
      .selectFrom('audit_events')
      .select('details')
      .where('user_id', '=', user.id)
      .where('type', '=', 'login.succeeded')
      .executeTakeFirstOrThrow();
    expect(signedIn.details).toMatchObject({ amr: ['oidc:idp'] });
    expect((await app.inject({ url: '/auth/me', headers: bearer(body.accessToken) })).statusCode).toBe(200);
  });

  test('creates an unverified account when the provider does not assert the email verified', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser({ email_verified: false });
    const exchanged = await signInAndExchange(app, sub);
    expect(exchanged.statusCode, exchanged.body).toBe(200);
    const { user } = exchanged.json<LoginJson>();
    expect(user.emailVerifiedAt).toBeNull();
    // As after a registration: a verification email is on its way.
    const queued = await db.selectFrom('email_outbox').select('template').where('user_id', '=', user.id).execute();
    expect(queued.map((row) => row.template)).toEqual(['email_verification']);
  });

  test('signs in again to the same account and records when the identity was last used', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const first = (await signInAndExchange(app, sub)).json<LoginJson>();
    const [before] = await identitiesOf(db, first.user.id);
    await db
      .updateTable('identities')
      .set({ last_used_at: new Date(Date.now() - 86_400_000) })
      .execute();
    const second = await signInAndExchange(app, sub);
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json<LoginJson>().user.id).toBe(first.user.id);
    expect(await usersWithEmail(db, first.user.email)).toHaveLength(1);
    const [after] = await identitiesOf(db, first.user.id);
    expect(after?.id).toBe(before?.id);
    expect(after?.last_used_at?.getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  test('links automatically to an account with the same email when both sides have it verified', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const account = await verifiedUser(db, `${sub}@example.com`);
    const exchanged = await signInAndExchange(app, sub);
    expect(exchanged.statusCode, exchanged.body).toBe(200);
    expect(exchanged.json<LoginJson>().user.id).toBe(account.id);
    expect(await identitiesOf(db, account.id)).toHaveLength(1);
    const notices = await db.selectFrom('email_outbox').select('template').where('user_id', '=', account.id).execute();
    expect(notices.map((n) => n.template)).toContain('notice_identity_linked');
  });

  test.for([
    { case: 'the provider does not assert the email verified', providerVerified: false, accountVerified: true },
    { case: "the account's own email is not verified", providerVerified: true, accountVerified: false },
  ])('refuses with ACCOUNT_EXISTS when $case, and links nothing', async (row, { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser({ email_verified: row.providerVerified });
    const email = `${sub}@example.com`;
    const account = row.accountVerified ? await verifiedUser(db, email) : await createUser(db, { email });
    const { url, fragment } = landing(await signInThrough(app, sub));
    expect(url.origin + url.pathname).toBe(REDIRECT_TO);
    expect(Object.fromEntries(fragment)).toEqual({ error: 'ACCOUNT_EXISTS' });
    expect(await identitiesOf(db, account.id)).toEqual([]);
    expect(await usersWithEmail(db, email)).toHaveLength(1);
    expect(await db.selectFrom('oauth_exchange_codes').select('id').execute()).toEqual([]);
  });

  test('refuses a disabled account, found by its identity or by its email', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const { user } = (await signInAndExchange(app, sub)).json<LoginJson>();
    await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', user.id).execute();
    expect(Object.fromEntries(landing(await signInThrough(app, sub)).fragment)).toEqual({ error: 'FORBIDDEN' });
    const other = providerUser();
    const disabled = await verifiedUser(db, `${other}@example.com`);
    await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', disabled.id).execute();
    expect(Object.fromEntries(landing(await signInThrough(app, other)).fragment)).toEqual({ error: 'FORBIDDEN' });
    expect(await identitiesOf(db, disabled.id)).toEqual([]);
  });

  test('answers an account with a second factor with the MFA challenge, first factor oidc:<provider>', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const account = await verifiedUser(db, `${sub}@example.com`);
    await db.updateTable('users').set({ mfa_enabled: true }).where('id', '=', account.id).execute();
    const exchanged = await signInAndExchange(app, sub);
    expect(exchanged.statusCode, exchanged.body).toBe(200);
    expect(exchanged.json()).toMatchObject({ mfaRequired: true, mfaToken: expect.any(String), expiresIn: 300 });
    expect(exchanged.json()).not.toHaveProperty('accessToken');
    const challenge = await db
      .selectFrom('mfa_challenges')
      .selectAll()
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    expect(challenge.first_factor).toBe('oidc:idp');
    expect(await db.selectFrom('sessions').select('id').where('user_id', '=', account.id).execute()).toHaveLength(1);
  });

  test.for([
    ['another origin', 'https://evil.example/signed-in'],
    ['a scheme-relative URL', '//evil.example/signed-in'],
    ['a relative path', '/signed-in'],
    ['userinfo before another host', `${APP_URL}@evil.example/`],
    ['a look-alike host', 'http://app.test.evil.example/'],
    ['another port', 'http://app.test:8080/'],
    ['another scheme', 'javascript:alert(1)//http://app.test/'],
    ['a backslash', 'http:\\\\evil.example\\app.test'],
  ])('refuses an open redirect: %s', async ([, redirectTo], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const response = await authorize(app, new ApiBrowser(), 'idp', redirectTo);
    expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED', field: 'redirectTo' });
    expect(response.cookies).toEqual([]);
    expect(await db.selectFrom('oauth_flows').select('id').execute()).toEqual([]);
  });

  test('accepts a redirect to an origin of OAUTH_REDIRECT_ALLOWLIST, and refuses an unknown provider', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, {
      env: oauthEnv({ idp }, { OAUTH_REDIRECT_ALLOWLIST: 'https://mobile.example' }),
    });
    expect((await authorize(app, new ApiBrowser(), 'idp', 'https://mobile.example/done')).statusCode).toBe(302);
    expectError(await authorize(app, new ApiBrowser(), 'nope'), { statusCode: 400, code: 'VALIDATION_FAILED' });
  });
});

describe('what a provider sign-in refuses', () => {
  test('refuses a callback replayed in another browser (login CSRF), and creates nothing', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const attacker = providerUser();
    const attackersBrowser = new ApiBrowser();
    const started = await authorize(app, attackersBrowser);
    const callback = await signInAtProvider(String(started.headers.location), attacker);
    for (const victim of [new ApiBrowser(), Object.assign(new ApiBrowser(), { cookie: 'A'.repeat(43) })]) {
      expectError(await victim.get(app, callback.href), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    }
    expect(await usersWithEmail(db, `${attacker}@example.com`)).toEqual([]);
    // The state is used up: not even its own browser can use it now.
    expectError(await attackersBrowser.get(app, callback.href), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
  });

  test('refuses a callback presented twice, and an exchange code used twice', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const browser = new ApiBrowser();
    const started = await authorize(app, browser);
    const callback = await signInAtProvider(String(started.headers.location), providerUser());
    const code = landing(await browser.get(app, callback.href)).fragment.get('code');
    expectError(await browser.get(app, callback.href), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    expect((await postJson(app, '/auth/oauth/exchange', { code })).statusCode).toBe(200);
    expectError(await postJson(app, '/auth/oauth/exchange', { code }), {
      statusCode: 400,
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
    expectError(await postJson(app, '/auth/oauth/exchange', { code: 'not-a-code' }), {
      statusCode: 400,
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
  });

  test('ends at redirectTo with an error when the user cancels at the provider, writing nothing', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const browser = new ApiBrowser();
    const started = await authorize(app, browser);
    const callback = await signInAtProvider(String(started.headers.location), sub, { cancel: true });
    expect(callback.searchParams.get('error')).toBe('access_denied');
    const { url, fragment } = landing(await browser.get(app, callback.href));
    expect(url.origin + url.pathname).toBe(REDIRECT_TO);
    expect(Object.fromEntries(fragment)).toEqual({ error: 'INVALID_OR_EXPIRED_TOKEN' });
    expect(await usersWithEmail(db, `${sub}@example.com`)).toEqual([]);
  });

  test('refuses the exchange of an account disabled since its callback', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const { fragment } = landing(await signInThrough(app, sub));
    await db.updateTable('users').set({ status: 'disabled' }).where('email', '=', `${sub}@example.com`).execute();
    expectError(await postJson(app, '/auth/oauth/exchange', { code: fragment.get('code') }), {
      statusCode: 403,
      code: 'FORBIDDEN',
    });
  });

  test('refuses an exchange code after its 60 seconds', async ({ db, onTestFinished }) => {
    let now = Date.now();
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }), clock: () => new Date(now) });
    const { fragment } = landing(await signInThrough(app, providerUser()));
    now += 61_000;
    expectError(await postJson(app, '/auth/oauth/exchange', { code: fragment.get('code') }), {
      statusCode: 400,
      code: 'INVALID_OR_EXPIRED_TOKEN',
    });
  });

  test.for([
    ['nonce', { nonce: 'a-nonce-the-provider-never-saw' }],
    ['PKCE verifier', { code_verifier: 'a'.repeat(64) }],
  ] as const)(
    'refuses an ID token whose %s does not match the flow, writing nothing',
    async ([, tampered], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
      const sub = providerUser();
      const browser = new ApiBrowser();
      const started = await authorize(app, browser);
      const callback = await signInAtProvider(String(started.headers.location), sub);
      await db.updateTable('oauth_flows').set(tampered).execute();
      const { fragment } = landing(await browser.get(app, callback.href));
      expect(Object.fromEntries(fragment)).toEqual({ error: 'INVALID_OR_EXPIRED_TOKEN' });
      expect(await usersWithEmail(db, `${sub}@example.com`)).toEqual([]);
      expect(await db.selectFrom('identities').select('id').where('subject', '=', sub).execute()).toEqual([]);
    },
  );

  test('refuses a code the provider issued to another client (another audience), writing nothing', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const browser = new ApiBrowser();
    const started = new URL(String((await authorize(app, browser)).headers.location));
    started.searchParams.set('client_id', 'another-app');
    const callback = await signInAtProvider(started.href, sub);
    const { fragment } = landing(await browser.get(app, callback.href));
    expect(Object.fromEntries(fragment)).toEqual({ error: 'INVALID_OR_EXPIRED_TOKEN' });
    expect(await usersWithEmail(db, `${sub}@example.com`)).toEqual([]);
  });

  test('answers 503 PROVIDER_UNAVAILABLE when the provider cannot be discovered', async ({ db, onTestFinished }) => {
    const down = await startOidcProvider({ redirectUris: [callbackOf('down')] });
    await down.stop();
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ down }) });
    const response = await authorize(app, new ApiBrowser(), 'down');
    expectError(response, { statusCode: 503, code: 'PROVIDER_UNAVAILABLE' });
    expect(response.headers['retry-after']).toBeDefined();
  });

  test('discovers a provider that was down at start once it is back, without a restart', async ({
    db,
    onTestFinished,
  }) => {
    const first = await startOidcProvider({ redirectUris: [callbackOf('late')] });
    await first.stop();
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ late: first }) });
    expectError(await authorize(app, new ApiBrowser(), 'late'), { statusCode: 503, code: 'PROVIDER_UNAVAILABLE' });
    const back = await startOidcProvider({
      redirectUris: [callbackOf('late')],
      port: Number(new URL(first.issuer).port),
      clientSecret: first.clientSecret,
    });
    onTestFinished(() => back.stop());
    back.accounts.set('returning', { email: 'returning@example.com', email_verified: true });
    const exchanged = await signInAndExchange(app, 'returning', 'late');
    expect(exchanged.statusCode, exchanged.body).toBe(200);
  });

  test('ends the callback with error=PROVIDER_UNAVAILABLE when the token endpoint cannot be reached', async ({
    db,
    onTestFinished,
  }) => {
    const flaky = await startOidcProvider({ redirectUris: [callbackOf('flaky')] });
    onTestFinished(() => flaky.stop());
    flaky.accounts.set('someone', { email: 'someone@example.com', email_verified: true });
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ flaky }) });
    const browser = new ApiBrowser();
    const started = await authorize(app, browser, 'flaky');
    const callback = await signInAtProvider(String(started.headers.location), 'someone');
    await flaky.stop();
    const { fragment } = landing(await browser.get(app, callback.href));
    expect(Object.fromEntries(fragment)).toEqual({ error: 'PROVIDER_UNAVAILABLE' });
    expect(await usersWithEmail(db, 'someone@example.com')).toEqual([]);
  });
});

describe('linked identities', () => {
  /** Links `sub` to `user` through POST /auth/identities/idp/link and the browser leg. */
  async function link(app: Awaited<ReturnType<typeof testApp>>, user: { email: string }, sub: string) {
    const { accessToken } = await login(app, user.email);
    const started = await postJson(app, '/auth/identities/idp/link', { redirectTo: REDIRECT_TO }, bearer(accessToken));
    expect(started.statusCode, started.body).toBe(200);
    const { authorizeUrl } = started.json<{ authorizeUrl: string }>();
    expect(authorizeUrl).toMatch(/^http:\/\/api\.test\/auth\/oauth\/idp\/authorize\?link=/);
    const browser = new ApiBrowser();
    const opened = await browser.get(app, authorizeUrl);
    expect(opened.statusCode, opened.body).toBe(302);
    // The ticket is single use: another browser that opens it now gets nothing.
    expectError(await new ApiBrowser().get(app, authorizeUrl), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    const callback = await signInAtProvider(String(opened.headers.location), sub);
    return landing(await browser.get(app, callback.href));
  }

  test('opens a link URL only within 60 seconds of asking for it: a URL sent to someone else goes stale', async ({
    db,
    onTestFinished,
  }) => {
    let now = Date.now();
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }), clock: () => new Date(now) });
    const user = await createUser(db);
    const { accessToken } = await login(app, user.email);
    const ask = async () => {
      const started = await postJson(
        app,
        '/auth/identities/idp/link',
        { redirectTo: REDIRECT_TO },
        bearer(accessToken),
      );
      expect(started.statusCode, started.body).toBe(200);
      return started.json<{ authorizeUrl: string }>().authorizeUrl;
    };
    const stale = await ask();
    const fresh = await ask();
    now += 59_000;
    expect((await new ApiBrowser().get(app, fresh)).statusCode).toBe(302);
    now += 2_000;
    expectError(await new ApiBrowser().get(app, stale), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
    expect(await identitiesOf(db, user.id)).toEqual([]);
  });

  test.for([
    ['the account gained a second factor (the link began at aal1)', 'MFA_REQUIRED'],
    ['the session that began it logged out', 'INVALID_TOKEN'],
  ] as const)('links nothing when, before the provider answered, %s', async ([, error], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const user = await createUser(db);
    const session = await login(app, user.email);
    const started = await postJson(
      app,
      '/auth/identities/idp/link',
      { redirectTo: REDIRECT_TO },
      bearer(session.accessToken),
    );
    expect(started.statusCode, started.body).toBe(200);
    const browser = new ApiBrowser();
    const opened = await browser.get(app, started.json<{ authorizeUrl: string }>().authorizeUrl);
    expect(opened.statusCode, opened.body).toBe(302);
    const sub = providerUser();
    const callback = await signInAtProvider(String(opened.headers.location), sub);
    if (error === 'MFA_REQUIRED') {
      // The owner turns on a second factor from another session meanwhile.
      await db.updateTable('users').set({ mfa_enabled: true }).where('id', '=', user.id).execute();
    } else {
      expect((await postJson(app, '/auth/logout', { refreshToken: session.refreshToken })).statusCode).toBe(204);
    }

    const { fragment } = landing(await browser.get(app, callback.href));
    expect(Object.fromEntries(fragment)).toEqual({ error });
    expect(await identitiesOf(db, user.id)).toEqual([]);
    expect(await db.selectFrom('identities').select('id').where('subject', '=', sub).execute()).toEqual([]);
  });

  test('links an identity to the signed-in caller, lists it, and unlinks it', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const user = await createUser(db);
    const sub = providerUser({ email: 'somewhere-else@example.com' });
    const { url, fragment } = await link(app, user, sub);
    expect(url.origin + url.pathname).toBe(REDIRECT_TO);
    expect(Object.fromEntries(fragment)).toEqual({ linked: 'idp' });
    const token = accessTokenFor(user);
    const listed = await app.inject({ url: '/auth/identities', headers: bearer(token) });
    expect(listed.statusCode).toBe(200);
    const items = listed.json<{ items: { id: string }[] }>().items;
    expect(items).toEqual([
      { id: expect.any(String), provider: 'idp', email: 'somewhere-else@example.com', createdAt: expect.any(String) },
    ]);
    // The identity now signs in to this account.
    const signedIn = await signInAndExchange(app, sub);
    expect(signedIn.json<LoginJson>().user.id).toBe(user.id);

    const removed = await app.inject({
      method: 'DELETE',
      url: `/auth/identities/${items[0]?.id}`,
      headers: bearer(token),
    });
    expect(removed.statusCode, removed.body).toBe(204);
    expect(await identitiesOf(db, user.id)).toEqual([]);
    expect(await auditTypes(db, user.id)).toEqual(
      expect.arrayContaining(['identity.linked', 'login.succeeded', 'identity.unlinked']),
    );
    const notices = await db.selectFrom('email_outbox').select('template').where('user_id', '=', user.id).execute();
    expect(notices.map((n) => n.template).sort()).toEqual(['notice_identity_linked', 'notice_identity_unlinked']);
  });

  test('asks an account with a second factor to step up (aal2) before linking or unlinking', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const user = await createUser(db);
    await db.updateTable('users').set({ mfa_enabled: true }).where('id', '=', user.id).execute();
    const token = accessTokenFor(user);
    expectError(await postJson(app, '/auth/identities/idp/link', { redirectTo: REDIRECT_TO }, bearer(token)), {
      statusCode: 403,
      code: 'MFA_REQUIRED',
    });
    expectError(
      await app.inject({ method: 'DELETE', url: `/auth/identities/${randomUUID()}`, headers: bearer(token) }),
      {
        statusCode: 403,
        code: 'MFA_REQUIRED',
      },
    );
    expect(await db.selectFrom('oauth_flows').select('id').execute()).toEqual([]);
  });

  test('refuses a link with IDENTITY_IN_USE when the identity belongs to another account', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = providerUser();
    const owner = (await signInAndExchange(app, sub)).json<LoginJson>().user;
    const other = await createUser(db);
    const { fragment } = await link(app, other, sub);
    expect(Object.fromEntries(fragment)).toEqual({ error: 'IDENTITY_IN_USE' });
    expect(await identitiesOf(db, other.id)).toEqual([]);
    expect(await identitiesOf(db, owner.id)).toHaveLength(1);
  });

  test('refuses to unlink the last way to sign in (LAST_SIGN_IN_METHOD), and another user’s identity (404)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const session = (await signInAndExchange(app, providerUser())).json<LoginJson>();
    const [identity] = await identitiesOf(db, session.user.id);
    const remove = (token: string) =>
      app.inject({ method: 'DELETE', url: `/auth/identities/${identity?.id}`, headers: bearer(token) });
    expectError(await remove(session.accessToken), { statusCode: 409, code: 'LAST_SIGN_IN_METHOD' });
    const stranger = await createUser(db);
    expectError(await remove(accessTokenFor(stranger)), { statusCode: 404, code: 'NOT_FOUND' });
    expect(await identitiesOf(db, session.user.id)).toHaveLength(1);
  });

  test('counts identities as a way to sign in when the last passkey is removed', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const session = (await signInAndExchange(app, providerUser())).json<LoginJson>();
    const passkeyId = randomUUID();
    await db
      .insertInto('passkey_credentials')
      .values({
        id: passkeyId,
        user_id: session.user.id,
        credential_id: randomUUID(),
        public_key: Buffer.from('key'),
        backed_up: false,
        device_type: 'singleDevice',
        name: 'Laptop',
        created_at: new Date(),
      })
      .execute();
    const removed = await app.inject({
      method: 'DELETE',
      url: `/auth/passkeys/${passkeyId}`,
      headers: bearer(session.accessToken),
    });
    expect(removed.statusCode, removed.body).toBe(204);
  });
});

describe('the typed client', () => {
  test('builds the sign-in URL and trades the code of the redirect for a session it keeps', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const api = createApiClient({
      baseUrl: API_URL,
      // The API over inject: the same requests and answers as over a socket.
      fetch: async (request) => {
        const { pathname, search } = new URL(request.url);
        const body = await request.text();
        const answer = await app.inject({
          method: request.method as 'GET' | 'POST' | 'DELETE',
          url: pathname + search,
          headers: Object.fromEntries(request.headers),
          ...(body === '' ? {} : { payload: body }),
        });
        return new Response(answer.statusCode === 204 ? null : answer.body, {
          status: answer.statusCode,
          headers: answer.headers as Record<string, string>,
        });
      },
    });
    expect((await api.GET('/auth/providers')).data).toEqual({ items: [{ id: 'idp', name: 'IDP' }] });
    const browser = new ApiBrowser();
    const started = await browser.get(app, api.providerSignInUrl('idp', REDIRECT_TO));
    const callback = await signInAtProvider(String(started.headers.location), providerUser());
    const code = landing(await browser.get(app, callback.href)).fragment.get('code') ?? '';
    const signedIn = await api.exchangeProviderCode(code);
    expect(signedIn.ok && !signedIn.value.mfaRequired).toBe(true);
    expect(api.tokens?.accessToken).toBeDefined();
    const listed = await api.GET('/auth/identities');
    expect(listed.data?.items).toEqual([expect.objectContaining({ provider: 'idp' })]);
    const again = await api.exchangeProviderCode(code);
    expect(again.ok ? undefined : again.error.code).toBe('INVALID_OR_EXPIRED_TOKEN');
  });
});

describe('two providers side by side', () => {
  let beta: TestIdentityProvider;
  beforeAll(async () => {
    beta = await startOidcProvider({ redirectUris: [callbackOf('beta')], clientId: 'our-api-at-beta' });
  });
  afterAll(async () => {
    await beta.stop();
  });

  test('lists both and signs one person in through either into one account', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp, beta }, { OIDC_BETA_NAME: 'Beta' }) });
    expect((await app.inject({ url: '/auth/providers' })).json()).toEqual({
      items: [
        { id: 'idp', name: 'IDP' },
        { id: 'beta', name: 'Beta' },
      ],
    });
    const sub = providerUser();
    beta.accounts.set('beta-user', { email: `${sub}@example.com`, email_verified: true });
    const first = (await signInAndExchange(app, sub, 'idp')).json<LoginJson>();
    const second = await signInAndExchange(app, 'beta-user', 'beta');
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json<LoginJson>().user.id).toBe(first.user.id);
    expect(decodeJwt(second.json<LoginJson>().accessToken).payload).toMatchObject({ amr: ['oidc:beta'] });
    const providers = (await identitiesOf(db, first.user.id)).map((identity) => identity.provider);
    expect(providers).toEqual(['idp', 'beta']);
    const metrics = (await app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/auth_oauth_callbacks_total\{provider="idp",outcome="signed_up"\} 1/);
    expect(metrics).toMatch(/auth_oauth_callbacks_total\{provider="beta",outcome="signed_in"\} 1/);
  });

  test("refuses one provider's callback presented at the other's (mix-up)", async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp, beta }) });
    const browser = new ApiBrowser();
    const started = await authorize(app, browser, 'idp');
    const callback = await signInAtProvider(String(started.headers.location), providerUser());
    const elsewhere = new URL(callback.href.replace('/auth/oauth/idp/', '/auth/oauth/beta/'));
    expectError(await browser.get(app, elsewhere.href), { statusCode: 400, code: 'INVALID_OR_EXPIRED_TOKEN' });
  });
});
