import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';
import type { DB } from '../../db-types/index.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { createUser, decodeJwt, PASSWORD } from '../helpers/http.ts';

/** Debian's package (`apt-get install chromium`); .ci/run installs it, so in CI the test always runs. */
const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (!available && !inCi) {
  console.warn(`passkeys-browser.test.ts: skipped, no Chromium at ${CHROMIUM} (apt-get install chromium)`);
}

// Nothing the browser does may reach the network beyond the servers of the test; *.localhost is
// loopback (a second RP ID for the wrong-RP-ID case).
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1',
];

const BUNDLE = join(import.meta.dirname, '../../node_modules/@simplewebauthn/browser/dist/bundle/index.umd.min.js');

/** The page: @simplewebauthn/browser, and `call()`, which reaches the API through the page's own origin. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>passkeys</title>
<script src="/simplewebauthn.js"></script>
<script>
  const { startRegistration, startAuthentication } = SimpleWebAuthnBrowser;
  window.call = async (method, path, body, token) => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token !== undefined) headers.authorization = 'Bearer ' + token;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: text === '' ? null : JSON.parse(text) };
  };
  window.create = (optionsJSON, tweak) => startRegistration({ optionsJSON: { ...optionsJSON, ...tweak } });
  window.get = (optionsJSON, tweak) => startAuthentication({ optionsJSON: { ...optionsJSON, ...tweak } });
</script>`;

interface Answer {
  status: number;
  body: Record<string, unknown> & {
    accessToken?: string;
    challengeId?: string;
    options?: Record<string, unknown>;
    mfaToken?: string;
    methods?: string[];
    passkey?: { id: string; name: string };
    items?: unknown[];
    error?: { code: string; type: string; message: string };
  };
}
type Json = Record<string, unknown>;

/**
 * Serves the page (and the library's bundle) and forwards every other request to the API: the
 * page and the API share an origin, as a site and its auth API behind one reverse proxy do.
 */
async function pageServer(api: () => string): Promise<{ server: Server; port: number }> {
  const bundle = await readFile(BUNDLE);
  const server = createServer((request, response) => {
    const url = request.url ?? '/';
    if (url === '/') return response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    if (url === '/simplewebauthn.js') return response.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type', 'user-agent']) {
        const value = request.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      const body = chunks.length === 0 ? undefined : Buffer.concat(chunks);
      fetch(`${api()}${url}`, { method: request.method ?? 'GET', headers, ...(body === undefined ? {} : { body }) })
        .then(async (answer) => {
          const type = answer.headers.get('content-type');
          response.writeHead(answer.status, type === null ? {} : { 'content-type': type });
          response.end(Buffer.from(await answer.arrayBuffer()));
        })
        .catch(() => response.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A page at `origin` with a CDP virtual authenticator: a platform passkey provider with user verification. */
class BrowserPage {
  readonly page: Page;
  readonly cdp: CDPSession;
  readonly authenticatorId: string;

  private constructor(page: Page, cdp: CDPSession, authenticatorId: string) {
    this.page = page;
    this.cdp = cdp;
    this.authenticatorId = authenticatorId;
  }

  static async open(context: BrowserContext, origin: string): Promise<BrowserPage> {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    return new BrowserPage(page, cdp, authenticatorId);
  }

  /** An API call made by the page (`fetch` from its origin). */
  async call(method: string, path: string, body?: unknown, token?: string): Promise<Answer> {
    const args = [method, path, body, token].map((arg) => (arg === undefined ? 'undefined' : JSON.stringify(arg)));
    return this.#evaluate<Answer>(`window.call(${args.join(', ')})`);
  }

  /** `navigator.credentials.create()` through @simplewebauthn/browser, options optionally tweaked. */
  async create(options: unknown, tweak: Json = {}): Promise<Json> {
    await this.page.bringToFront(); // create() needs the focused tab
    return this.#evaluate<Json>(`window.create(${JSON.stringify(options)}, ${JSON.stringify(tweak)})`);
  }

  /** `navigator.credentials.get()` through @simplewebauthn/browser, options optionally tweaked. */
  async get(options: unknown, tweak: Json = {}): Promise<Json> {
    await this.page.bringToFront();
    return this.#evaluate<Json>(`window.get(${JSON.stringify(options)}, ${JSON.stringify(tweak)})`);
  }

  /** Evaluates in the page; a failure is rethrown without the page's stack (its frames name no file vitest can read). */
  async #evaluate<T>(expression: string): Promise<T> {
    try {
      return await this.page.evaluate<T>(expression);
    } catch (error) {
      // eslint-disable-next-line preserve-caught-error -- its stack's page frames crash vitest's source-map reader
      throw new Error(`in the page: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
  }

  async login(email: string): Promise<Answer> {
    return this.call('POST', '/auth/login', { email, password: PASSWORD });
  }

  /** Signs in by password (no factor yet) and registers a passkey. @returns the session's token and the passkey. */
  async registerPasskey(email: string, name = 'Laptop'): Promise<{ accessToken: string; passkeyId: string }> {
    const { accessToken } = (await this.login(email)).body;
    if (accessToken === undefined) throw new Error(`no session for ${email}`);
    const options = await this.call('POST', '/auth/passkeys/registration/options', undefined, accessToken);
    expect(options.status, JSON.stringify(options.body)).toBe(200);
    const credential = await this.create(options.body);
    const registered = await this.call('POST', '/auth/passkeys/registration', { credential, name }, accessToken);
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    return { accessToken, passkeyId: registered.body.passkey?.id ?? '' };
  }

  /** Options for an assertion (`body`: `{}`, `{email}`, `{mfaToken}`; `token`: step-up) and the authenticator's answer. */
  async assert(body: Json, token?: string, tweak: Json = {}): Promise<{ challengeId: string; credential: Json }> {
    const options = await this.call('POST', '/auth/passkeys/authentication/options', body, token);
    expect(options.status, JSON.stringify(options.body)).toBe(200);
    const credential = await this.get(options.body.options, tweak);
    return { challengeId: options.body.challengeId ?? '', credential };
  }
}

interface Harness {
  readonly db: Kysely<DB>;
  readonly origin: string;
  readonly port: number;
  readonly context: BrowserContext;
  readonly page: BrowserPage;
}

/** A listening app (WEBAUTHN_RP_ID=localhost), the page's server, and Chromium on the page. */
async function harness(
  onTestFinished: (fn: () => Promise<void>) => void,
  env: Record<string, string> = {},
): Promise<Harness> {
  const { db } = await isolatedDatabase(onTestFinished);
  let apiUrl = '';
  const { server, port } = await pageServer(() => apiUrl);
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
  });
  const origin = `http://localhost:${port}`;
  const app = await testApp(db, onTestFinished, {
    env: {
      WEBAUTHN_RP_ID: 'localhost',
      WEBAUTHN_RP_NAME: 'Passkey test',
      WEBAUTHN_ORIGINS: `${origin},http://sub.localhost:${port}`,
      RATE_LIMIT_CREDENTIALS: '10000',
      ...env,
    },
  });
  apiUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const profile = await mkdtemp(join(tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
  });
  onTestFinished(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  });
  return { db, origin, port, context, page: await BrowserPage.open(context, origin) };
}

async function auditTypes(db: Kysely<DB>, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('audit_events')
    .select('type')
    .where('user_id', '=', userId)
    .orderBy('occurred_at')
    .execute();
  return rows.map((row) => row.type);
}

describe.skipIf(!available && !inCi)('passkeys in headless Chromium with a virtual authenticator', () => {
  test(
    'registers a passkey, steps up with it, signs in with it without an email, completes a password sign-in with it, and deletes it',
    { timeout: 90_000 },
    async ({ onTestFinished }) => {
      const { db, page } = await harness(onTestFinished);
      const user = await createUser(db, { email: 'ada@example.com' });

      const { accessToken: firstSession, passkeyId } = await page.registerPasskey(user.email);
      const listed = await page.call('GET', '/auth/passkeys', undefined, firstSession);
      expect(listed.body.items).toEqual([
        expect.objectContaining({ id: passkeyId, name: 'Laptop', lastUsedAt: null, transports: ['internal'] }),
      ]);
      const row = await db
        .selectFrom('users')
        .select('mfa_enabled')
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(row.mfa_enabled, 'a passkey is a second factor').toBe(true);

      // The session that registered it is still aal1: removing a factor needs a step-up.
      const refused = await page.call('DELETE', `/auth/passkeys/${passkeyId}`, undefined, firstSession);
      expect(refused.status).toBe(403);
      expect(refused.body.error?.code).toBe('MFA_REQUIRED');
      const stepUp = await page.call(
        'POST',
        '/auth/mfa/step-up',
        { passkey: await page.assert({}, firstSession) },
        firstSession,
      );
      expect(stepUp.status, JSON.stringify(stepUp.body)).toBe(200);
      expect(decodeJwt(stepUp.body.accessToken ?? '').payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'hwk'] });
      const logout = await page.call('POST', '/auth/logout', { refreshToken: stepUp.body['refreshToken'] });
      expect(logout.status).toBe(204);

      // No email typed: the authenticator offers its discoverable credential.
      const discoverable = await page.assert({});
      const signedIn = await page.call('POST', '/auth/passkeys/authentication', discoverable);
      expect(signedIn.status, JSON.stringify(signedIn.body)).toBe(200);
      expect(signedIn.body.user).toMatchObject({ id: user.id, email: user.email });
      expect(decodeJwt(signedIn.body.accessToken ?? '').payload).toMatchObject({ aal: 'aal2', amr: ['hwk'] });

      // A password now asks for the second factor, and the passkey answers it.
      const challenge = await page.login(user.email);
      expect(challenge.body).toMatchObject({ mfaRequired: true, methods: ['passkey'] });
      const mfaToken = challenge.body.mfaToken ?? '';
      const secondFactor = await page.call('POST', '/auth/login/mfa', {
        mfaToken,
        passkey: await page.assert({ mfaToken }),
      });
      expect(secondFactor.status, JSON.stringify(secondFactor.body)).toBe(200);
      const session = secondFactor.body.accessToken ?? '';
      expect(decodeJwt(session).payload).toMatchObject({ aal: 'aal2', amr: ['pwd', 'hwk'] });

      const renamed = await page.call('PATCH', `/auth/passkeys/${passkeyId}`, { name: ' Work laptop ' }, session);
      expect(renamed.body.passkey).toMatchObject({ id: passkeyId, name: 'Work laptop' });
      const deleted = await page.call('DELETE', `/auth/passkeys/${passkeyId}`, undefined, session);
      expect(deleted.status, JSON.stringify(deleted.body)).toBe(204);
      expect((await page.call('GET', '/auth/passkeys', undefined, session)).body.items).toEqual([]);
      const after = await db
        .selectFrom('users')
        .select('mfa_enabled')
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(after.mfa_enabled, 'no factor left').toBe(false);
      expect((await page.login(user.email)).body.accessToken, 'a password alone signs in again').toBeDefined();

      const types = await auditTypes(db, user.id);
      expect(types).toEqual(
        expect.arrayContaining(['passkey.registered', 'passkey.used', 'passkey.renamed', 'passkey.removed']),
      );
      const notices = await db
        .selectFrom('email_outbox')
        .select('template')
        .where('recipient', '=', user.email)
        .execute();
      expect(notices.map((notice) => notice.template)).toEqual(
        expect.arrayContaining(['notice_passkey_added', 'notice_passkey_removed']),
      );
    },
  );

  test('refuses reused, expired and cross-ceremony challenges', { timeout: 90_000 }, async ({ onTestFinished }) => {
    const { db, page } = await harness(onTestFinished);
    const user = await createUser(db, { email: 'grace@example.com' });
    const { accessToken } = await page.registerPasskey(user.email);

    const assertion = await page.assert({});
    expect((await page.call('POST', '/auth/passkeys/authentication', assertion)).status).toBe(200);
    const reused = await page.call('POST', '/auth/passkeys/authentication', assertion);
    expect(reused.status).toBe(400);
    expect(reused.body.error?.code).toBe('INVALID_OR_EXPIRED_TOKEN');

    const late = await page.assert({});
    await db
      .updateTable('webauthn_challenges')
      .set({ expires_at: sql<Date>`now() - interval '1 second'` })
      .where('id', '=', late.challengeId)
      .execute();
    const expired = await page.call('POST', '/auth/passkeys/authentication', late);
    expect(expired.body.error?.code).toBe('INVALID_OR_EXPIRED_TOKEN');

    // A step-up challenge cannot sign anyone in, nor a sign-in challenge register a passkey.
    const stepUpChallenge = await page.assert({}, accessToken);
    const crossed = await page.call('POST', '/auth/passkeys/authentication', stepUpChallenge);
    expect(crossed.body.error?.code).toBe('INVALID_OR_EXPIRED_TOKEN');
    const raised = await page.call(
      'POST',
      '/auth/mfa/step-up',
      { passkey: await page.assert({}, accessToken) },
      accessToken,
    );
    const aal2 = raised.body.accessToken ?? '';
    const requestOptions = await page.call('POST', '/auth/passkeys/authentication/options', {});
    const registration = await page.create({
      ...(await page.call('POST', '/auth/passkeys/registration/options', undefined, aal2)).body,
      challenge: requestOptions.body.options?.['challenge'],
      excludeCredentials: [],
    });
    const wrongCeremony = await page.call('POST', '/auth/passkeys/registration', { credential: registration }, aal2);
    expect(wrongCeremony.status).toBe(400);
    expect(wrongCeremony.body.error?.code).toBe('INVALID_OR_EXPIRED_TOKEN');
  });

  test(
    'refuses passkeys from an origin not allowed, for another RP ID, or without user verification',
    { timeout: 90_000 },
    async ({ onTestFinished }) => {
      const { db, page, context, port } = await harness(onTestFinished);
      const user = await createUser(db, { email: 'barbara@example.com' });
      await page.registerPasskey(user.email);
      const { credentials } = await page.cdp.send('WebAuthn.getCredentials', { authenticatorId: page.authenticatorId });
      const [credential] = credentials;
      if (credential === undefined) throw new Error('the virtual authenticator holds no credential');

      // The same key, in a browser tab of an origin WEBAUTHN_ORIGINS does not list.
      const { server: other, port: otherPort } = await pageServer(() => `http://127.0.0.1:${port}`);
      onTestFinished(async () => {
        other.closeAllConnections();
        await new Promise<void>((resolve) =>
          other.close(() => {
            resolve();
          }),
        );
      });
      const elsewhere = await BrowserPage.open(context, `http://localhost:${otherPort}`);
      await elsewhere.cdp.send('WebAuthn.addCredential', { authenticatorId: elsewhere.authenticatorId, credential });
      const wrongOrigin = await elsewhere.call('POST', '/auth/passkeys/authentication', await elsewhere.assert({}));
      expect(wrongOrigin.status).toBe(401);
      expect(wrongOrigin.body.error?.code).toBe('INVALID_CREDENTIALS');
      // Nor can a page there register one.
      const newcomer = await createUser(db, { email: 'newcomer@example.com' });
      const { accessToken: newcomerToken } = (await elsewhere.login(newcomer.email)).body;
      const creation = await elsewhere.call('POST', '/auth/passkeys/registration/options', undefined, newcomerToken);
      const registered = await elsewhere.call(
        'POST',
        '/auth/passkeys/registration',
        { credential: await elsewhere.create(creation.body) },
        newcomerToken,
      );
      expect(registered.status).toBe(400);
      expect(registered.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'credential' });

      // The same key under another RP ID (sub.localhost: an allowed origin, a relying party that is not ours).
      const sub = await BrowserPage.open(context, `http://sub.localhost:${port}`);
      await sub.cdp.send('WebAuthn.addCredential', {
        authenticatorId: sub.authenticatorId,
        credential: { ...credential, rpId: 'sub.localhost' },
      });
      const wrongRp = await sub.call(
        'POST',
        '/auth/passkeys/authentication',
        await sub.assert({}, undefined, { rpId: 'sub.localhost' }),
      );
      expect(wrongRp.status).toBe(401);
      expect(wrongRp.body.error?.code).toBe('INVALID_CREDENTIALS');

      // An authenticator that did not verify the user (only presence): not a passkey sign-in.
      await page.cdp.send('WebAuthn.setUserVerified', { authenticatorId: page.authenticatorId, isUserVerified: false });
      const unverified = await page.assert({}, undefined, { userVerification: 'discouraged' });
      const noUv = await page.call('POST', '/auth/passkeys/authentication', unverified);
      expect(noUv.status).toBe(401);
      expect(noUv.body.error?.code).toBe('INVALID_CREDENTIALS');

      // An unknown credential answers exactly like a wrong password.
      const wrongPassword = await page.call('POST', '/auth/login', { email: user.email, password: 'not the password' });
      await page.cdp.send('WebAuthn.setUserVerified', { authenticatorId: page.authenticatorId, isUserVerified: true });
      const known = await page.assert({});
      await db.deleteFrom('passkey_credentials').execute();
      const unknown = await page.call('POST', '/auth/passkeys/authentication', known);
      expect(unknown.status).toBe(wrongPassword.status);
      expect({ ...unknown.body.error, requestId: undefined }).toEqual({
        ...wrongPassword.body.error,
        requestId: undefined,
      });

      // A registration without user verification is refused too.
      const { accessToken: newcomerOnPage } = (await page.login(newcomer.email)).body;
      const options = await page.call('POST', '/auth/passkeys/registration/options', undefined, newcomerOnPage);
      // Chrome will not skip verification on an authenticator that can verify: use one that cannot.
      await page.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: page.authenticatorId });
      await page.cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: false },
      });
      const presenceOnly = await page.create(options.body, {
        authenticatorSelection: {
          residentKey: 'discouraged',
          requireResidentKey: false,
          userVerification: 'discouraged',
        },
      });
      const refusedRegistration = await page.call(
        'POST',
        '/auth/passkeys/registration',
        { credential: presenceOnly },
        newcomerOnPage,
      );
      expect(refusedRegistration.status).toBe(400);
      expect(refusedRegistration.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'credential' });
    },
  );

  test(
    'refuses a signature counter that went backwards and records passkey.counter_regressed',
    { timeout: 90_000 },
    async ({ onTestFinished }) => {
      const { db, page } = await harness(onTestFinished);
      const user = await createUser(db, { email: 'frances@example.com' });
      await page.registerPasskey(user.email);
      expect((await page.call('POST', '/auth/passkeys/authentication', await page.assert({}))).status).toBe(200);

      // As if a clone of the authenticator had signed more often than this one.
      await db.updateTable('passkey_credentials').set({ counter: 1000 }).where('user_id', '=', user.id).execute();
      const regressed = await page.call('POST', '/auth/passkeys/authentication', await page.assert({}));
      expect(regressed.status).toBe(401);
      expect(regressed.body.error?.code).toBe('INVALID_CREDENTIALS');
      expect(await auditTypes(db, user.id)).toContain('passkey.counter_regressed');
      const row = await db
        .selectFrom('passkey_credentials')
        .select('counter')
        .where('user_id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(row.counter, 'the stored counter is kept').toBe('1000');
    },
  );

  test(
    "refuses another account's passkey as a second factor, a passkey sign-in of an unverified address when verification is required, and every one of a disabled account",
    { timeout: 90_000 },
    async ({ onTestFinished }) => {
      const { db, page } = await harness(onTestFinished, { AUTH_REQUIRE_VERIFIED_EMAIL: 'true' });
      const ada = await createUser(db, { email: 'ada@example.com' });
      const eve = await createUser(db, { email: 'eve@example.com' });
      await db.updateTable('users').set({ email_verified_at: new Date() }).execute();
      await page.registerPasskey(ada.email);
      // Eve has a factor of her own (in the same authenticator: a second discoverable credential).
      await page.registerPasskey(eve.email, 'Eve');
      const eveChallenge = await page.login(eve.email);
      const mfaToken = eveChallenge.body.mfaToken ?? '';
      const ids = await db.selectFrom('passkey_credentials').select(['user_id', 'credential_id']).execute();
      const adas = ids.find((row) => row.user_id === ada.id)?.credential_id;
      // The challenge is bound to Eve's account; Ada's passkey answers it.
      const options = await page.call('POST', '/auth/passkeys/authentication/options', { mfaToken });
      const adasAssertion = await page.get(options.body.options, {
        allowCredentials: [{ id: adas, type: 'public-key' }],
      });
      expect(adasAssertion['id']).toBe(adas);
      const refused = await page.call('POST', '/auth/login/mfa', {
        mfaToken,
        passkey: { challengeId: options.body.challengeId, credential: adasAssertion },
      });
      expect(refused.status).toBe(401);
      expect(refused.body.error?.code).toBe('INVALID_MFA_CODE');

      // As a password would be: the address must be verified first (an admin moved it, say).
      await db.updateTable('users').set({ email_verified_at: null }).where('id', '=', ada.id).execute();
      const unverified = await page.call(
        'POST',
        '/auth/passkeys/authentication',
        await page.assert({}, undefined, { allowCredentials: [{ id: adas, type: 'public-key' }] }),
      );
      expect(unverified.status).toBe(403);
      expect(unverified.body.error?.code).toBe('EMAIL_NOT_VERIFIED');

      await db.updateTable('users').set({ status: 'disabled' }).where('id', '=', ada.id).execute();
      const disabled = await page.call(
        'POST',
        '/auth/passkeys/authentication',
        await page.assert({}, undefined, { allowCredentials: [{ id: adas, type: 'public-key' }] }),
      );
      expect(disabled.status).toBe(401);
      expect(disabled.body.error?.code).toBe('INVALID_CREDENTIALS');
    },
  );
});
