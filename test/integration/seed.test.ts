import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { UserRepository } from '../../src/repositories/users.ts';
import { PasswordHasher } from '../../src/services/passwords.ts';
import { SEED_ADMIN, seedDevelopmentData } from '../../src/services/seed.ts';
import { isolatedDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function npmRunSeed(env: Record<string, string>): Promise<{ code: number; output: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && key !== 'TEST'));
  return new Promise((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', 'db:seed'],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1,
          output: stdout + stderr,
        });
      },
    );
  });
}

describe('npm run db:seed', () => {
  test(
    'creates an admin and 36 users, prints the admin’s credentials, and creates nothing the second time',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);

      const first = await npmRunSeed({ DATABASE_URL: url });

      expect(first.code, first.output).toBe(0);
      expect(first.output).toContain(`admin: ${SEED_ADMIN.email} / ${SEED_ADMIN.password}`);
      expect(first.output).toContain('37 of 37 accounts created');
      const admin = await new UserRepository(db).findByEmail(SEED_ADMIN.email);
      expect(admin?.role).toBe('admin');
      expect(await new UserRepository(db).list(100)).toHaveLength(37);

      const again = await seedDevelopmentData(
        { db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) },
        { users: 36 },
      );
      expect(again).toEqual({ created: 0, total: 37 });
      expect(await new UserRepository(db).list(100)).toHaveLength(37);
    },
  );

  test(
    'refuses with NODE_ENV=production, with a non-zero exit code, touching nothing',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);

      const outcome = await npmRunSeed({
        DATABASE_URL: url,
        NODE_ENV: 'production',
        JWT_SECRET: 'x'.repeat(40),
      });

      expect(outcome.code).toBe(2);
      expect(outcome.output).toContain('db:seed refused: NODE_ENV=production');
      expect(await new UserRepository(db).list(10)).toEqual([]);
    },
  );

  test(
    'is announced by npm start on an empty development database, and not once it has users',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { url, db } = await isolatedDatabase(onTestFinished);
      const env = { DATABASE_URL: url, NODE_ENV: 'development', JWT_SECRET: 'x'.repeat(40), LOG_LEVEL: 'warn' };

      const empty = await startServerProcess({ env, port: [3400, 3499] });
      await empty.stop();
      expect(empty.output()).toContain('`npm run db:seed` adds an admin and 36 users');

      await seedDevelopmentData({ db, hasher: new PasswordHasher({ concurrency: 1, queueLimit: 0 }) }, { users: 1 });
      const seeded = await startServerProcess({ env, port: [3400, 3499] });
      await seeded.stop();
      expect(seeded.output()).not.toContain('db:seed');
    },
  );
});
