import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { newRefreshToken, hashRefreshToken } from '../../src/keys/tokens.ts';
import { issueAccountToken } from '../../src/account-emails/account-tokens.ts';
import { isolatedDatabase } from '../helpers/database.ts';
import { accessClaims, accessTokenFor, createUser, craftJwt, PASSWORD } from '../helpers/http.ts';
import { appOnPool, rawRequest, type OnFinished, type RawResponse } from './support.ts';
import { expectError } from '../helpers/assertions.ts';

// Property-based fuzzing of every endpoint over a real socket: bodies, headers, query strings and
// paths built from each route's schema, mixed with the worst a client can send. Whatever arrives,
// the answer is never a 5xx, every error has the contract's one shape, and a rejected request
// stores nothing.

const HTTP_PORTS = [3340, 3349] as const;
const NUM_RUNS = 200;
const PROPERTY_TIMEOUT = 60_000;

// ---------------------------------------------------------------------------------------------
// The target: the app on a committed database of its own, with users and live refresh tokens.

interface Target {
  readonly port: number;
  readonly admin: { id: string; email: string; token: string };
  readonly user: { id: string; email: string; token: string };
  /** Raw refresh tokens stored live for `user`, each in a family of its own. */
  readonly refreshTokens: readonly string[];
  snapshot(): Promise<Snapshot>;
}

interface Snapshot {
  readonly users: number;
  /** Digest of every user row's content: a rejected request must leave it as it was. */
  readonly usersDigest: string;
  readonly tokens: number;
  readonly liveTokens: number;
}

async function fuzzTarget(onFinished: OnFinished): Promise<Target> {
  const { url, db } = await isolatedDatabase(onFinished);
  const { baseUrl } = await appOnPool(onFinished, url, HTTP_PORTS, {
    RATE_LIMIT_REGISTER: '1000000',
    RATE_LIMIT_LOGIN: '1000000',
    RATE_LIMIT_REFRESH: '1000000',
    DB_POOL_MAX: '4',
  });
  const admin = await createUser(db, { role: 'admin', email: `admin-${randomUUID()}@example.com` });
  const user = await createUser(db, { email: `user-${randomUUID()}@example.com` });
  const refreshTokens = Array.from({ length: 300 }, () => newRefreshToken());
  const families = refreshTokens.map(() => randomUUID());
  // Every refresh-token family is a session (migration 20261201120000).
  await db
    .insertInto('sessions')
    .values(families.map((id) => ({ id, user_id: user.id, expires_at: new Date(Date.now() + 86_400_000) })))
    .execute();
  await db
    .insertInto('refresh_tokens')
    .values(
      refreshTokens.map((token, i) => ({
        user_id: user.id,
        family_id: families[i] ?? randomUUID(),
        token_hash: hashRefreshToken(token),
        expires_at: new Date(Date.now() + 86_400_000),
      })),
    )
    .execute();

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onFinished(async () => {
    await client.end();
  });
  return {
    port: Number(new URL(baseUrl).port),
    admin: { id: admin.id, email: admin.email, token: accessTokenFor(admin) },
    user: { id: user.id, email: user.email, token: accessTokenFor(user) },
    refreshTokens,
    async snapshot() {
      const { rows } = await client.query<{
        users: string;
        users_digest: string;
        tokens: string;
        live_tokens: string;
      }>(`
        select (select count(*) from users) as users,
               (select coalesce(md5(string_agg(concat_ws('|', id, email, name, role, status, password_hash, updated_at, last_login_at), ',' order by id)), '')
                  from users) as users_digest,
               (select count(*) from refresh_tokens) as tokens,
               (select count(*) from refresh_tokens where rotated_at is null and revoked_at is null) as live_tokens`);
      const row = rows[0];
      if (row === undefined) throw new Error('no snapshot');
      return {
        users: Number(row.users),
        usersDigest: row.users_digest,
        tokens: Number(row.tokens),
        liveTokens: Number(row.live_tokens),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Requests as bytes.

interface HostileRequest {
  readonly method: string;
  /** The request target exactly as sent (already percent-encoded where it should be). */
  readonly path: string;
  readonly headers: ReadonlyArray<readonly [string, Buffer]>;
  readonly body: Buffer | undefined;
}

/** A request that prints itself briefly in fast-check's counterexamples (bodies can be megabytes). */
function hostileRequest(fields: HostileRequest): HostileRequest {
  return { ...fields, [fc.toStringMethod]: () => describeRequest(fields) } as HostileRequest;
}

/** Percent-encodes the UTF-8 of `value` (lone surrogates included, as U+FFFD), like a browser would. */
function percentEncode(value: string): string {
  return [...Buffer.from(value, 'utf8')]
    .map((byte) =>
      /[A-Za-z0-9\-._~]/.test(String.fromCharCode(byte))
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

function encode(request: HostileRequest): Buffer {
  const head = [`${request.method} ${request.path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close'];
  if (request.body !== undefined) head.push(`content-length: ${request.body.length}`);
  const parts: Buffer[] = [Buffer.from(head.join('\r\n') + '\r\n', 'latin1')];
  for (const [name, value] of request.headers)
    parts.push(Buffer.from(`${name}: `, 'latin1'), value, Buffer.from('\r\n', 'latin1'));
  parts.push(Buffer.from('\r\n', 'latin1'));
  if (request.body !== undefined) parts.push(request.body);
  return Buffer.concat(parts);
}

function describeRequest(request: HostileRequest): string {
  const headers = request.headers
    .map(([name, value]) => `${name}: ${value.toString('latin1').slice(0, 80)}`)
    .join(' | ');
  const body = request.body === undefined ? '' : request.body.subarray(0, 200).toString('latin1');
  return `${request.method} ${request.path.slice(0, 200)} [${headers}] ${body}${(request.body?.length ?? 0) > 200 ? `… (${request.body?.length} bytes)` : ''}`;
}

/**
 * Sends the request and checks the invariants a client relies on: an answer, never a 5xx, an
 * `x-request-id`, the one error shape for every error, and nothing stored when it was rejected
 * (no new rows, no user changed, no new live refresh token).
 */
async function expectHandled(target: Target, request: HostileRequest): Promise<RawResponse> {
  const before = await target.snapshot();
  const response = await rawRequest(target.port, encode(request), 10_000);
  const context = describeRequest(request);
  if (response === undefined) throw new Error(`no response to ${context}`);
  expect(response.status, `${context}\n→ ${response.status} ${response.body.slice(0, 300)}`).toBeLessThan(500);
  expect(response.status, context).toBeGreaterThanOrEqual(200);
  expect(response.headers['x-request-id'], context).toBeTruthy();
  if (response.status >= 400 && request.method === 'HEAD') {
    // A HEAD response has the headers of the GET one and no body.
    expect(response.body, context).toBe('');
  } else if (response.status >= 400) {
    expectError(response);
    const after = await target.snapshot();
    expect(
      { users: after.users, usersDigest: after.usersDigest, tokens: after.tokens },
      `state changed by rejected ${context}`,
    ).toEqual({
      users: before.users,
      usersDigest: before.usersDigest,
      tokens: before.tokens,
    });
    expect(after.liveTokens, context).toBeLessThanOrEqual(before.liveTokens);
  } else if (response.body !== '') {
    expect(response.headers['content-type'], context).toBeTruthy();
    if (response.headers['content-type']?.startsWith('application/json') === true) {
      expect(() => JSON.parse(response.body) as unknown, context).not.toThrow();
    }
  }
  return response;
}

async function fuzz(target: Target, requests: fc.Arbitrary<HostileRequest>, numRuns = NUM_RUNS): Promise<void> {
  await fc.assert(
    fc.asyncProperty(requests, async (request) => {
      await expectHandled(target, request);
    }),
    // Bounded in time too: on a slow machine fewer runs, never a test that overruns.
    { numRuns, plugins: [fc.interruptAfterTimeLimit(50_000)] },
  );
  // Nothing a client sent changed the prototype every object of this process inherits from.
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTOTYPE_NAMES);
  expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
}

const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort();

// ---------------------------------------------------------------------------------------------
// Adversarial values.

const HUGE = 'y'.repeat(200_000);

/** Strings that have broken parsers, databases and normalisers before. */
const NASTY = [
  '',
  ' ',
  '\u0000',
  'a\u0000b@example.com',
  "' OR '1'='1",
  "'; drop table users; --",
  "admin@example.com' --",
  '" OR ""="',
  '{"$gt": ""}',
  '$where',
  '\\',
  '\\u0000',
  '%00',
  '%ff%fe',
  '${7*7}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '../../../../etc/passwd',
  '\uFEFFbom@example.com',
  '\uD800',
  '\uDFFF\uD800',
  '\uFFFE\uFFFF',
  '\u202Eevil@example.com',
  'ﷺ'.repeat(60),
  'İ'.repeat(200),
  'ß'.repeat(300),
  '\u0130@EXAMPLE.COM',
  'ＡＤＭＩＮ@ｅｘａｍｐｌｅ.ｃｏｍ',
  '😀'.repeat(256),
  '😀'.repeat(257),
  'a'.repeat(7),
  'a'.repeat(254),
  `${'a'.repeat(250)}@example.com`,
  'a'.repeat(1025),
  HUGE,
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'null',
  'undefined',
  'true',
  'NaN',
  '-1',
  '1e309',
  '0x10',
  '\r\n\r\nHTTP/1.1 200 OK',
  '\t\n\u000b\f\r \u0085\u00a0\u2028\u2029',
];

const adversarialString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom(
        '\u0000',
        '\uD800',
        '\uDC00',
        '\uFFFE',
        '\u202E',
        'ﷺ',
        'İ',
        'ß',
        '\uFEFF',
        ' ',
        '\t',
        '"',
        '\\',
        "'",
        '%',
        '@',
        '.',
        'a',
        'Z',
        '😀',
      ),
      maxLength: 60,
    }),
  },
);

/** A JSON text of a value of the wrong type for a string field (or for anything). */
const wrongTypeJson: fc.Arbitrary<string> = fc
  .oneof(
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.integer()), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
  )
  .map((value) => JSON.stringify(value));

/** JSON nested far deeper than any schema: arrays, objects, or both. */
const deepJson: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 50, max: 100_000 }), fc.constantFrom('array', 'object', 'proto'))
  .map(([depth, kind]) => {
    if (kind === 'array') return '['.repeat(depth) + ']'.repeat(depth);
    const key = kind === 'proto' ? '__proto__' : 'a';
    return `{"${key}":`.repeat(depth) + '1' + '}'.repeat(depth);
  });

/** The JSON text of a field's value: mostly plausible, often hostile, sometimes the wrong type or absurdly deep. */
function fieldJson(valid: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: valid.map((value) => JSON.stringify(value)) },
    { weight: 4, arbitrary: adversarialString.map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: wrongTypeJson },
    { weight: 1, arbitrary: deepJson },
  );
}

/** Keys a server must never honour, or must at least not trip over. */
const hostileKey = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'role',
    'id',
    'password_hash',
    'passwordHash',
    'isAdmin',
    'email',
    'created_at',
    '',
  ),
  fc.string({ maxLength: 12 }),
);

/**
 * A JSON object as text, built by hand so it may hold keys JSON.stringify cannot write
 * (`__proto__` as an own key) and repeated keys.
 */
function objectJson(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<string> {
  const entries = Object.entries(fields).map(([name, valid]) =>
    fc.option(
      fieldJson(valid).map((value) => `${JSON.stringify(name)}:${value}`),
      { nil: undefined, freq: 6 },
    ),
  );
  const extras = fc.array(
    fc.tuple(
      hostileKey,
      fc.oneof(
        wrongTypeJson,
        adversarialString.map((value) => JSON.stringify(value)),
        fc.constant('{"isAdmin":true,"role":"admin"}'),
      ),
    ),
    { maxLength: 3 },
  );
  return fc.tuple(fc.tuple(...entries), extras, fc.boolean()).map(([present, extra, extrasFirst]) => {
    const known = present.filter((entry): entry is string => entry !== undefined);
    const other = extra.map(([key, value]) => `${JSON.stringify(key)}:${value}`);
    return `{${(extrasFirst ? [...other, ...known] : [...known, ...other]).join(',')}}`;
  });
}

/** Bytes that are not UTF-8 (a lone continuation byte, an overlong NUL, an encoded surrogate, …), spliced into text. */
const INVALID_UTF8 = [[0xff], [0xfe, 0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3]];

function withInvalidUtf8(text: fc.Arbitrary<string>): fc.Arbitrary<Buffer> {
  return fc.tuple(text, fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([value, at, bytes]) => {
    const buffer = Buffer.from(value, 'utf8');
    const position = buffer.length === 0 ? 0 : at % buffer.length;
    return Buffer.concat([buffer.subarray(0, position), Buffer.from(bytes), buffer.subarray(position)]);
  });
}

const HUGE_BODY = Buffer.from(`{"email":"${'z'.repeat(1_100_000)}"}`);

/** A body for a JSON endpoint whose schema has `fields`. */
function bodyFor(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Buffer | undefined> {
  const object = objectJson(fields);
  return fc.oneof(
    { weight: 12, arbitrary: object.map((text) => Buffer.from(text, 'utf8')) },
    { weight: 2, arbitrary: withInvalidUtf8(object) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          'null',
          '1',
          '"x"',
          'true',
          '[]',
          '{}',
          '',
          ' ',
          '{',
          '{"email":',
          '\u0000',
          '{"a":1}garbage',
          '{"a":1,}',
          "{'a':1}",
          '{"a":NaN}',
          '\uFEFF{}',
        )
        .map((text) => Buffer.from(text, 'utf8')),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)) },
    { weight: 1, arbitrary: deepJson.map((text) => Buffer.from(text)) },
    { weight: 1, arbitrary: fc.constant(HUGE_BODY) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

/** `value` without the control characters (tab aside) that no header value may hold. */
function withoutControls(value: string): string {
  let kept = '';
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code === 0x09 || (code >= 0x20 && code !== 0x7f)) kept += value.charAt(i);
  }
  return kept;
}

/** Header values as bytes Node's HTTP parser lets through: visible ASCII, tab, space and obs-text (0x80–0xFF, often not UTF-8). */
const headerBytes: fc.Arbitrary<Buffer> = fc.oneof(
  adversarialString.map((value) => Buffer.from(withoutControls(value).slice(0, 4000), 'utf8')),
  fc
    .uint8Array({ maxLength: 200 })
    .map((bytes) => Buffer.from(bytes.filter((byte) => byte === 0x09 || (byte >= 0x20 && byte !== 0x7f)))),
);

const contentType: fc.Arbitrary<readonly (readonly [string, Buffer])[]> = fc.oneof(
  { weight: 10, arbitrary: fc.constant([['content-type', Buffer.from('application/json')]] as const) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom(
        'application/json; charset=utf-8',
        'Application/JSON',
        'application/json; charset=latin1',
        'application/json; charset=utf-16',
        'application/json;;;',
        'application/jsonx',
        'application/vnd.api+json',
        'text/plain',
        'text/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        '*/*',
        '',
        'application/json\u00ff',
      )
      .map((value) => [['content-type', Buffer.from(value, 'latin1')]] as const),
  },
  { weight: 1, arbitrary: fc.constant([] as const) },
);

/** Headers any client may add: request ids, proxies, origins, encodings, junk. */
const extraHeaders: fc.Arbitrary<ReadonlyArray<readonly [string, Buffer]>> = fc.array(
  fc.tuple(
    fc.constantFrom(
      'x-request-id',
      'accept',
      'accept-encoding',
      'origin',
      'x-forwarded-for',
      'cookie',
      'user-agent',
      'x-custom',
      'content-encoding',
      'accept-language',
      'if-none-match',
      'range',
    ),
    headerBytes,
  ),
  { maxLength: 3 },
);

const uuid = fc.uuid();

/** Authorization headers: none, malformed, forged, expired, for the wrong audience, or valid. */
function authorization(target: Target): fc.Arbitrary<ReadonlyArray<readonly [string, Buffer]>> {
  const now = Math.floor(Date.now() / 1000);
  const claims = fc.record(
    {
      sub: fc.oneof(uuid, fc.constantFrom(target.user.id, target.admin.id), adversarialString, fc.integer()),
      role: fc.oneof(fc.constantFrom('admin', 'user', 'root'), wrongTypeJson),
      typ: fc.oneof(fc.constantFrom('access', 'refresh'), adversarialString),
      iss: fc.oneof(fc.constant(accessClaims({ id: target.user.id, role: 'user' }).iss), adversarialString),
      aud: fc.oneof(
        fc.constant(accessClaims({ id: target.user.id, role: 'user' }).aud),
        adversarialString,
        fc.array(fc.string(), { maxLength: 2 }),
      ),
      iat: fc.oneof(fc.constant(now), fc.integer(), fc.string({ maxLength: 5 })),
      exp: fc.oneof(
        fc.constant(now + 900),
        fc.constant(now - 10),
        fc.double(),
        fc.string({ maxLength: 5 }),
        fc.constant(null),
      ),
    },
    { requiredKeys: [] },
  );
  const token = fc.oneof(
    { weight: 3, arbitrary: fc.constant(target.admin.token) },
    { weight: 3, arbitrary: fc.constant(target.user.token) },
    { weight: 3, arbitrary: claims.map((payload) => craftJwt(payload)) },
    { weight: 1, arbitrary: claims.map((payload) => craftJwt(payload, { alg: 'none', hmac: null })) },
    { weight: 1, arbitrary: claims.map((payload) => craftJwt(payload, { alg: 'HS512' })) },
    {
      weight: 1,
      arbitrary: claims.map((payload) => craftJwt(payload, { secret: 'not-the-secret-but-at-least-32-bytes!!' })),
    },
    { weight: 1, arbitrary: fc.constantFrom(...target.refreshTokens.slice(0, 3)) },
    { weight: 2, arbitrary: adversarialString },
  );
  return fc.oneof(
    {
      weight: 6,
      // Capped: a header block over 16 KiB is refused by Node's parser (see "malformed HTTP").
      arbitrary: token.map(
        (value) => [['authorization', Buffer.from(withoutControls(`Bearer ${value.slice(0, 4000)}`), 'utf8')]] as const,
      ),
    },
    { weight: 1, arbitrary: headerBytes.map((value) => [['authorization', value]] as const) },
    { weight: 1, arbitrary: fc.constant([] as const) },
  );
}

/** A query string: each key once or repeated, values adversarial, percent-encoding valid or broken. */
function queryString(params: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<string> {
  // Values are capped: a request head over 16 KiB is refused by Node's parser (see "malformed HTTP").
  const encoded = fc.oneof(...Object.values(params), adversarialString).chain((value) =>
    fc.constantFrom(
      percentEncode(value.slice(0, 500)),
      // Unencoded, as a careless client sends it, minus what cannot be in a request line at all.
      value.slice(0, 500).replace(/[^\x21-\x7e]/g, ''),
    ),
  );
  const brokenEncoding = fc.constantFrom('%', '%zz', '%00', '%ff%fe', '%E2%82', '%%', '%u0041');
  const key = fc.oneof(
    fc.constantFrom(...Object.keys(params)),
    hostileKey.map((name) => percentEncode(name)),
    fc.constantFrom('limit[]', 'cursor[a]', '__proto__[x]', 'a%zz', '%00'),
  );
  const pair = fc.tuple(key, fc.oneof({ weight: 4, arbitrary: encoded }, { weight: 1, arbitrary: brokenEncoding }));
  return fc
    .array(pair, { maxLength: 4 })
    .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([name, value]) => `${name}=${value}`).join('&')}`));
}

function post(
  path: string,
  target: Target | undefined,
  fields: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<HostileRequest> {
  return fc
    .record({
      body: bodyFor(fields),
      contentType,
      auth: target === undefined ? fc.constant([] as const) : authorization(target),
      extra: extraHeaders,
      query: fc.option(queryString({ a: fc.string({ maxLength: 5 }) }), { nil: '' }),
    })
    .map(({ body, contentType: type, auth, extra, query }) =>
      hostileRequest({ method: 'POST', path: `${path}${query}`, headers: [...type, ...auth, ...extra], body }),
    );
}

/** A request with a body to a path of its own (PATCH /users/:id, DELETE /auth/me …). */
function withBody(
  method: string,
  path: fc.Arbitrary<string>,
  target: Target,
  fields: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<HostileRequest> {
  return fc
    .record({ path, body: bodyFor(fields), contentType, auth: authorization(target), extra: extraHeaders })
    .map(({ path: target_, body, contentType: type, auth, extra }) =>
      hostileRequest({ method, path: target_, headers: [...type, ...auth, ...extra], body }),
    );
}

/** A request without a body (GET, DELETE). */
function bodiless(method: string, path: fc.Arbitrary<string>, target: Target): fc.Arbitrary<HostileRequest> {
  return fc
    .record({ path, auth: authorization(target), extra: extraHeaders })
    .map(({ path: target_, auth, extra }) =>
      hostileRequest({ method, path: target_, headers: [...auth, ...extra], body: undefined }),
    );
}

function get(path: fc.Arbitrary<string>, target: Target | undefined): fc.Arbitrary<HostileRequest> {
  return fc
    .record({
      path,
      auth: target === undefined ? fc.constant([] as const) : authorization(target),
      extra: extraHeaders,
    })
    .map(({ path: target_, auth, extra }) =>
      hostileRequest({ method: 'GET', path: target_, headers: [...auth, ...extra], body: undefined }),
    );
}

// Valid-looking values, per the schemas (routes/auth.ts, routes/users.ts).
const email = fc.oneof(
  fc.emailAddress(),
  fc.emailAddress().map((value) => ` ${value.toUpperCase()} `),
);
const password = fc.string({ minLength: 8, maxLength: 64 });
const name = fc.string({ minLength: 1, maxLength: 40 });

describe.concurrent(
  'hostile input, property-based: never a 5xx, always the one error shape, nothing stored from a rejected request',
  () => {
    test('POST /auth/register', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await fuzzTarget(onTestFinished);
      await fuzz(target, post('/auth/register', undefined, { email, password, name }));
    });

    test('POST /auth/login', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await fuzzTarget(onTestFinished);
      await fuzz(
        target,
        post('/auth/login', undefined, {
          email: fc.oneof(email, fc.constantFrom(target.user.email, target.admin.email.toUpperCase())),
          password: fc.oneof(password, fc.constant(PASSWORD)),
        }),
      );
    });

    test('POST /auth/refresh and POST /auth/logout', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await fuzzTarget(onTestFinished);
      const refreshToken = fc.oneof(
        fc.constantFrom(...target.refreshTokens),
        fc.base64String({ maxLength: 60 }),
        fc.string({ maxLength: 600 }),
      );
      await fuzz(
        target,
        fc.oneof(post('/auth/refresh', undefined, { refreshToken }), post('/auth/logout', undefined, { refreshToken })),
      );
    });

    test('GET /auth/me and POST /auth/password', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await fuzzTarget(onTestFinished);
      await fuzz(
        target,
        fc.oneof(
          get(fc.constant('/auth/me'), target),
          post('/auth/password', target, {
            currentPassword: fc.oneof(password, fc.constant(PASSWORD)),
            newPassword: password,
          }),
        ),
      );
    });

    test('GET /users and GET /users/:id', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await fuzzTarget(onTestFinished);
      const cursor = fc.oneof(
        fc.jsonValue({ maxDepth: 2 }).map((value) => Buffer.from(JSON.stringify(value)).toString('base64url')),
        fc
          .tuple(
            fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
            uuid,
          )
          .map((pair) => Buffer.from(JSON.stringify(pair)).toString('base64url')),
        fc.constantFrom(
          Buffer.from(JSON.stringify(['-271821-04-20T00:00:00.000Z', randomUUID()])).toString('base64url'),
          Buffer.from(JSON.stringify(['+275760-09-13T00:00:00.000Z', randomUUID()])).toString('base64url'),
          Buffer.from(JSON.stringify(['2024-01-01T00:00:00Z', 'ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ'])).toString(
            'base64url',
          ),
        ),
        fc.string({ maxLength: 250 }),
      );
      const limit = fc.oneof(
        fc.integer({ min: -5, max: 105 }).map(String),
        fc.constantFrom('1e2', '1.5', '0x10', '', ' 5', '5 ', '99999999999999999999', 'NaN'),
      );
      const list = queryString({ limit, cursor }).map((query) => `/users${query}`);
      const id = fc
        .oneof(
          uuid,
          fc.constantFrom(
            target.user.id,
            target.admin.id,
            target.user.id.toUpperCase(),
            '00000000-0000-0000-0000-000000000000',
          ),
          // Broken percent-encoding and parameters over 100 characters have tests of their own under "malformed HTTP".
          adversarialString.map((value) => percentEncode(value)).filter((value) => value.length <= 100),
          fc.constantFrom('%00', '..', '%2e%2e', '%2F', 'x'.repeat(100), '%EF%BF%BD', '%F0%9F%98%80'),
        )
        .map((value) => `/users/${value}`);
      await fuzz(target, fc.oneof(get(list, target), get(id, target)));
    });

    test(
      'PATCH and DELETE /users/:id, GET /users/:id/events, the session routes and PATCH / DELETE /auth/me',
      { timeout: PROPERTY_TIMEOUT },
      async ({ onTestFinished }) => {
        const target = await fuzzTarget(onTestFinished);
        const id = fc.oneof(
          uuid,
          fc.constantFrom(target.user.id, target.admin.id, target.user.id.toUpperCase(), 'not-a-uuid', '%00'),
          adversarialString.map((value) => percentEncode(value)).filter((value) => value.length <= 100),
        );
        const role = fc.oneof(fc.constantFrom('user', 'admin', 'root', 'ADMIN'), wrongTypeJson);
        const status = fc.oneof(fc.constantFrom('active', 'disabled', 'deleted'), wrongTypeJson);
        const page = queryString({
          limit: fc.oneof(fc.integer({ min: -5, max: 105 }).map(String), fc.constantFrom('1e2', '', 'NaN')),
          cursor: fc.oneof(
            fc.string({ maxLength: 250 }),
            uuid.map((value) => Buffer.from(value).toString('base64url')),
          ),
        });
        await fuzz(
          target,
          fc.oneof(
            withBody(
              'PATCH',
              id.map((value) => `/users/${value}`),
              target,
              { name, role, status },
            ),
            bodiless(
              'DELETE',
              id.map((value) => `/users/${value}`),
              target,
            ),
            get(
              fc.tuple(id, page).map(([value, query]) => `/users/${value}/events${query}`),
              target,
            ),
            get(fc.constant('/auth/sessions'), target),
            get(
              page.map((query) => `/auth/events${query}`),
              target,
            ),
            bodiless(
              'DELETE',
              fc.oneof(
                fc.constant('/auth/sessions'),
                id.map((value) => `/auth/sessions/${value}`),
              ),
              target,
            ),
            withBody('PATCH', fc.constant('/auth/me'), target, { name }),
            withBody('DELETE', fc.constant('/auth/me'), target, {
              password: fc.oneof(password, fc.constant(PASSWORD)),
            }),
          ),
        );
      },
    );

    test(
      'health, metrics, docs, unknown routes and methods',
      { timeout: PROPERTY_TIMEOUT },
      async ({ onTestFinished }) => {
        const target = await fuzzTarget(onTestFinished);
        const path = fc
          .tuple(
            fc.oneof(
              fc.constantFrom(
                '/health/live',
                '/health/ready',
                '/metrics',
                '/docs/json',
                '/docs',
                '/docs/static/index.html',
                '/docs/static/../../package.json',
                '/auth',
                '/',
                '//auth/me',
                '/auth/me/',
                '/AUTH/ME',
              ),
              adversarialString.map((value) => `/${percentEncode(value.slice(0, 200))}`),
            ),
            queryString({ limit: fc.string({ maxLength: 5 }) }),
          )
          .map(([route, query]) => `${route}${query}`);
        const anyMethod = fc
          .record({
            method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND'),
            path,
            extra: extraHeaders,
            body: fc.option(
              fc.uint8Array({ maxLength: 100 }).map((bytes) => Buffer.from(bytes)),
              { nil: undefined },
            ),
          })
          .map(({ method, path: target_, extra, body }) =>
            hostileRequest({ method, path: target_, headers: extra, body }),
          );
        await fuzz(target, fc.oneof(get(path, undefined), anyMethod));
      },
    );
  },
);

describe('malformed HTTP', () => {
  // Requests rejected before any route runs: by Node's HTTP parser, or by the router. A client
  // still gets an answer, a 4xx in the one error shape with the x-request-id it names.

  /** Sends each case on a connection of its own and lists every answer that breaks the contract. */
  async function contractBreaches(
    onFinished: OnFinished,
    cases: ReadonlyArray<readonly [string, string]>,
  ): Promise<string[]> {
    const { url } = await isolatedDatabase(onFinished);
    const { baseUrl } = await appOnPool(onFinished, url, HTTP_PORTS);
    const port = Number(new URL(baseUrl).port);
    const breaches: string[] = [];
    for (const [name, request] of cases) {
      const response = await rawRequest(port, Buffer.from(request, 'latin1'));
      try {
        expect(response, 'no response at all').toBeDefined();
        if (response === undefined) continue;
        expect(response.status).toBeGreaterThanOrEqual(400);
        expect(response.status).toBeLessThan(500);
        expectError(response);
      } catch {
        breaches.push(
          `${name}: ${response === undefined ? 'no response' : `${response.status} ${JSON.stringify(response.headers['x-request-id'] ?? null)} ${response.body}`}`,
        );
      }
    }
    return breaches;
  }

  test("answers requests that Node's HTTP parser refuses with a 4xx in the one error shape", async ({
    onTestFinished,
  }) => {
    const breaches = await contractBreaches(onTestFinished, [
      [
        'a NUL byte in a header value',
        'GET /health/live HTTP/1.1\r\nhost: x\r\nx-request-id: a\u0000b\r\nconnection: close\r\n\r\n',
      ],
      [
        'a header block over 16 KiB',
        `GET /auth/me HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${'a'.repeat(20_000)}\r\nconnection: close\r\n\r\n`,
      ],
      [
        'a request target over 16 KiB',
        `GET /auth/me?a=${'y'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
      ],
      [
        'content-length and transfer-encoding together',
        'POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      ],
      [
        'a broken chunk size',
        'POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      ],
      ['a request line that is not HTTP', 'HELLO THERE\r\n\r\n'],
      ['a space in the request target', 'GET /health/ live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'],
    ]);
    expect(breaches).toEqual([]);
  });

  test('answers paths the router cannot decode or match with a 4xx in the one error shape', async ({
    onTestFinished,
  }) => {
    const get = (target: string) => `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`;
    const breaches = await contractBreaches(onTestFinished, [
      ['broken percent-encoding in the path', get('/users/%')],
      ['a truncated UTF-8 sequence in the path', get('/users/%E2%82')],
      ['an overlong UTF-8 NUL in the path', get('/users/%C0%80')],
      ['a path parameter over 100 characters', get(`/users/${'x'.repeat(101)}`)],
    ]);
    expect(breaches).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The email routes (verification, forgot / reset password): the same invariants, and a rejected
// request also queues no email, uses up or supersedes no account token and verifies no address.

interface EmailTarget extends Target {
  readonly verificationTokens: readonly string[];
  readonly resetTokens: readonly string[];
  emailSnapshot(): Promise<EmailSnapshot>;
}

interface EmailSnapshot {
  readonly outbox: number;
  /** Digest of every account token's state (used, superseded) and every address's verification. */
  readonly digest: string;
}

async function emailFuzzTarget(onFinished: OnFinished): Promise<EmailTarget> {
  const { url, db } = await isolatedDatabase(onFinished);
  const { baseUrl } = await appOnPool(onFinished, url, HTTP_PORTS, {
    RATE_LIMIT_EMAIL: '1000000',
    RATE_LIMIT_REGISTER: '1000000',
    RATE_LIMIT_LOGIN: '1000000',
    DB_POOL_MAX: '4',
  });
  const admin = await createUser(db, { role: 'admin', email: `admin-${randomUUID()}@example.com` });
  const users = await Promise.all(
    Array.from({ length: 6 }, (_, i) => createUser(db, { email: `mail-${i}-${randomUUID()}@example.com` })),
  );
  const [user] = users;
  if (user === undefined) throw new Error('no user');
  const now = new Date();
  const verificationTokens: string[] = [];
  const resetTokens: string[] = [];
  for (const { id } of users) {
    verificationTokens.push(
      await issueAccountToken(db, { userId: id, purpose: 'email_verification', ttlSeconds: 86_400 }, now),
    );
    resetTokens.push(await issueAccountToken(db, { userId: id, purpose: 'password_reset', ttlSeconds: 3_600 }, now));
  }
  const refreshTokens = Array.from({ length: 3 }, () => newRefreshToken());
  await db
    .insertInto('refresh_tokens')
    .values(
      refreshTokens.map((token) => ({
        user_id: user.id,
        family_id: randomUUID(),
        token_hash: hashRefreshToken(token),
        expires_at: new Date(Date.now() + 86_400_000),
      })),
    )
    .execute();

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onFinished(async () => {
    await client.end();
  });
  return {
    port: Number(new URL(baseUrl).port),
    admin: { id: admin.id, email: admin.email, token: accessTokenFor(admin) },
    user: { id: user.id, email: user.email, token: accessTokenFor(user) },
    refreshTokens,
    verificationTokens,
    resetTokens,
    async snapshot() {
      const { rows } = await client.query<{
        users: string;
        users_digest: string;
        tokens: string;
        live_tokens: string;
      }>(`
        select (select count(*) from users) as users,
               (select coalesce(md5(string_agg(concat_ws('|', id, email, name, role, password_hash, updated_at, last_login_at, email_verified_at), ',' order by id)), '')
                  from users) as users_digest,
               (select count(*) from refresh_tokens) as tokens,
               (select count(*) from refresh_tokens where rotated_at is null and revoked_at is null) as live_tokens`);
      const row = rows[0];
      if (row === undefined) throw new Error('no snapshot');
      return {
        users: Number(row.users),
        usersDigest: row.users_digest,
        tokens: Number(row.tokens),
        liveTokens: Number(row.live_tokens),
      };
    },
    async emailSnapshot() {
      const { rows } = await client.query<{ outbox: string; digest: string }>(`
        select (select count(*) from email_outbox) as outbox,
               (select coalesce(md5(string_agg(concat_ws('|', id, used_at, superseded_at), ',' order by id)), '')
                  from account_tokens) as digest`);
      const row = rows[0];
      if (row === undefined) throw new Error('no snapshot');
      return { outbox: Number(row.outbox), digest: row.digest };
    },
  };
}

/** {@link fuzz}, and a rejected request left the outbox and every account token as they were. */
async function fuzzEmail(target: EmailTarget, requests: fc.Arbitrary<HostileRequest>): Promise<void> {
  await fc.assert(
    fc.asyncProperty(requests, async (request) => {
      const before = await target.emailSnapshot();
      const response = await expectHandled(target, request);
      if (response.status >= 400) {
        expect(await target.emailSnapshot(), `email state changed by rejected ${describeRequest(request)}`).toEqual(
          before,
        );
      }
    }),
    { numRuns: NUM_RUNS, plugins: [fc.interruptAfterTimeLimit(50_000)] },
  );
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTOTYPE_NAMES);
}

/** Account tokens: live ones of either purpose, their look-alikes, and anything else. */
function accountToken(target: EmailTarget): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...target.verificationTokens, ...target.resetTokens) },
    {
      weight: 2,
      arbitrary: fc.string({
        unit: fc.constantFrom(...Array.from('ABCXYZabcxyz0189-_+/=')),
        minLength: 42,
        maxLength: 44,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...target.resetTokens).map((token) => ` ${token.toUpperCase()}`),
    },
    { weight: 2, arbitrary: adversarialString },
    { weight: 1, arbitrary: fc.constant('t'.repeat(5_000)) },
  );
}

/**
 * A request as a well-behaved client sends it (JSON, the user's bearer token where one is given),
 * so the fuzzing also reaches the paths that succeed: a live token used, a reset done.
 */
function wellFormed(path: string, body: fc.Arbitrary<Record<string, unknown>>, token?: string) {
  return body.map((value) =>
    hostileRequest({
      method: 'POST',
      path,
      headers: [
        ['content-type', Buffer.from('application/json')],
        ...(token === undefined ? [] : ([['authorization', Buffer.from(`Bearer ${token}`)]] as const)),
      ],
      body: Buffer.from(JSON.stringify(value)),
    }),
  );
}

describe.concurrent(
  'hostile input on the email routes: never a 5xx, the one error shape, no email or token change from a rejected request',
  () => {
    test(
      'POST /auth/email/verify and POST /auth/email/verification',
      { timeout: PROPERTY_TIMEOUT },
      async ({ onTestFinished }) => {
        const target = await emailFuzzTarget(onTestFinished);
        await fuzzEmail(
          target,
          fc.oneof(
            post('/auth/email/verify', undefined, { token: accountToken(target) }),
            post('/auth/email/verification', target, {}),
            wellFormed('/auth/email/verify', fc.record({ token: fc.constantFrom(...target.verificationTokens) })),
            wellFormed('/auth/email/verification', fc.constant({}), target.user.token),
          ),
        );
      },
    );

    test('POST /auth/password/forgot', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await emailFuzzTarget(onTestFinished);
      const forgotten = fc.oneof(email, fc.constantFrom(target.user.email, target.admin.email.toUpperCase()));
      await fuzzEmail(
        target,
        fc.oneof(
          { weight: 3, arbitrary: post('/auth/password/forgot', undefined, { email: forgotten }) },
          { weight: 1, arbitrary: wellFormed('/auth/password/forgot', fc.record({ email: forgotten })) },
        ),
      );
    });

    test('POST /auth/password/reset', { timeout: PROPERTY_TIMEOUT }, async ({ onTestFinished }) => {
      const target = await emailFuzzTarget(onTestFinished);
      // Common and unstorable passwords too: refused with the token left usable.
      const newPassword = fc.oneof(
        password,
        fc.constantFrom('password1', '12345678', 'qwertyuiop', '\u0000'.repeat(8)),
      );
      await fuzzEmail(
        target,
        fc.oneof(
          {
            weight: 3,
            arbitrary: post('/auth/password/reset', undefined, { token: accountToken(target), newPassword }),
          },
          {
            weight: 1,
            arbitrary: wellFormed(
              '/auth/password/reset',
              fc.record({ token: fc.constantFrom(...target.resetTokens), newPassword }),
            ),
          },
        ),
      );
    });
  },
);
