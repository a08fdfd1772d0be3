import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { configProblems } from '../../helpers/app.ts';
import { keyId, keyRing } from '../../../src/keys/tokens.ts';

const SECRET = 'x'.repeat(32);
const OLD = 'o'.repeat(32);

describe('scale-out settings', () => {
  it('defaults to one instance on one database: session pool mode, no replicas, in-memory rate limits, no previous JWT keys', () => {
    const config = loadConfig({}, '/srv/app');
    expect(config.database).toMatchObject({
      poolMode: 'session',
      preparedStatements: true,
      replicaUrls: [],
      replicaMaxLagMs: 5000,
      replicaCheckIntervalMs: 1000,
    });
    expect(config.redis).toEqual({ url: undefined, keyPrefix: 'pg-fastify-backend:' });
    expect(config.auth.jwtPreviousSecrets).toEqual([]);
  });

  it('turns named prepared statements off by default in transaction pool mode', () => {
    const config = loadConfig({ DB_POOL_MODE: 'transaction' });
    expect(config.database).toMatchObject({ poolMode: 'transaction', preparedStatements: false });
    expect(
      loadConfig({ DB_POOL_MODE: 'transaction', DB_PREPARED_STATEMENTS: 'false' }).database.preparedStatements,
    ).toBe(false);
  });

  it('refuses DB_PREPARED_STATEMENTS=true with DB_POOL_MODE=transaction, saying why', () => {
    expect(configProblems({ DB_POOL_MODE: 'transaction', DB_PREPARED_STATEMENTS: 'true' })).toEqual([
      expect.stringMatching(/^DB_PREPARED_STATEMENTS=true cannot be used with DB_POOL_MODE=transaction: PgBouncer/),
    ]);
    expect(configProblems({ DB_POOL_MODE: 'statement' })).toEqual([
      expect.stringMatching(/^DB_POOL_MODE must be one of session, transaction/),
    ]);
  });

  it('caches principals for 60 s in session mode and not at all in transaction mode, refusing a cache there', () => {
    expect(loadConfig({}).auth.principalCacheSeconds).toBe(60);
    expect(loadConfig({ PRINCIPAL_CACHE_SECONDS: '0' }).auth.principalCacheSeconds).toBe(0);
    expect(loadConfig({ DB_POOL_MODE: 'transaction' }).auth.principalCacheSeconds).toBe(0);
    expect(configProblems({ DB_POOL_MODE: 'transaction', PRINCIPAL_CACHE_SECONDS: '30' })).toEqual([
      expect.stringMatching(
        /^PRINCIPAL_CACHE_SECONDS cannot be used with DB_POOL_MODE=transaction: the cache is kept fresh by LISTEN/,
      ),
    ]);
  });

  it('reads replica URLs, the lag bound and the check interval, naming each malformed URL', () => {
    const config = loadConfig({
      DATABASE_REPLICA_URLS: 'postgres://app@replica-1:5432/app, postgresql://app@replica-2/app',
      DB_REPLICA_MAX_LAG_MS: '250',
      DB_REPLICA_CHECK_INTERVAL_MS: '100',
    });
    expect(config.database.replicaUrls).toEqual([
      'postgres://app@replica-1:5432/app',
      'postgresql://app@replica-2/app',
    ]);
    expect(config.database).toMatchObject({ replicaMaxLagMs: 250, replicaCheckIntervalMs: 100 });
    expect(configProblems({ DATABASE_REPLICA_URLS: 'postgres://ok/app,mysql://replica/app,not a url' })).toEqual([
      'DATABASE_REPLICA_URLS must be a postgres:// URL (got protocol "mysql:")',
      'DATABASE_REPLICA_URLS must be a postgres:// URL',
    ]);
  });

  it('reads REDIS_URL and REDIS_KEY_PREFIX, and refuses a URL that is not redis://', () => {
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379/2', REDIS_KEY_PREFIX: 'api-eu:' }).redis).toEqual({
      url: 'redis://127.0.0.1:6379/2',
      keyPrefix: 'api-eu:',
    });
    expect(loadConfig({ REDIS_URL: 'rediss://cache.example.com' }).redis.url).toBe('rediss://cache.example.com');
    expect(configProblems({ REDIS_URL: 'http://cache' })).toEqual([
      'REDIS_URL must be a redis:// URL (got protocol "http:")',
    ]);
  });

  it('reads JWT_PREVIOUS_SECRETS, each at least 32 bytes, and only next to a JWT_SECRET', () => {
    expect(
      loadConfig({ JWT_SECRET: SECRET, JWT_PREVIOUS_SECRETS: `${OLD}, ${'p'.repeat(40)}` }).auth.jwtPreviousSecrets,
    ).toEqual([OLD, 'p'.repeat(40)]);
    expect(configProblems({ JWT_SECRET: SECRET, JWT_PREVIOUS_SECRETS: 'short' })).toEqual([
      'every secret in JWT_PREVIOUS_SECRETS must be at least 32 bytes long',
    ]);
    expect(configProblems({ JWT_PREVIOUS_SECRETS: OLD })).toEqual([
      'JWT_PREVIOUS_SECRETS needs JWT_SECRET (the key that signs) to be set',
    ]);
  });
});

describe('the JWT key ring', () => {
  it('names each secret by an id derived from it, so every instance agrees without coordination', () => {
    expect(keyId(SECRET)).toBe(keyId(SECRET));
    expect(keyId(SECRET)).not.toBe(keyId(OLD));
    expect(keyId(SECRET)).not.toContain(SECRET.slice(0, 8));
  });

  it('signs with the current secret and verifies with it or any previous one', () => {
    const ring = keyRing(SECRET, [OLD]);
    expect(ring.signing).toEqual({ kid: keyId(SECRET), secret: SECRET });
    expect([...ring.verifying]).toEqual([
      [keyId(SECRET), SECRET],
      [keyId(OLD), OLD],
    ]);
  });
});
