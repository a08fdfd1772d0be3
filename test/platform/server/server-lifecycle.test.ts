import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, inject, onTestFinished, test } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { openServer, StartupRefusedError } from '../../../src/lifecycle.ts';
import { adminQuery, isolatedDatabase } from '../../helpers/database.ts';
import { freePort } from '../../helpers/processes.ts';

// What `npm start` (src/lifecycle.ts's openServer) does on a database given by DATABASE_URL, in
// this process: the generated JWT secret that keeps development tokens valid across restarts,
// the refusal of a schema that is behind (and migrating instead with MIGRATE_ON_START), and the
// hint about seeding an empty development database. (test/platform/server/startup-teardown.test.ts
// proves that a failure at any step closes what was opened.)

async function dataDir(): Promise<string> {
  const dir = path.resolve('.data', `lifecycle-${randomBytes(4).toString('hex')}`);
  onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An empty database (no migrations applied), dropped after the test. */
async function emptyDatabase(): Promise<string> {
  const name = `test_w${process.env.VITEST_POOL_ID ?? '0'}_empty_${randomBytes(4).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  onTestFinished(() => adminQuery(`drop database if exists ${name} with (force)`));
  return withDatabaseName(inject('adminUrl'), name);
}

async function open(env: Record<string, string>, said: string[] = []) {
  const server = await openServer(
    loadConfig({
      NODE_ENV: 'development',
      LOG_LEVEL: 'silent',
      HOST: '127.0.0.1',
      PORT: String(await freePort()),
      MAINTENANCE_INTERVAL_SECONDS: '0',
      ...env,
    }),
    { say: (message) => said.push(message) },
  );
  onTestFinished(() => server.close());
  return server;
}

const me = (server: Awaited<ReturnType<typeof open>>, token: string) =>
  server.app.inject({ url: '/auth/me', headers: { authorization: `Bearer ${token}` } });

async function registered(server: Awaited<ReturnType<typeof open>>): Promise<string> {
  const credentials = { email: `ada-${randomBytes(4).toString('hex')}@example.com`, password: 'a long passphrase' };
  const response = await server.app.inject({
    method: 'POST',
    url: '/auth/register',
    payload: { ...credentials, name: 'Ada' },
  });
  expect(response.statusCode, response.body).toBe(201);
  const login = await server.app.inject({ method: 'POST', url: '/auth/login', payload: credentials });
  expect(login.statusCode, login.body).toBe(200);
  const token = login.json<{ accessToken: string }>().accessToken;
  expect((await me(server, token)).statusCode).toBe(200);
  return token;
}

describe('openServer', { timeout: 60_000 }, () => {
  test('without ENCRYPTION_KEY outside production: generates one under DATA_DIR (0600) and creates the first signing key, so EdDSA tokens survive a restart', async () => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const dir = await dataDir();
    const env = { DATABASE_URL: url, DATA_DIR: dir, HASH_THREAD_NICE: '0' };
    const first = await open(env);
    expect(await db.selectFrom('signing_keys').select('kid').execute()).toHaveLength(1);
    const token = await registered(first);
    expect(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString())).toMatchObject({ alg: 'EdDSA' });
    const file = path.join(dir, 'encryption-key');
    const key = await fs.readFile(file, 'utf8');
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    await first.close();

    const second = await open(env);
    expect((await me(second, token)).statusCode).toBe(200);
    // The key signs again after the restart: its private half opened with the same encryption key.
    expect((await registered(second)).split('.')[0]).toBe(token.split('.')[0]);
    expect(await fs.readFile(file, 'utf8')).toBe(key);
  });

  test('with an ENCRYPTION_KEY that does not open the signing keys: development signs with a new key and says so; production refuses to start', async () => {
    const { url } = await isolatedDatabase(onTestFinished);
    const env = { DATABASE_URL: url, HASH_THREAD_NICE: '0' };
    const first = await open({ ...env, DATA_DIR: await dataDir() });
    const token = await registered(first);
    await first.close();

    const said: string[] = [];
    const second = await open({ ...env, DATA_DIR: await dataDir() }, said);
    expect(said).toContain(
      'the encryption key under DATA_DIR does not open the signing keys in the database: a new key signs from now',
    );
    // Issued tokens stay valid: the old key is still published until they expire.
    expect((await me(second, token)).statusCode).toBe(200);
    expect((await registered(second)).split('.')[0]).not.toBe(token.split('.')[0]);
    await second.close();

    const production = {
      ...env,
      NODE_ENV: 'production',
      ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64'),
      METRICS_TOKEN: 'a-metrics-token',
      EMAIL_TRANSPORT: 'log',
      APP_URL: 'https://app.example.com',
      WEBAUTHN_RP_ID: 'app.example.com',
      WEBAUTHN_ORIGINS: 'https://app.example.com',
      DATA_DIR: await dataDir(),
    };
    await expect(open(production)).rejects.toThrow(
      /^Refusing to start: ENCRYPTION_KEY does not open the active signing key .*npm run keys:rotate -- --now/,
    );
  });

  test('without JWT_SECRET outside production: generates one under DATA_DIR (0600), so tokens survive a restart', async () => {
    const { url } = await isolatedDatabase(onTestFinished);
    const dir = await dataDir();
    const env = { DATABASE_URL: url, DATA_DIR: dir, HASH_THREAD_NICE: '0', JWT_ALGORITHM: 'HS256' };
    const first = await open(env);
    const token = await registered(first);
    const file = path.join(dir, 'jwt-secret');
    const secret = await fs.readFile(file, 'utf8');
    expect(Buffer.byteLength(secret)).toBeGreaterThanOrEqual(32);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    await first.close();

    const second = await open(env);
    const again = await me(second, token);
    expect(again.statusCode, again.body).toBe(200);
    expect(await fs.readFile(file, 'utf8')).toBe(secret);
    await second.close();

    // A file too short to be a secret (truncated, hand-edited) is replaced: old tokens stop working.
    await fs.writeFile(file, 'short');
    const third = await open(env);
    expect((await me(third, token)).statusCode).toBe(401);
    expect(Buffer.byteLength(await fs.readFile(file, 'utf8'))).toBeGreaterThanOrEqual(32);
  });

  test('refuses a database with pending migrations, naming them and how to apply them', async () => {
    const url = await emptyDatabase();
    const dir = await dataDir();
    const opening = open({ DATABASE_URL: url, DATA_DIR: dir, MIGRATE_ON_START: 'false' });
    await expect(opening).rejects.toBeInstanceOf(StartupRefusedError);
    await expect(opening).rejects.toThrow(
      /^Refusing to start: \d+ pending migration\(s\) \(\d{14}_.*\)\. Run `npm run migrate`, or set MIGRATE_ON_START=true\.$/,
    );
  });

  test('MIGRATE_ON_START=true migrates first, says what it applied, and hints at db:seed on a database without users', async () => {
    const url = await emptyDatabase();
    const dir = await dataDir();
    const said: string[] = [];
    const server = await open({ DATABASE_URL: url, DATA_DIR: dir, MIGRATE_ON_START: 'true' }, said);
    expect(said[0]).toMatch(/^applied migrations: \d{14}_/);
    expect(said).toContain(
      'the database has no users yet: `npm run db:seed` adds an admin and 36 users (and prints how to log in)',
    );
    expect((await server.app.inject({ url: '/health/ready' })).statusCode).toBe(200);
    await server.close();
    // Nothing left to apply the second time, and with a user there is no hint.
    const again: string[] = [];
    const reopened = await open({ DATABASE_URL: url, DATA_DIR: dir, MIGRATE_ON_START: 'true' }, again);
    await registered(reopened);
    await reopened.close();
    const third: string[] = [];
    await open({ DATABASE_URL: url, DATA_DIR: dir, MIGRATE_ON_START: 'true' }, third);
    expect(again.filter((line) => line.startsWith('applied migrations'))).toEqual([]);
    expect(third).toEqual([]);
  });
});
