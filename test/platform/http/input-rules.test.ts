import net from 'node:net';
import { randomUUID } from 'node:crypto';
import type { App } from '../../../src/app.ts';
import { MAX_JSON_DEPTH } from '../../../src/platform/http/body-parsing.ts';
import { issueAccountToken } from '../../../src/account-emails/account-tokens.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { expectError, type ErrorJson } from '../../helpers/assertions.ts';
import { httpRequest, rawRequest, type HttpRequestOptions, type HttpResponse } from '../../reliability/support.ts';
import { accessTokenFor, createUser, PASSWORD, type UserJson } from '../../helpers/http.ts';

// Issue 22, items 5 to 12 and the rules of "What to build" that came with them, each proven over a
// real port (Node's HTTP parser included) against real PostgreSQL. Items 1 to 4 (throttling) are
// proven in rate-limit.test.ts; the fast-check properties of the text rules are in
// test/auth/credentials.test.ts.

/** The app on a free loopback port; closed when the test ends (testApp registered that). */
async function serve(app: App): Promise<{ base: string; port: number }> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error(`unexpected address ${String(address)}`);
  return { base: `http://127.0.0.1:${address.port}`, port: address.port };
}

type Request = (path: string, options?: HttpRequestOptions) => Promise<HttpResponse>;

async function started(
  db: Parameters<typeof testApp>[0],
  onFinished: Parameters<typeof testApp>[1],
  env: Record<string, string> = {},
): Promise<{ request: Request; port: number }> {
  const app = await testApp(db, onFinished, { env });
  const { base, port } = await serve(app);
  return { request: (path, options) => httpRequest(base, path, options), port };
}

/** The one error shape with this status and code, and the field it names (or none). */
function expectRefusal(
  response: HttpResponse,
  expected: { status: number; code: string; field?: string | undefined },
): ErrorJson {
  const error = expectError(response, { statusCode: expected.status, code: expected.code });
  expect(error.field, response.text).toBe(expected.field);
  return error;
}

const json = (body: string | Buffer, contentType = 'application/json'): HttpRequestOptions => ({
  method: 'POST',
  headers: { 'content-type': contentType },
  body,
});

describe('bounded parsing (issue 22 item 5)', () => {
  test(`refuses JSON nested more than ${MAX_JSON_DEPTH} levels with a 400 before parsing it, and reads ${MAX_JSON_DEPTH} levels`, async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    // Within the 16 KiB /auth limit: 7,000 arrays deep.
    const deep = `{"email":${'['.repeat(7_000)}${']'.repeat(7_000)},"password":"x"}`;
    const refused = expectRefusal(await request('/auth/login', json(deep)), { status: 400, code: 'VALIDATION_FAILED' });
    expect(refused.message).toBe(`Body is nested more than ${MAX_JSON_DEPTH} levels deep`);

    // The object itself is one level: 31 arrays inside it make 32, which is parsed and then validated.
    const depth = MAX_JSON_DEPTH - 1;
    const deepest = `{"email":${'['.repeat(depth)}${']'.repeat(depth)},"password":"x"}`;
    const validated = expectRefusal(await request('/auth/login', json(deepest)), {
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'email',
    });
    expect(validated.message).not.toMatch(/nested/);
    // Brackets inside strings do not count.
    const inString = JSON.stringify({ email: '['.repeat(100), password: '{'.repeat(100) });
    expect((await request('/auth/login', json(inString))).status).toBe(401);
  });

  test('refuses the 1 MB body of 500,000 nested arrays of the issue on an /auth route by its size, with 413', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const body = '['.repeat(500_000) + ']'.repeat(500_000);
    expectRefusal(await request('/auth/login', json(body)), { status: 413, code: 'PAYLOAD_TOO_LARGE' });
  });
});

describe('strict Unicode in emails, names and passwords (issue 22 item 6)', () => {
  const valid = { email: 'alice@example.com', password: PASSWORD, name: 'Alice' };

  test.for([
    ['a trailing U+200D (zero-width joiner)', 'alice@example.com\u200D'],
    ['a U+200B (zero-width space) inside', 'ali\u200Bce@example.com'],
    ['a U+00AD (soft hyphen) inside', 'ali\u00ADce@example.com'],
    ['a Cyrillic а among Latin letters', '\u0430lice@example.com'],
    ['a U+202E (right-to-left override) first', '\u202Ealice@example.com'],
    ['a Greek ο in the domain', 'alice@exampl\u03BFe.com'],
    ['a private-use code point', 'alice\uE000@example.com'],
  ] as const)(
    'refuses to register an email with %s: 400 naming email, nothing stored',
    async ([, email], { db, onTestFinished }) => {
      const { request } = await started(db, onTestFinished);
      await createUser(db, { email: 'alice@example.com' });
      const response = await request('/auth/register', { body: { ...valid, email } });
      expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'email' });
      expect(await db.selectFrom('users').select('email').execute()).toEqual([{ email: 'alice@example.com' }]);
    },
  );

  test.for([
    ['a U+202E prefix', '\u202EAlice'],
    ['only invisible characters', '\u200B\u200C\u2060'],
    ['a lone combining mark', '\u0301'],
    ['a combining mark first', '\u0301Alice'],
    ['a noncharacter', 'Alice\uFDD0'],
    ['a line separator', 'Al\u2028ice'],
  ] as const)('refuses to register a name with %s: 400 naming name', async ([, name], { db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    expectRefusal(await request('/auth/register', { body: { ...valid, name } }), {
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'name',
    });
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });

  test('registers what looks like text in any script: accents, CJK, Cyrillic alone, emoji in names', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    for (const [email, name] of [
      ['josé@example.com', 'José Ñúñez'],
      ['алиса@пример.рф', 'Алиса'],
      ['山田@例え.jp', '山田 太郎'],
      ['e\u0301lodie@example.com', 'Élodie 🎻'],
    ] as const) {
      const response = await request('/auth/register', { body: { ...valid, email, name } });
      expect(response.status, response.text).toBe(201);
      const { user } = response.json<{ user: UserJson }>();
      expect(user.email).toBe(email.normalize('NFKC'));
      expect(user.name).toBe(name);
    }
  });

  test('refuses a lone surrogate anywhere in a body with a 400 naming the field, never as U+FFFD', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    // JSON.stringify writes lone surrogates as \ud800 escapes: the body itself is plain ASCII.
    const withSurrogate = JSON.stringify({ ...valid, password: 'abc\ud800defgh' });
    expect(withSurrogate).toContain('\\ud800');
    expectRefusal(await request('/auth/register', json(withSurrogate)), {
      status: 400,
      code: 'VALIDATION_FAILED',
      field: 'password',
    });
    // A password with U+FFFD is a real one: it registers, and the surrogates the issue logged in with are refused.
    const registered = await request('/auth/register', { body: { ...valid, password: 'abc\ufffddefgh' } });
    expect(registered.status, registered.text).toBe(201);
    for (const lone of ['\ud800', '\udbff', '\udc00']) {
      const response = await request(
        '/auth/login',
        json(JSON.stringify({ email: valid.email, password: `abc${lone}defgh` })),
      );
      expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'password' });
    }
    expect((await request('/auth/login', { body: { email: valid.email, password: 'abc\ufffddefgh' } })).status).toBe(
      200,
    );
  });

  test('refuses bytes that are not UTF-8 with a 400, never replacing them', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    for (const bytes of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xc3]]) {
      const body = Buffer.concat([
        Buffer.from('{"email":"alice@example.com","password":"abc'),
        Buffer.from(bytes),
        Buffer.from('defgh","name":"Alice"}'),
      ]);
      const error = expectRefusal(await request('/auth/register', json(body)), {
        status: 400,
        code: 'VALIDATION_FAILED',
      });
      expect(error.message).toBe('Body is not valid UTF-8');
    }
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });
});

describe('cache-control on personal data (issue 22 item 7)', () => {
  test('GET /users and GET /users/:id answer with cache-control: no-store, errors included', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const user = await createUser(db);
    const asAdmin = { headers: { authorization: `Bearer ${accessTokenFor(admin)}` } };
    const asUser = { headers: { authorization: `Bearer ${accessTokenFor(user)}` } };
    const responses = {
      list: await request('/users', asAdmin),
      one: await request(`/users/${user.id}`, asAdmin),
      self: await request(`/users/${user.id}`, asUser),
      forbidden: await request(`/users/${admin.id}`, asUser),
      me: await request('/auth/me', asUser),
    };
    expect(Object.values(responses).map((response) => response.status)).toEqual([200, 200, 200, 403, 200]);
    for (const [name, response] of Object.entries(responses)) {
      expect(response.headers['cache-control'], name).toBe('no-store');
      expect(response.headers.pragma, name).toBe('no-cache');
    }
  });
});

describe('ids (issue 22 item 8)', () => {
  test("the caller's own id in upper case is the caller's id: 200, as for an admin", async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    const admin = await createUser(db, { role: 'admin' });
    for (const caller of [user, admin]) {
      const response = await request(`/users/${user.id.toUpperCase()}`, {
        headers: { authorization: `Bearer ${accessTokenFor(caller)}` },
      });
      expect(response.status, response.text).toBe(200);
      expect(response.json<{ user: UserJson }>().user.id).toBe(user.id);
    }
  });

  test.for([
    ['urn:uuid:<id>', (id: string) => `urn:uuid:${id}`],
    ['{<id>}', (id: string) => `%7B${id}%7D`],
    ['<id> without hyphens', (id: string) => id.replaceAll('-', '')],
    ['<id> with a trailing character', (id: string) => `${id}0`],
  ] as const)('refuses %s with 400 VALIDATION_FAILED naming field id', async ([, spell], { db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const response = await request(`/users/${spell(admin.id)}`, {
      headers: { authorization: `Bearer ${accessTokenFor(admin)}` },
    });
    expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'id' });
  });

  test('refuses a cursor dated outside years 0000 to 9999 (year -271821) with 400 naming field cursor', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    for (const date of ['-271821-04-20T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '+010000-01-01T00:00:00.000Z']) {
      const cursor = Buffer.from(JSON.stringify([date, randomUUID()])).toString('base64url');
      const response = await request(`/users?cursor=${cursor}`, {
        headers: { authorization: `Bearer ${accessTokenFor(admin)}` },
      });
      expect(expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'cursor' }).message).toBe(
        'Invalid cursor',
      );
    }
  });
});

describe('HTTP edges in the error shape (issue 22 item 9)', () => {
  test('an HTTP/1.1 request without Host gets 400 in the error shape with an x-request-id', async ({
    db,
    onTestFinished,
  }) => {
    const { port } = await started(db, onTestFinished);
    const response = await rawRequest(port, Buffer.from('GET /health/live HTTP/1.1\r\nconnection: close\r\n\r\n'));
    if (response === undefined) throw new Error('no response');
    const error = expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' });
    expect(error.message).toBe('The Host header is required');
    // HTTP/1.0 has no Host requirement.
    const old = await rawRequest(port, Buffer.from('GET /health/live HTTP/1.0\r\n\r\n'));
    expect(old?.status).toBe(200);
  });

  test('an Expect other than 100-continue gets 417 in the error shape with an x-request-id', async ({
    db,
    onTestFinished,
  }) => {
    const { port } = await started(db, onTestFinished);
    const response = await rawRequest(
      port,
      Buffer.from(
        'POST /auth/login HTTP/1.1\r\nhost: x\r\nexpect: bogus\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
      ),
    );
    if (response === undefined) throw new Error('no response');
    expectError(response, { statusCode: 417, code: 'EXPECTATION_FAILED' });
  });

  test('a body trickling in byte by byte gets 408 in the error shape once BODY_TIMEOUT_MS has passed, and the connection closes', async ({
    db,
    onTestFinished,
  }) => {
    const { port } = await started(db, onTestFinished, { BODY_TIMEOUT_MS: '500' });
    const body = JSON.stringify({ email: 'slow@example.com', password: PASSWORD });
    const socket = net.connect({ port, host: '127.0.0.1' });
    onTestFinished(async () => {
      socket.destroy();
    });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const closed = new Promise<number>((resolve) => {
      socket.on('close', () => {
        resolve(performance.now());
      });
    });
    const start = performance.now();
    socket.write(
      `POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
    );
    // One byte every 100 ms: the whole body would take seconds.
    const trickle = setInterval(() => {
      if (socket.writable && chunks.length === 0) socket.write(body.slice(0, 1));
    }, 100);
    onTestFinished(async () => {
      clearInterval(trickle);
    });
    const closedAt = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(resolve, 8_000, -1))]);
    clearInterval(trickle);
    expect(closedAt, 'the server kept the connection open').toBeGreaterThan(0);
    expect(closedAt - start).toBeLessThan(5_000);
    const text = Buffer.concat(chunks).toString('utf8');
    const [head = '', payload = ''] = text.split('\r\n\r\n');
    const headers = Object.fromEntries(
      head
        .split('\r\n')
        .slice(1)
        .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
    );
    expect(head).toMatch(/^HTTP\/1\.1 408 /);
    expectError({ status: 408, headers, body: payload }, { statusCode: 408, code: 'REQUEST_TIMEOUT' });
  });
});

describe('production defaults (issue 22 item 10)', () => {
  const production = {
    NODE_ENV: 'production',
    APP_URL: 'https://app.example.test',
    METRICS_TOKEN: 'scrape-secret',
    EMAIL_TRANSPORT: 'log',
    WEBAUTHN_RP_ID: 'localhost',
    WEBAUTHN_ORIGINS: 'http://localhost:3000',
    LOG_LEVEL: 'warn',
  };

  test('with NODE_ENV=production, /docs and /docs/json are not served', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished, production);
    for (const path of ['/docs', '/docs/json', '/docs/static/index.html']) {
      expectRefusal(await request(path), { status: 404, code: 'NOT_FOUND' });
    }
    const enabled = await started(db, onTestFinished, { ...production, DOCS_ENABLED: 'true' });
    expect((await enabled.request('/docs/json')).status).toBe(200);
  });

  test('with NODE_ENV=production, /metrics needs METRICS_TOKEN, and takes the bearer scheme in any case', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished, production);
    expectRefusal(await request('/metrics'), { status: 401, code: 'INVALID_TOKEN' });
    expectRefusal(await request('/metrics', { headers: { authorization: 'Bearer not-the-secret' } }), {
      status: 401,
      code: 'INVALID_TOKEN',
    });
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const response = await request('/metrics', { headers: { authorization: `${scheme} scrape-secret` } });
      expect(response.status, `${scheme}: ${response.text.slice(0, 200)}`).toBe(200);
    }
  });

  test('the API takes the bearer scheme in any case too', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      const response = await request('/auth/me', { headers: { authorization: `${scheme} ${accessTokenFor(user)}` } });
      expect(response.status, `${scheme}: ${response.text}`).toBe(200);
    }
  });
});

describe('strict media types (issue 22 item 11)', () => {
  test('a text/plain body gets 415, even when it holds valid credentials', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    for (const type of ['text/plain', 'text/plain; charset=utf-8', 'text/json', 'application/jsonx']) {
      const response = await request(
        '/auth/login',
        json(JSON.stringify({ email: user.email, password: PASSWORD }), type),
      );
      expectRefusal(response, { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
  });

  test('a JSON body in a charset other than UTF-8 gets 415; UTF-8 in any spelling is read', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    const body = JSON.stringify({ email: user.email, password: PASSWORD });
    for (const charset of ['utf-7', 'latin1', 'iso-8859-1', 'utf-16', '"utf-16le"']) {
      const response = await request('/auth/login', json(body, `application/json; charset=${charset}`));
      expectRefusal(response, { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
    for (const charset of ['utf-8', 'UTF-8', 'utf8', '"utf-8"']) {
      const response = await request('/auth/login', json(body, `application/json; charset=${charset}`));
      expect(response.status, `${charset}: ${response.text}`).toBe(200);
    }
  });

  test('a __proto__ or constructor key is refused as such (400 naming it), not as invalid JSON', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    for (const [body, field] of [
      ['{"email":"a@example.com","password":"xxxxxxxx","__proto__":{"role":"admin"}}', '__proto__'],
      ['{"email":"a@example.com","password":"xxxxxxxx","constructor":{"prototype":{}}}', 'constructor'],
      ['{"email":"a@example.com","password":"xxxxxxxx","name":"A","x":[{"__proto__":1}]}', 'x/0/__proto__'],
    ] as const) {
      const error = expectRefusal(await request('/auth/register', json(body)), {
        status: 400,
        code: 'VALIDATION_FAILED',
        field,
      });
      expect(error.message).toContain(field.split('/').at(-1));
      expect(error.message).not.toMatch(/not valid JSON/);
    }
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });
});

describe('query integers and the OpenAPI document (issue 22 item 12)', () => {
  test('the OpenAPI document marks limit optional, with its default of 20', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    const document = (await request('/docs/json')).json<{
      paths: Record<
        string,
        Record<string, { parameters?: { name: string; in: string; required?: boolean; schema: unknown }[] }>
      >;
    }>();
    const limit = document.paths['/users']?.get?.parameters?.find((parameter) => parameter.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', schema: { type: 'integer', default: 20, minimum: 1, maximum: 100 } });
    expect(limit?.required ?? false).toBe(false);
  });

  test.for(['1e2', '0x10', '%205', '5%20', '1.0', '+5', '05', '0b1', 'Infinity'])(
    'refuses limit=%s with 400 naming field limit; decimal digits are read',
    async (limit, { db, onTestFinished }) => {
      const { request } = await started(db, onTestFinished);
      const admin = await createUser(db, { role: 'admin' });
      const auth = { headers: { authorization: `Bearer ${accessTokenFor(admin)}` } };
      expectRefusal(await request(`/users?limit=${limit}`, auth), {
        status: 400,
        code: 'VALIDATION_FAILED',
        field: 'limit',
      });
      const read = await request('/users?limit=5', auth);
      expect(read.status, read.text).toBe(200);
    },
  );
});

describe('common passwords (issue 22, "What to build"; ASVS 5.0 6.2.4)', () => {
  const COMMON = ['password1', '12345678', 'qwertyuiop', 'Password1', 'iloveyou'];

  test('register refuses a common breached password with 400 naming password', async ({ db, onTestFinished }) => {
    const { request } = await started(db, onTestFinished);
    for (const password of COMMON) {
      const response = await request('/auth/register', {
        body: { email: `common-${randomUUID()}@example.com`, password, name: 'Common' },
      });
      expect(expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'password' }).message).toMatch(
        /too common/,
      );
    }
    expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
  });

  test('a password change refuses a common new password with 400 naming newPassword, and keeps the old one', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    for (const newPassword of COMMON) {
      const response = await request('/auth/password', {
        headers: { authorization: `Bearer ${accessTokenFor(user)}` },
        body: { currentPassword: PASSWORD, newPassword },
      });
      expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'newPassword' });
    }
    const row = await db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    expect(row.password_hash).toBe(user.password_hash);
  });

  test('a password reset refuses a common new password with 400 naming newPassword; the link still works', async ({
    db,
    onTestFinished,
  }) => {
    const { request } = await started(db, onTestFinished);
    const user = await createUser(db);
    const token = await issueAccountToken(
      db,
      { userId: user.id, purpose: 'password_reset', ttlSeconds: 3600 },
      new Date(),
    );
    for (const newPassword of COMMON) {
      const response = await request('/auth/password/reset', { body: { token, newPassword } });
      expectRefusal(response, { status: 400, code: 'VALIDATION_FAILED', field: 'newPassword' });
    }
    const row = await db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', user.id)
      .executeTakeFirstOrThrow();
    expect(row.password_hash).toBe(user.password_hash);
    const reset = await request('/auth/password/reset', { body: { token, newPassword: 'a brand new passphrase' } });
    expect(reset.status, reset.text).toBe(204);
  });
});
