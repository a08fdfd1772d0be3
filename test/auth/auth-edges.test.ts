import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { App } from '../../src/app.ts';
import type { DB } from '../../src/platform/db/database.ts';
import { registerUser } from '../../src/auth/registration.ts';
import { createServices } from '../../src/services.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { AuthenticationError, AuthorizationError } from '../../src/platform/errors/index.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { failure } from '../helpers/assertions.ts';
import { LogCapture, testApp, testConfig, TEST_JWT_SECRET } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../helpers/database.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import {
  accessClaims,
  accessTokenFor,
  bearer,
  craftJwt,
  createUser,
  expectError,
  expectUnauthorized,
  login,
  PASSWORD,
  postJson,
} from '../helpers/http.ts';

describe('login upgrades old password hashes', () => {
  test('stores a hash with the current argon2 parameters after a login with a hash made with older ones', async ({
    db,
    onTestFinished,
  }) => {
    const older = new PasswordHasher({
      params: { memoryCost: 1024, timeCost: 1, parallelism: 1 },
      concurrency: 1,
      queueLimit: 1,
    });
    const users = new UserRepository(db);
    const user = await users.create({
      email: 'old-hash@example.com',
      name: 'Old Hash',
      passwordHash: await older.hash(PASSWORD),
    });
    const app = await testApp(db, onTestFinished, { realHashing: true });

    await login(app, 'old-hash@example.com');

    const stored = (await users.findById(user.id))?.password_hash ?? '';
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    expect(stored).not.toBe(user.password_hash);
    // The upgraded hash still holds the same password.
    await login(app, 'old-hash@example.com');
  });

  test('leaves a hash made with the current parameters as it is', async ({ db, onTestFinished }) => {
    const user = await createUser(db);
    const app = await testApp(db, onTestFinished);
    await login(app, user.email);
    expect((await new UserRepository(db).findById(user.id))?.password_hash).toBe(user.password_hash);
  });
});

describe('access tokens with a malformed header', () => {
  test.for([
    ['a JSON array', '[]'],
    ['a JSON string', '"HS256"'],
    ['not JSON', '{alg'],
  ] as const)(
    'refuses a token whose header is %s with 401 INVALID_TOKEN',
    async ([, header], { db, onTestFinished }) => {
      const user = await createUser(db);
      const app = await testApp(db, onTestFinished);
      const genuine = accessTokenFor(user).split('.');
      const token = [Buffer.from(header).toString('base64url'), genuine[1], genuine[2]].join('.');

      const response = await app.inject({ url: '/auth/me', headers: bearer(token) });

      expect(expectUnauthorized(response).message).toBe('Invalid access token');
    },
  );
});

describe('the JWT keys', () => {
  test('refuses to build the app with a signing secret shorter than 32 bytes', async ({ db }) => {
    const error = await failure(testApp(db, () => {}, { jwtSecret: 'x'.repeat(31) }));
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ message: 'Every JWT secret must be at least 32 bytes' });
  });

  test('accepts a token without kid, signed with the current secret', async ({ db, onTestFinished }) => {
    const user = await createUser(db);
    const app = await testApp(db, onTestFinished);
    const token = craftJwt(accessClaims(user), { secret: TEST_JWT_SECRET });
    expect((await app.inject({ url: '/auth/me', headers: bearer(token) })).statusCode).toBe(200);
  });
});

describe('GET /users cursor', () => {
  test.for([
    ['a number for the timestamp', [1_700_000_000_000, randomUUID()]],
    ['an unparseable timestamp', ['yesterday', randomUUID()]],
    ['an id that is not a uuid', [new Date().toISOString(), 'ada']],
    ['three elements', [new Date().toISOString(), randomUUID(), 'extra']],
  ] as const)('refuses a cursor holding %s with 400 on field cursor', async ([, content], { db, onTestFinished }) => {
    const admin = await createUser(db, { role: 'admin' });
    const app = await testApp(db, onTestFinished);
    const cursor = Buffer.from(JSON.stringify(content)).toString('base64url');

    const response = await app.inject({ url: `/users?cursor=${cursor}`, headers: bearer(accessTokenFor(admin)) });

    expect(
      expectError(response, { statusCode: 400, type: 'ValidationError', code: 'VALIDATION_FAILED', field: 'cursor' })
        .message,
    ).toBe('Invalid cursor');
  });
});

/** The services as `buildApp` composes them, signing with the test app's real key ring. */
function servicesOf(app: App, db: Kysely<DB>) {
  return createServices({
    db,
    hasher: new PasswordHasher({ concurrency: 1, queueLimit: 1 }),
    signer: app.accessTokens,
    clock: () => new Date(),
    refreshTokenTtlSeconds: 60,
    email: testConfig().email,
  });
}

describe('service rules that hold without the HTTP layer', () => {
  test('the user listing refuses a non-admin principal', async ({ db, onTestFinished }) => {
    const user = await createUser(db);
    const app = await testApp(db, onTestFinished);
    const error = await failure(
      servicesOf(app, db).users.list({ userId: user.id, role: 'user', mfaEnabled: false }, 10, undefined),
    );
    expect(error).toBeInstanceOf(AuthorizationError);
    expect(error).toMatchObject({ statusCode: 403, code: 'FORBIDDEN' });
  });

  test('changePassword of a user deleted since the token was issued is a 401 INVALID_TOKEN', async ({
    db,
    onTestFinished,
  }) => {
    const user = await createUser(db);
    const app = await testApp(db, onTestFinished);
    await new UserRepository(db).delete(user.id);
    const error = await failure(
      servicesOf(app, db).auth.changePassword(
        { userId: user.id, role: 'user', mfaEnabled: false },
        PASSWORD,
        'another long passphrase',
      ),
    );
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error).toMatchObject({ statusCode: 401, code: 'INVALID_TOKEN', message: 'Invalid token' });
  });

  test('registerUser stores the role it is given (user:create --admin), and "user" otherwise', async ({ db }) => {
    const hasher = new PasswordHasher({
      params: { memoryCost: 1024, timeCost: 1, parallelism: 1 },
      concurrency: 1,
      queueLimit: 4,
    });
    const admin = await registerUser(
      { db, hasher },
      { email: 'Root@Example.com', name: ' Root ', password: PASSWORD, role: 'admin' },
    );
    const plain = await registerUser({ db, hasher }, { email: 'plain@example.com', name: 'Plain', password: PASSWORD });
    expect(admin).toMatchObject({ email: 'root@example.com', name: 'Root', role: 'admin' });
    expect(plain.role).toBe('user');
    expect((await new UserRepository(db).findById(admin.id))?.role).toBe('admin');
  });
});

describe('login under hashing overload', () => {
  test('is refused with 503 OVERLOADED before the database is asked for the user', async ({ onTestFinished }) => {
    // Committed data on a database of its own, reached through a Kysely that records every query.
    const database = await isolatedDatabase(onTestFinished);
    const operations: string[] = [];
    const statements: string[] = [];
    const db = createDatabase(
      { ...TEST_POOL, url: database.url },
      {
        onQuery: (event) => {
          operations.push(event.operation);
          statements.push(event.sql);
        },
      },
    );
    onTestFinished(async () => {
      await db.destroy();
    });
    const user = await createUser(db);
    operations.length = 0;
    const hasher = new PasswordHasher({
      params: { memoryCost: 1024, timeCost: 1, parallelism: 1 },
      concurrency: 1,
      queueLimit: 0,
    });
    const logs = new LogCapture();
    const app = await testApp(db, onTestFinished, { hasher, logStream: logs, env: { LOG_LEVEL: 'info' } });
    const lookups = () => statements.filter((text) => /from "users" where lower\("email"\) = /.test(text)).length;

    // One hash holds the only slot and nothing may queue: the hasher is full.
    const holding = hasher.hash('holds the slot');
    const refused = await postJson(app, '/auth/login', { email: user.email, password: PASSWORD });
    // Shed before the body is even validated, and registration alike.
    const invalid = await postJson(app, '/auth/login', { email: 42 });
    const register = await postJson(app, '/auth/register', {
      email: 'new@example.com',
      password: PASSWORD,
      name: 'New',
    });
    await holding;
    for (const response of [refused, invalid, register]) {
      expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code: 'OVERLOADED' });
      expect(response.headers['retry-after']).toBe('1');
    }
    expect(lookups()).toBe(0);
    expect(operations).toEqual([]);
    // Refusing is expected under overload: a warning without a stack, not an error.
    const sheddingLines = logs.lines
      .map((line) => JSON.parse(line) as { level: number; code?: string; err?: unknown })
      .filter((l) => l.code === 'OVERLOADED');
    expect(sheddingLines).toHaveLength(3);
    expect(sheddingLines.every((line) => line.level === 40 && line.err === undefined)).toBe(true);

    // With the slot free again, the same login goes through (and does look the user up).
    await login(app, user.email);
    expect(lookups()).toBe(1);
  });
});
