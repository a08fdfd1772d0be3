import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, test } from 'vitest';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { TEST_ENCRYPTION_KEY } from '../helpers/app.ts';
import { adminQuery, isolatedDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function npmRun(script: string, env: Record<string, string>, args: string[] = []) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
      },
    );
  });
}

describe('npm run keys:list / keys:rotate', { timeout: 90_000 }, () => {
  test('a rotation from the shell is listed as next, signing 330 s later, while the running server keeps its active key published', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const env = { DATABASE_URL: url, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, LOG_LEVEL: 'silent' };
    const server = await startServerProcess({ env: { ...env, MAINTENANCE_INTERVAL_SECONDS: '0' }, port: [3500, 3599] });
    onTestFinished(() => server.stop());

    const before = await npmRun('keys:list', env, ['--json']);
    expect(before.code, before.stderr).toBe(0);
    const [active] = (JSON.parse(before.stdout) as { keys: { kid: string; state: string }[] }).keys;
    expect(active?.state).toBe('active');

    const rotated = await npmRun('keys:rotate', env);
    expect(rotated.code, rotated.stderr).toBe(0);
    const kid = /Published key (\S+) \(EdDSA\)/.exec(rotated.stdout)?.[1];
    expect(kid, rotated.stdout).toBeDefined();
    expect(rotated.stdout).toMatch(/it signs from \d{4}-\d\d-\d\dT/);

    const listed = await npmRun('keys:list', env);
    expect(listed.stdout).toMatch(new RegExp(`^${active?.kid ?? ''}\\s+EdDSA\\s+active`, 'm'));
    expect(listed.stdout).toMatch(new RegExp(`^${kid ?? ''}\\s+EdDSA\\s+next`, 'm'));
    // JWKS_MAX_AGE_SECONDS (300) plus the 30 s within which every instance reloads the keys.
    const rows = await db.selectFrom('signing_keys').select(['kid', 'signs_from', 'created_at']).execute();
    const next = rows.find((row) => row.kid === kid);
    expect((next?.signs_from.getTime() ?? 0) - (next?.created_at.getTime() ?? 0)).toBe(330_000);
    const jwks = (await (await fetch(`${server.baseUrl}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((key) => key.kid)).toContain(active?.kid);
  });

  test('says what to do, in one line, when the database is not migrated, and refuses rotate with HS256', async ({
    onTestFinished,
  }) => {
    const { url } = await isolatedDatabase(onTestFinished);
    const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_unmigrated_${randomBytes(4).toString('hex')}`;
    await adminQuery(`create database ${name}`);
    onTestFinished(() => adminQuery(`drop database if exists ${name} with (force)`));
    const empty = withDatabaseName(inject('adminUrl'), name);
    const hs256 = await npmRun('keys:rotate', { DATABASE_URL: url, JWT_ALGORITHM: 'HS256' });
    expect(hs256.code).toBe(2);
    expect(hs256.stderr).toMatch(/^keys:rotate: JWT_ALGORITHM=HS256 signs with JWT_SECRET/);

    const missing = await npmRun('keys:list', { DATABASE_URL: empty, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY });
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(
      'keys:list failed: the database is not migrated yet: run npm run migrate first.',
    );
  });
});
