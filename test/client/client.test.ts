import { setTimeout as sleep } from 'node:timers/promises';
import { createApiClient, type ApiClient, type ErrorCode, type Tokens } from '../../client/index.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { craftJwt, createUser, decodeJwt, PASSWORD } from '../helpers/http.ts';

/** What went over the wire: the path of every request the client sent, in order. */
interface Wire {
  readonly paths: string[];
}

/**
 * The real application listening on a loopback port, on a database of its own (requests run
 * concurrently on real connections), and a client pointed at it whose every request is recorded.
 */
async function serverAndClient(
  onTestFinished: (fn: () => Promise<void>) => void,
  env: Record<string, string> = {},
  tokens?: Tokens,
): Promise<{
  api: ApiClient;
  wire: Wire;
  rotations: (Tokens | undefined)[];
  db: Awaited<ReturnType<typeof isolatedDatabase>>['db'];
  baseUrl: string;
}> {
  const { db } = await isolatedDatabase(onTestFinished);
  const app = await testApp(db, onTestFinished, { env });
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const wire: Wire = { paths: [] };
  const rotations: (Tokens | undefined)[] = [];
  const api = createApiClient({
    baseUrl,
    ...(tokens === undefined ? {} : { tokens }),
    onTokens: (next) => rotations.push(next),
    fetch: (request) => {
      wire.paths.push(`${request.method} ${new URL(request.url).pathname}`);
      return fetch(request);
    },
  });
  return { api, wire, rotations, db, baseUrl };
}

describe('the generated client against a listening server', () => {
  test('registers, logs in and reads the signed-in user', async ({ onTestFinished }) => {
    const { api } = await serverAndClient(onTestFinished);

    const registered = await api.POST('/auth/register', {
      body: { email: 'Ada@Example.com', password: PASSWORD, name: 'Ada' },
    });
    expect(registered.response.status).toBe(201);
    // 202 `{status: "accepted"}` instead with REGISTRATION_ENUMERATION_SAFE=true: the type says both.
    const user = registered.data !== undefined && 'user' in registered.data ? registered.data.user : undefined;
    expect(user).toMatchObject({ email: 'ada@example.com', name: 'Ada', role: 'user' });

    const login = await api.login('ada@example.com', PASSWORD);
    expect(login.ok).toBe(true);
    expect(api.tokens?.accessToken).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

    const me = await api.GET('/auth/me');
    expect(me.response.status).toBe(200);
    expect(me.data?.user.id).toBe(user?.id);
  });

  test('changes the email address: a request, then the two links in turn', async ({ onTestFinished }) => {
    const { api, db } = await serverAndClient(onTestFinished);
    const user = await createUser(db, { email: 'grace@old.example.com' });
    await db.updateTable('users').set({ email_verified_at: new Date() }).where('id', '=', user.id).execute();
    expect((await api.login(user.email, PASSWORD)).ok).toBe(true);

    const requested = await api.POST('/auth/email/change', {
      body: { newEmail: 'grace@new.example.com', password: PASSWORD },
    });
    expect(requested.response.status).toBe(202);
    expect(requested.data?.status).toBe('accepted');

    // No dispatcher runs here: the links' tokens are still in the queued messages.
    const queued = await db
      .selectFrom('email_outbox')
      .select('data')
      .where('template', 'in', ['email_change_new', 'email_change_current'])
      .orderBy('template')
      .execute();
    const tokens = queued.map((row) => String((row.data as { token?: unknown } | null)?.token));
    expect(tokens).toHaveLength(2);
    const statuses: string[] = [];
    for (const token of tokens) {
      const confirmed = await api.POST('/auth/email/change/confirm', { body: { token } });
      statuses.push(confirmed.data?.status ?? `error ${confirmed.error?.error.code ?? ''}`);
      if (confirmed.data?.status === 'changed') expect(confirmed.data.user.email).toBe('grace@new.example.com');
    }
    expect(statuses).toEqual(['awaiting_other', 'changed']);
  });

  test('returns typed error bodies: duplicate email, bad credentials, validation, forbidden', async ({
    onTestFinished,
  }) => {
    const { api, db } = await serverAndClient(onTestFinished);
    await createUser(db, { email: 'taken@example.com' });

    const duplicate = await api.POST('/auth/register', {
      body: { email: 'taken@example.com', password: PASSWORD, name: 'Twin' },
    });
    expect(duplicate.response.status).toBe(409);
    expect(duplicate.error?.error).toMatchObject({ code: 'UNIQUE_VIOLATION', field: 'email', statusCode: 409 });

    const wrong = await api.login('taken@example.com', 'not the password');
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.error).toMatchObject({ code: 'INVALID_CREDENTIALS', statusCode: 401 });
    expect(api.tokens).toBeUndefined();

    const invalid = await api.POST('/auth/register', {
      body: { email: 'x@example.com', password: 'short', name: 'X' },
    });
    expect(invalid.response.status).toBe(400);
    expect(invalid.error?.error.code).toBe('VALIDATION_FAILED');
    expect(invalid.error?.error.details?.map((detail) => detail.path)).toContain('/body/password');

    expect((await api.login('taken@example.com', PASSWORD)).ok).toBe(true);
    const listing = await api.GET('/users', { params: { query: { limit: 5 } } });
    expect(listing.response.status).toBe(403);
    expect(listing.error?.error.code).toBe('FORBIDDEN');
  });

  test('makes admin calls: pages through users and reads one by id', async ({ onTestFinished }) => {
    const { api, db } = await serverAndClient(onTestFinished);
    const admin = await createUser(db, { email: 'admin@example.com', role: 'admin' });
    const others = [];
    for (let i = 0; i < 3; i++) others.push(await createUser(db, { email: `user${i}@example.com` }));
    expect((await api.login('admin@example.com', PASSWORD)).ok).toBe(true);

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.GET('/users', {
        params: { query: { limit: 2, ...(cursor === undefined ? {} : { cursor }) } },
      });
      expect(page.response.status).toBe(200);
      seen.push(...(page.data?.items.map((user) => user.email) ?? []));
      cursor = page.data?.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(seen.sort()).toEqual(['admin@example.com', 'user0@example.com', 'user1@example.com', 'user2@example.com']);

    const one = await api.GET('/users/{id}', { params: { path: { id: others[1]?.id ?? '' } } });
    expect(one.data?.user).toMatchObject({ email: 'user1@example.com' });
    const missing = await api.GET('/users/{id}', { params: { path: { id: '0190f1f0-0000-7000-8000-000000000000' } } });
    expect(missing.response.status).toBe(404);
    expect(missing.error?.error.code).toBe('NOT_FOUND');
    expect(admin.role).toBe('admin');
  });

  test('lists and ends sessions: the current flag, one by id, every other one, and the events they leave', async ({
    onTestFinished,
  }) => {
    const { api, db, baseUrl } = await serverAndClient(onTestFinished);
    const user = await createUser(db, { email: 'ada@example.com' });
    const laptop = createApiClient({ baseUrl });
    const phone = createApiClient({ baseUrl });
    expect((await api.login('ada@example.com', PASSWORD)).ok).toBe(true);
    expect((await laptop.login('ada@example.com', PASSWORD)).ok).toBe(true);
    expect((await phone.login('ada@example.com', PASSWORD)).ok).toBe(true);
    const sid = (client: ApiClient) => String(decodeJwt(client.tokens?.accessToken ?? '').payload.sid);

    const listed = await api.GET('/auth/sessions');
    expect(listed.response.status).toBe(200);
    const items = listed.data?.items ?? [];
    // The factory's session (its id is the user's) and the three logins, newest first.
    expect(items.map((item) => item.id).sort()).toEqual([user.id, sid(api), sid(laptop), sid(phone)].sort());
    expect(items.filter((item) => item.current).map((item) => item.id)).toEqual([sid(api)]);
    expect(items.at(-1)?.id).toBe(user.id);
    expect(items[0]).toMatchObject({ ipAddress: '127.0.0.1', expiresAt: expect.any(String) });

    const endLaptop = await api.DELETE('/auth/sessions/{id}', { params: { path: { id: sid(laptop) } } });
    expect(endLaptop.response.status).toBe(204);
    const laptopMe = await laptop.GET('/auth/me');
    expect(laptopMe.response.status).toBe(401);
    expect(laptopMe.error?.error.code).toBe('INVALID_TOKEN');
    const again = await api.DELETE('/auth/sessions/{id}', { params: { path: { id: sid(laptop) } } });
    expect(again.response.status).toBe(404);
    expect(again.error?.error).toMatchObject({ code: 'NOT_FOUND', statusCode: 404 });

    const phoneSid = sid(phone);
    const endOthers = await api.DELETE('/auth/sessions');
    expect(endOthers.response.status).toBe(204);
    expect((await phone.GET('/auth/me')).response.status).toBe(401);
    expect((await api.GET('/auth/me')).response.status).toBe(200);
    const left = await api.GET('/auth/sessions');
    expect(left.data?.items.map((item) => [item.id, item.current])).toEqual([[sid(api), true]]);

    const events = await api.GET('/auth/events', { params: { query: { limit: 20 } } });
    expect(events.response.status).toBe(200);
    const ends = (events.data?.items ?? [])
      .filter((event) => event.type === 'session.ended')
      .map((event) => [event.details.sessionId, event.details.reason, event.sessionId]);
    expect(ends).toEqual(
      expect.arrayContaining([
        [sid(laptop), 'revoked', sid(api)],
        [phoneSid, 'revoked_others', sid(api)],
        [user.id, 'revoked_others', sid(api)],
      ]),
    );
    expect(ends).toHaveLength(3);
    expect(events.data?.items.filter((event) => event.type === 'login.succeeded')).toHaveLength(3);
    expect(events.data?.nextCursor).toBeNull();
  });

  test('makes admin changes: filters users by q, role and status, changes role and status, refuses the last admin by code', async ({
    onTestFinished,
  }) => {
    const { api, db, baseUrl } = await serverAndClient(onTestFinished);
    const admin = await createUser(db, { email: 'admin@example.com', name: 'Root', role: 'admin' });
    const grace = await createUser(db, { email: 'grace@example.com', name: 'Grace Hopper' });
    await createUser(db, { email: 'alan@example.com', name: 'Alan Turing' });
    await createUser(db, { email: 'barbara@example.com', name: 'Barbara Liskov' });
    expect((await api.login('admin@example.com', PASSWORD)).ok).toBe(true);
    const emails = async (query: { q?: string; role?: 'user' | 'admin'; status?: 'active' | 'disabled' }) => {
      const page = await api.GET('/users', { params: { query } });
      expect(page.response.status).toBe(200);
      return page.data?.items.map((item) => item.email).sort();
    };

    expect(await emails({ q: 'GRA' })).toEqual(['grace@example.com']);
    expect(await emails({ q: 'alan' })).toEqual(['alan@example.com']);
    expect(await emails({ role: 'admin' })).toEqual(['admin@example.com']);
    expect(await emails({ status: 'disabled' })).toEqual([]);

    // The only admin cannot demote themself: the error is typed by its code.
    const demoteSelf = await api.PATCH('/users/{id}', { params: { path: { id: admin.id } }, body: { role: 'user' } });
    expect(demoteSelf.response.status).toBe(409);
    const code: ErrorCode | undefined = demoteSelf.error?.error.code;
    expect(code).toBe('LAST_ADMIN');

    const promoted = await api.PATCH('/users/{id}', { params: { path: { id: grace.id } }, body: { role: 'admin' } });
    expect(promoted.response.status).toBe(200);
    expect(promoted.data?.user).toMatchObject({ id: grace.id, role: 'admin', status: 'active' });
    expect(await emails({ role: 'admin' })).toEqual(['admin@example.com', 'grace@example.com']);

    const alanClient = createApiClient({ baseUrl });
    expect((await alanClient.login('alan@example.com', PASSWORD)).ok).toBe(true);
    const alan = (await alanClient.GET('/auth/me')).data?.user;
    const disabled = await api.PATCH('/users/{id}', {
      params: { path: { id: alan?.id ?? '' } },
      body: { status: 'disabled' },
    });
    expect(disabled.response.status).toBe(200);
    expect(disabled.data?.user).toMatchObject({ email: 'alan@example.com', status: 'disabled' });
    expect((await alanClient.GET('/auth/me')).response.status).toBe(401);
    expect(await emails({ status: 'disabled' })).toEqual(['alan@example.com']);
    expect(await emails({ status: 'active', role: 'user' })).toEqual(['barbara@example.com']);

    const missing = await api.PATCH('/users/{id}', {
      params: { path: { id: '0190f1f0-0000-7000-8000-000000000000' } },
      body: { status: 'disabled' },
    });
    expect(missing.response.status).toBe(404);
    expect(missing.error?.error.code).toBe('NOT_FOUND');

    const invalid = await api.GET('/users', { params: { query: { role: 'owner' as 'admin' } } });
    expect(invalid.response.status).toBe(400);
    expect(invalid.error?.error.code).toBe('VALIDATION_FAILED');
  });

  test(
    'rotates the refresh token once when the access token expires, concurrent requests sharing that one rotation',
    { timeout: 30_000 },
    async ({ onTestFinished }) => {
      const { api, wire, rotations, db } = await serverAndClient(onTestFinished, { ACCESS_TOKEN_TTL_SECONDS: '10' });
      await createUser(db, { email: 'ada@example.com' });
      expect((await api.login('ada@example.com', PASSWORD)).ok).toBe(true);
      const first = api.tokens;

      await sleep(11_000);
      wire.paths.length = 0;
      const answers = await Promise.all(Array.from({ length: 5 }, () => api.GET('/auth/me')));

      expect(answers.map((answer) => answer.response.status)).toEqual([200, 200, 200, 200, 200]);
      expect(wire.paths.filter((path) => path === 'POST /auth/refresh')).toHaveLength(1);
      expect(wire.paths.filter((path) => path === 'GET /auth/me')).toHaveLength(10);
      expect(api.tokens?.refreshToken).not.toBe(first?.refreshToken);
      expect(rotations.at(-1)).toEqual(api.tokens);
    },
  );

  test('signs out when the expired session cannot be refreshed, answering the original 401', async ({
    onTestFinished,
  }) => {
    const setup = await serverAndClient(onTestFinished);
    await createUser(setup.db, { email: 'ada@example.com' });
    expect((await setup.api.login('ada@example.com', PASSWORD)).ok).toBe(true);
    const stale = setup.api.tokens;
    expect((await setup.api.logout()).ok).toBe(true);
    expect(setup.api.tokens).toBeUndefined();

    // A client restored from storage: a revoked refresh token and an access token that has expired.
    const expired = stale === undefined ? '' : expiredTwinOf(stale.accessToken);
    const restored = createApiClient({
      baseUrl: setup.baseUrl,
      tokens: { accessToken: expired, refreshToken: stale?.refreshToken ?? '' },
    });
    const me = await restored.GET('/auth/me');
    expect(me.response.status).toBe(401);
    expect(me.error?.error.code).toBe('TOKEN_EXPIRED');
    expect(restored.tokens).toBeUndefined();
  });

  test('surfaces retry-after when logins are rate limited', async ({ onTestFinished }) => {
    const { api } = await serverAndClient(onTestFinished, { RATE_LIMIT_LOGIN: '3' });
    let attempt = await api.login('nobody@example.com', 'not the password');
    for (let tries = 1; tries < 30 && !(!attempt.ok && attempt.error.code === 'RATE_LIMITED'); tries++)
      attempt = await api.login('nobody@example.com', 'not the password');

    expect(attempt.ok).toBe(false);
    if (attempt.ok) return;
    expect(attempt.error).toMatchObject({ code: 'RATE_LIMITED', statusCode: 429 });
    expect(attempt.retryAfterSeconds).toBeGreaterThan(0);
  });
});

describe('device tokens in the generated client', () => {
  test('keeps the device token of each login and sends it with the next, so strangers slowing the account do not lock this device out', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished, { env: { LOGIN_ACCOUNT_MAX_FAILURES: '3' } });
    const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    await createUser(db, { email: 'ada@example.com' });
    const stored: string[] = [];
    const api = createApiClient({ baseUrl, onDeviceToken: (token) => stored.push(token) });

    expect((await api.login('ada@example.com', PASSWORD)).ok).toBe(true);
    expect(api.deviceToken).toBe(stored[0]);
    const stranger = createApiClient({ baseUrl });
    for (let i = 0; i < 4; i++) expect((await stranger.login('ada@example.com', 'a wrong guess')).ok).toBe(false);
    const slowed = await createApiClient({ baseUrl }).login('ada@example.com', PASSWORD);
    expect(slowed.ok ? undefined : slowed.error.code).toBe('RATE_LIMITED');

    expect((await api.login('ada@example.com', PASSWORD)).ok).toBe(true);
    // A device restored from storage is recognised too.
    const restored = createApiClient({ baseUrl, deviceToken: stored[1] ?? '' });
    expect((await restored.login('ada@example.com', PASSWORD)).ok).toBe(true);
    expect(new Set(stored).size).toBe(2);
  });
});

/** The same claims, signed with the same key, but expired a minute ago. */
function expiredTwinOf(token: string): string {
  const { header, payload } = decodeJwt(token);
  const now = Math.floor(Date.now() / 1000);
  return craftJwt({ ...payload, iat: now - 120, exp: now - 60 }, { header: { kid: header.kid } });
}
