import { Writable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { buildApp, type App, type AppDeps } from '../../src/app.ts';
import { ConfigError } from '../../src/platform/config/reader.ts';
import { loadConfig, type Config } from '../../src/platform/config.ts';
import { PasswordHasher, type Argon2Params } from '../../src/auth/passwords.ts';

export const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-bytes-long!';
/** ENCRYPTION_KEY of the tests: 32 fixed bytes, base64. */
export const TEST_ENCRYPTION_KEY = Buffer.alloc(32, 7).toString('base64');

/**
 * argon2id at its cheapest (still real argon2id, about a millisecond a hash) for the tests that are
 * about what the application does with passwords, not what a hash costs: at OWASP's parameters
 * every register, login and password change costs tens of milliseconds of CPU, which made up most
 * of the suite's time. The tests of hashing itself (test/auth/passwords.test.ts, the upgrade of
 * old hashes on login, the OWASP floor) run with the production parameters: see `realHashing`.
 */
export const TEST_ARGON2: Argon2Params = { memoryCost: 1024, timeCost: 1, parallelism: 1 };

/**
 * A hasher with {@link TEST_ARGON2} and every limit `config` sets, exactly as the application
 * builds its own: only the cost of a hash may differ from production, never who is refused.
 */
export function testHasher(config: Config = testConfig()): PasswordHasher {
  return new PasswordHasher({
    params: TEST_ARGON2,
    concurrency: config.auth.hashConcurrency,
    queueLimit: config.auth.hashQueueLimit,
    callerShare: config.auth.hashCallerShare,
  });
}

/**
 * The configuration tests run with: the defaults, quiet logs, a fixed JWT secret and encryption
 * key. Tokens are HS256 here, so most suites can sign a token without a login (`accessTokenFor`);
 * the asymmetric default is tested with `JWT_ALGORITHM: 'EdDSA'` (test/keys/signing-keys.test.ts).
 */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    JWT_SECRET: TEST_JWT_SECRET,
    JWT_ALGORITHM: 'HS256',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    DATABASE_URL: 'postgres://unused/db',
    ...env,
  });
}

/** The problems `loadConfig` reports for `env` (none when it is valid). */
export function configProblems(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env, '/srv/app');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

/** Collects log lines (JSON) written by the app, for assertions on what is (not) logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((line) => line !== ''),
    );
    callback();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

/**
 * The real application on the given database (usually the per-test transaction), closed when
 * the test ends. It hashes with {@link TEST_ARGON2} unless a `hasher` is given or `realHashing`
 * is set, which leaves the hasher to the application (production parameters).
 *
 * @example
 * ```ts
 * test('answers liveness', async ({ db, onTestFinished }) => {
 *   const app = await testApp(db, onTestFinished);
 *   expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200);
 * });
 * ```
 */
export async function testApp(
  db: Kysely<DB>,
  onFinished: (fn: () => Promise<void>) => void,
  overrides: Partial<Omit<AppDeps, 'db'>> & { env?: Record<string, string>; realHashing?: boolean } = {},
): Promise<App> {
  const { env, realHashing = false, ...deps } = overrides;
  const config = testConfig(env);
  const hasher = deps.hasher ?? (realHashing ? undefined : testHasher(config));
  const app = await buildApp({
    config,
    jwtSecret: TEST_JWT_SECRET,
    ...deps,
    ...(hasher === undefined ? {} : { hasher }),
    db,
  });
  onFinished(async () => {
    await app.close();
  });
  await app.ready();
  return app;
}
