import { Writable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { buildApp, type App, type AppDeps } from '../../src/app.ts';
import { ConfigError, loadConfig, type Config } from '../../src/config.ts';

export const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-bytes-long!';

/** The configuration tests run with: the defaults, quiet logs, a fixed JWT secret. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ NODE_ENV: 'test', JWT_SECRET: TEST_JWT_SECRET, DATABASE_URL: 'postgres://unused/db', ...env });
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
 * the test ends.
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
  overrides: Partial<Omit<AppDeps, 'db'>> & { env?: Record<string, string> } = {},
): Promise<App> {
  const { env, ...deps } = overrides;
  const app = await buildApp({ config: testConfig(env), jwtSecret: TEST_JWT_SECRET, ...deps, db });
  onFinished(async () => {
    await app.close();
  });
  await app.ready();
  return app;
}
