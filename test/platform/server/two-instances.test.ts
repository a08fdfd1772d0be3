import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { beforeAll } from 'vitest';
import { TEST_JWT_SECRET, TEST_ENCRYPTION_KEY } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../../helpers/database.ts';
import { assertRedisAnswers, TEST_REDIS_URL } from '../../helpers/redis.ts';
import { startServerProcess, type ServerProcess as Instance } from '../../helpers/server-process.ts';
import {
  createUser,
  PASSWORD,
  type ErrorJson,
  type LoginJson,
  type TokenPairJson,
  type UserJson,
} from '../../helpers/http.ts';

const REDIS_URL = TEST_REDIS_URL;

beforeAll(assertRedisAnswers);

// Two real server processes (`node src/server.ts`) on two loopback ports, sharing one committed
// database and, where a test says so, one Redis: what a load balancer in front of two instances sees.

interface Deployment {
  readonly a: Instance;
  readonly b: Instance;
  readonly databaseUrl: string;
  readonly db: Awaited<ReturnType<typeof isolatedDatabase>>['db'];
  /** Keys this deployment wrote to Redis. */
  readonly redisKeys: () => Promise<string[]>;
}

async function twoInstances(
  onFinished: (fn: () => Promise<void>) => void,
  options: { redis: boolean; env?: Record<string, string> },
): Promise<Deployment> {
  const database = await isolatedDatabase(onFinished);
  const prefix = `vitest:${randomBytes(6).toString('hex')}:`;
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const redisKeys = async () => {
    if (redis.status === 'wait') await redis.connect();
    return redis.keys(`${prefix}*`);
  };
  onFinished(async () => {
    const keys = await redisKeys();
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  const env = {
    NODE_ENV: 'production',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    APP_URL: 'http://localhost:3000',
    WEBAUTHN_RP_ID: 'localhost',
    WEBAUTHN_ORIGINS: 'http://localhost:3000',
    // Production refuses to start without a mail transport and a metrics token unless told so.
    EMAIL_TRANSPORT: 'log',
    METRICS_PUBLIC: 'true',
    LOG_LEVEL: 'warn',
    DATABASE_URL: database.url,
    // Through PgBouncer under `npm run test:pgbouncer`.
    DB_POOL_MODE: TEST_POOL.poolMode ?? 'session',
    DB_POOL_MAX: '4',
    MIGRATE_ON_START: 'false',
    JWT_SECRET: TEST_JWT_SECRET,
    HASH_CONCURRENCY: '1',
    ...(options.redis ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
    ...options.env,
  };
  const [a, b] = await Promise.all([
    startServerProcess({ env, port: [3400, 3499] }),
    startServerProcess({ env, port: [3400, 3499] }),
  ]);
  onFinished(async () => {
    await Promise.all([a.stop(), b.stop()]);
  });
  return { a, b, databaseUrl: database.url, db: database.db, redisKeys };
}

async function post(instance: Instance, path: string, body: unknown): Promise<Response> {
  return fetch(`${instance.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function errorOf(response: Response): Promise<ErrorJson> {
  return ((await response.json()) as { error: ErrorJson }).error;
}

describe('two instances behind one load balancer', () => {
  test('within the reuse interval, a refresh token rotated through instance A gets the same successor through instance B', async ({
    onTestFinished,
  }) => {
    const { a, b, db } = await twoInstances(onTestFinished, { redis: true });
    const user = await createUser(db);
    const loggedIn = await post(a, '/auth/login', { email: user.email, password: PASSWORD });
    expect(loggedIn.status).toBe(200);
    const session = (await loggedIn.json()) as LoginJson;

    const rotated = await post(a, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    // The response to A was lost; the client retries through B (REFRESH_REUSE_INTERVAL_SECONDS, 10 s).
    const retried = await post(b, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(retried.status).toBe(200);
    const successor = ((await rotated.json()) as TokenPairJson).refreshToken;
    expect(((await retried.json()) as TokenPairJson).refreshToken).toBe(successor);
    const live = await db
      .selectFrom('refresh_tokens')
      .select('id')
      .where('user_id', '=', user.id)
      .where('revoked_at', 'is', null)
      .where('rotated_at', 'is', null)
      .execute();
    expect(live).toHaveLength(1);
    expect((await post(b, '/auth/refresh', { refreshToken: successor })).status).toBe(200);
  });

  test('past the reuse interval (here 0), a refresh token rotated through instance A is rejected as reused through instance B, which revokes its family', async ({
    onTestFinished,
  }) => {
    const { a, b, db } = await twoInstances(onTestFinished, {
      redis: true,
      env: { REFRESH_REUSE_INTERVAL_SECONDS: '0' },
    });
    const user = await createUser(db);

    const loggedIn = await post(a, '/auth/login', { email: user.email, password: PASSWORD });
    expect(loggedIn.status).toBe(200);
    const session = (await loggedIn.json()) as LoginJson;
    // Shared JWT configuration: B accepts what A signed.
    const me = await fetch(`${b.baseUrl}/auth/me`, { headers: { authorization: `Bearer ${session.accessToken}` } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { user: UserJson }).user.id).toBe(user.id);

    const rotated = await post(a, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    const newest = ((await rotated.json()) as TokenPairJson).refreshToken;

    const replayed = await post(b, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(replayed.status).toBe(401);
    expect(await errorOf(replayed)).toMatchObject({ type: 'AuthenticationError', code: 'INVALID_TOKEN' });
    // The whole family is revoked, whichever instance is asked next.
    expect((await post(a, '/auth/refresh', { refreshToken: newest })).status).toBe(401);
    expect((await post(b, '/auth/refresh', { refreshToken: newest })).status).toBe(401);
    const live = await db
      .selectFrom('refresh_tokens')
      .select('id')
      .where('user_id', '=', user.id)
      .where('revoked_at', 'is', null)
      .execute();
    expect(live).toEqual([]);
  });

  test('with REDIS_URL, counts login attempts across both instances: the 5th attempt is refused whichever instance gets it', async ({
    onTestFinished,
  }) => {
    const { a, b, redisKeys } = await twoInstances(onTestFinished, { redis: true, env: { RATE_LIMIT_LOGIN: '4' } });
    const attempt = (instance: Instance) =>
      post(instance, '/auth/login', { email: 'nobody@example.com', password: 'a wrong guess' });

    const statuses = [];
    for (const instance of [a, b, a, b]) statuses.push((await attempt(instance)).status);
    expect(statuses).toEqual([401, 401, 401, 401]);

    for (const instance of [a, b]) {
      const refused = await attempt(instance);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await errorOf(refused)).toMatchObject({ type: 'RateLimitError', code: 'RATE_LIMITED' });
    }
    // The counters are in Redis, under this deployment's prefix: the per-address cap and the
    // failure counters of the account throttle, whose keys carry a hash of the email, never the email.
    const keys = await redisKeys();
    expect(keys.some((key) => key.includes('login-ip:'))).toBe(true);
    expect(keys.some((key) => key.includes('throttle:fail:'))).toBe(true);
    expect(keys.filter((key) => key.includes('nobody@example.com'))).toEqual([]);
  });

  test('without REDIS_URL, each instance counts only its own attempts (why several instances need the shared store)', async ({
    onTestFinished,
  }) => {
    const { a, b } = await twoInstances(onTestFinished, { redis: false, env: { RATE_LIMIT_LOGIN: '2' } });
    const attempt = async (instance: Instance) =>
      (await post(instance, '/auth/login', { email: 'nobody@example.com', password: 'a wrong guess' })).status;

    // Four attempts get through where the limit is two: two per instance.
    expect([await attempt(a), await attempt(b), await attempt(a), await attempt(b)]).toEqual([401, 401, 401, 401]);
    expect([await attempt(a), await attempt(b)]).toEqual([429, 429]);
  });
});
