import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { configProblems, TEST_ENCRYPTION_KEY as ENCRYPTION_KEY } from '../../helpers/app.ts';

/** A production relying party for passkeys (required there unless PASSKEYS_ENABLED=false). */
const RP = { WEBAUTHN_RP_ID: 'app.example', WEBAUTHN_ORIGINS: 'https://app.example' };

describe('loadConfig', () => {
  it('gives every variable its documented default', () => {
    const config = loadConfig({}, '/srv/app');
    expect(config).toMatchObject({
      env: 'development',
      host: '127.0.0.1',
      port: 3000,
      logLevel: 'info',
      dataDir: '/srv/app/.data',
      migrateOnStart: true,
      shutdownGraceMs: 10_000,
      database: {
        url: undefined,
        embeddedPort: 54329,
        poolMax: 10,
        connectionTimeoutMs: 5000,
        idleTimeoutMs: 30_000,
        statementTimeoutMs: 10_000,
        preparedStatements: true,
        slowQueryMs: 100,
        logQueries: true,
      },
      auth: { jwtSecret: undefined, accessTokenTtlSeconds: 900, refreshTokenTtlSeconds: 2_592_000 },
      http: { bodyLimitBytes: 1_048_576, corsOrigins: [], trustProxy: false },
      metrics: { bearerToken: undefined },
    });
  });

  it('does not migrate on start by default when DATABASE_URL names an existing server', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://app@db.example.com/app' });
    expect(config.database.url).toBe('postgres://app@db.example.com/app');
    expect(config.migrateOnStart).toBe(false);
    expect(loadConfig({ DATABASE_URL: 'postgresql://db/app', MIGRATE_ON_START: 'yes' }).migrateOnStart).toBe(true);
  });

  it('reads numbers, booleans, lists and proxy settings', () => {
    const config = loadConfig({
      PORT: '8080',
      DB_POOL_MAX: '25',
      LOG_QUERIES: 'off',
      DB_PREPARED_STATEMENTS: 'false',
      CORS_ORIGINS: 'https://a.example, https://b.example,,',
      TRUST_PROXY: '2',
      DATA_DIR: '/var/lib/app',
      NODE_ENV: 'test',
    });
    expect(config.port).toBe(8080);
    expect(config.database.poolMax).toBe(25);
    expect(config.database.logQueries).toBe(false);
    expect(config.database.preparedStatements).toBe(false);
    expect(config.http.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(config.http.trustProxy).toBe(2);
    expect(config.dataDir).toBe('/var/lib/app');
    expect(config.logLevel).toBe('silent');
    expect(loadConfig({ TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.1,10.0.0.2' }).http.trustProxy).toBe('10.0.0.1,10.0.0.2');
  });

  it('names every bad variable at once instead of stopping at the first', () => {
    const problems = configProblems({
      PORT: 'eighty',
      DB_POOL_MAX: '0',
      LOG_LEVEL: 'loud',
      LOG_QUERIES: 'maybe',
      DATABASE_URL: 'mysql://db/app',
      JWT_SECRET: 'short',
    });
    expect(problems).toHaveLength(6);
    expect(problems.join('\n')).toMatch(/PORT must be an integer from 0 to 65535 \(got "eighty"\)/);
    expect(problems.join('\n')).toMatch(/DB_POOL_MAX must be an integer from 1 to 1000/);
    expect(problems.join('\n')).toMatch(/LOG_LEVEL must be one of/);
    expect(problems.join('\n')).toMatch(/LOG_QUERIES must be true or false/);
    expect(problems.join('\n')).toMatch(/DATABASE_URL must be a postgres:\/\/ URL \(got protocol "mysql:"\)/);
    expect(problems.join('\n')).toMatch(/JWT_SECRET must be at least 32 bytes/);
  });

  it('refuses a DATABASE_URL that is not a URL and a fractional number', () => {
    expect(configProblems({ DATABASE_URL: 'not a url', PORT: '1.5' })).toEqual([
      'DATABASE_URL must be a postgres:// URL',
      'PORT must be an integer from 0 to 65535 (got "1.5")',
    ]);
  });

  it('requires an encryption key in production, and a JWT secret when it signs (HS256)', () => {
    const production = {
      NODE_ENV: 'production',
      METRICS_TOKEN: 'scrape-secret',
      APP_URL: 'https://app.example',
      ...RP,
    };
    expect(configProblems(production)).toEqual([
      'ENCRYPTION_KEY is required when NODE_ENV=production (generate one: openssl rand -base64 32)',
    ]);
    expect(configProblems({ ...production, ENCRYPTION_KEY, JWT_ALGORITHM: 'HS256' })).toEqual([
      'JWT_SECRET is required when NODE_ENV=production and JWT_ALGORITHM=HS256',
    ]);
    expect(configProblems({ ...production, ENCRYPTION_KEY })).toEqual([]);
    expect(loadConfig({ ...production, ENCRYPTION_KEY, JWT_SECRET: 'x'.repeat(32) }).auth.jwtSecret).toBe(
      'x'.repeat(32),
    );
  });

  it('signs with EdDSA by default, and reads the key settings', () => {
    expect(loadConfig({}).auth).toMatchObject({
      jwtAlgorithm: 'EdDSA',
      encryptionKey: undefined,
      jwksMaxAgeSeconds: 300,
      introspectionTokens: [],
    });
    const auth = loadConfig({
      JWT_ALGORITHM: 'ES256',
      ENCRYPTION_KEY,
      JWKS_MAX_AGE_SECONDS: '60',
      INTROSPECTION_TOKEN: `${'a'.repeat(32)}, ${'b'.repeat(40)}`,
    }).auth;
    expect(auth.jwtAlgorithm).toBe('ES256');
    expect(auth.encryptionKey).toHaveLength(32);
    expect(auth.jwksMaxAgeSeconds).toBe(60);
    expect(auth.introspectionTokens).toEqual(['a'.repeat(32), 'b'.repeat(40)]);
  });

  it.each([
    [{ JWT_ALGORITHM: 'RS256' }, 'JWT_ALGORITHM must be one of EdDSA, ES256, HS256 (got "RS256")'],
    [{ JWT_ALGORITHM: 'none' }, 'JWT_ALGORITHM must be one of EdDSA, ES256, HS256 (got "none")'],
    [
      { ENCRYPTION_KEY: 'too-short' },
      'ENCRYPTION_KEY must be 32 random bytes in base64 (generate one: openssl rand -base64 32)',
    ],
    [{ INTROSPECTION_TOKEN: 'short' }, 'every token in INTROSPECTION_TOKEN must be at least 32 bytes long'],
  ])('refuses %o', (env, problem) => {
    expect(configProblems(env)).toEqual([problem]);
  });

  it('refuses to start in production with a public /metrics unless METRICS_PUBLIC=true says so (issue 22 item 10)', () => {
    const production = {
      NODE_ENV: 'production',
      JWT_SECRET: 'x'.repeat(32),
      ENCRYPTION_KEY,
      APP_URL: 'https://app.example',
      ...RP,
    };
    expect(configProblems(production)).toEqual([
      'METRICS_TOKEN is required when NODE_ENV=production (GET /metrics would be public); set METRICS_PUBLIC=true to serve it without a token on purpose',
    ]);
    expect(configProblems({ ...production, METRICS_TOKEN: 'scrape-secret' })).toEqual([]);
    expect(loadConfig({ ...production, METRICS_PUBLIC: 'true' }).metrics).toEqual({
      bearerToken: undefined,
      public: true,
    });
  });

  it('requires the passkeys relying party in production unless PASSKEYS_ENABLED=false, and defaults it elsewhere', () => {
    const production = {
      NODE_ENV: 'production',
      METRICS_TOKEN: 'm',
      ENCRYPTION_KEY,
      APP_URL: 'https://app.example',
    };
    expect(configProblems(production)).toEqual([
      'WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS are required when NODE_ENV=production (or set PASSKEYS_ENABLED=false)',
    ]);
    expect(configProblems({ ...production, ...RP })).toEqual([]);
    expect(loadConfig({ ...production, PASSKEYS_ENABLED: 'false' }).auth.webauthn).toBeUndefined();
    expect(configProblems({ ...production, ...RP, WEBAUTHN_ORIGINS: 'app.example' })).toEqual([
      'WEBAUTHN_ORIGINS lists origins like https://app.example.com (got "app.example")',
    ]);
    expect(loadConfig({ APP_URL: 'http://localhost:5173/app/' }).auth.webauthn).toEqual({
      rpId: 'localhost',
      rpName: 'pg-fastify-backend',
      origins: ['http://localhost:5173'],
    });
  });

  it('refuses to start in production without APP_URL, whose development default is localhost (issue 33 item 9)', () => {
    const production = {
      NODE_ENV: 'production',
      JWT_SECRET: 'x'.repeat(32),
      METRICS_TOKEN: 'm',
      ENCRYPTION_KEY,
      ...RP,
    };
    expect(configProblems(production)).toEqual([
      "APP_URL is required when NODE_ENV=production (the client application's base URL, used in email links)",
    ]);
    // An APP_URL that is not a URL is reported once, as such.
    expect(configProblems({ ...production, APP_URL: 'app.example.com' })).toEqual(['APP_URL must be a https:// URL']);
    expect(loadConfig({ ...production, APP_URL: 'https://app.example.com/' }).email.appUrl).toBe(
      'https://app.example.com',
    );
    expect(loadConfig({ NODE_ENV: 'development' }).email.appUrl).toBe('http://localhost:3000');
  });

  it('turns the API docs off in production unless DOCS_ENABLED=true', () => {
    const production = {
      NODE_ENV: 'production',
      JWT_SECRET: 'x'.repeat(32),
      METRICS_TOKEN: 'm',
      ENCRYPTION_KEY,
      APP_URL: 'https://app.example',
      ...RP,
    };
    expect(loadConfig(production).docs.enabled).toBe(false);
    expect(loadConfig({ ...production, DOCS_ENABLED: 'true' }).docs.enabled).toBe(true);
    expect(loadConfig({}).docs.enabled).toBe(true);
  });

  it('treats blank variables as unset', () => {
    expect(loadConfig({ PORT: '  ', DATABASE_URL: '' }).port).toBe(3000);
  });
});
