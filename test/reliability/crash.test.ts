import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { embeddedClusterDirectory } from '../../src/platform/db/embedded/location.ts';
import { hashRefreshToken } from '../../src/keys/tokens.ts';
import { testConfig } from '../helpers/app.ts';
import {
  embeddedUrlOf,
  httpRequest,
  NoResponseError,
  PASSWORD,
  postgresProcessesOf,
  processExists,
  registration,
  scratchDirectory,
  startServer,
  uniqueId,
  type OnFinished,
  type ServerOptions,
} from './support.ts';
import { freePort, releasePort, waitFor } from '../helpers/processes.ts';

// kill -9 of the real server (`node src/server.ts`) in the middle of a storm of registrations and
// refresh-token rotations, then a restart on the same DATA_DIR. A client only relies on what it
// was told: every 201 and every 200 must survive, and no rotation may be left half-done.

const HTTP_PORTS = [3330, 3339] as const;
const PG_PORTS = [54378, 54381] as const;

/** The server's REFRESH_REUSE_INTERVAL_SECONDS (the default), in ms. */
const REUSE_INTERVAL_MS = testConfig().auth.refreshReuseIntervalSeconds * 1000;

const STORM_ENV = {
  RATE_LIMIT_REGISTER: '100000',
  RATE_LIMIT_REFRESH: '100000',
  RATE_LIMIT_LOGIN: '100000',
};

async function serverOptions(onFinished: OnFinished, name: string): Promise<ServerOptions> {
  const dataDir = await scratchDirectory(onFinished, name);
  const port = await freePort(...HTTP_PORTS);
  const pgPort = await freePort(...PG_PORTS);
  onFinished(async () => {
    releasePort(port);
    releasePort(pgPort);
  });
  return { dataDir, port, pgPort, env: STORM_ENV };
}

/**
 * A live process whose name (`/proc/<pid>/comm`) is `postgres` but which is no PostgreSQL server:
 * `sleep`, copied under that name. Killed when the test ends.
 */
async function processNamedPostgres(onFinished: OnFinished): Promise<number> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'impostor-'));
  const binary = path.join(dir, 'postgres');
  await fs.copyFile('/bin/sleep', binary);
  await fs.chmod(binary, 0o755);
  const child = spawn(binary, ['60'], { stdio: 'ignore' });
  onFinished(async () => {
    child.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });
  if (child.pid === undefined) throw new Error('could not start the impostor process');
  const pid = child.pid;
  await waitFor('the impostor to run', async () =>
    (await fs.readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'postgres' ? true : undefined,
  );
  return pid;
}

/** One login's chain of refresh tokens, as the client knows it. */
interface Family {
  /** The last refresh token the server acknowledged (or the login's). */
  current: string;
  /** Every token the server handed out in this family. */
  readonly acknowledged: string[];
}

interface Storm {
  readonly registered: string[];
  readonly families: Family[];
  readonly rotations: () => number;
}

/**
 * Logs `sessions` users in, then runs two kinds of clients until `stop()`: registration clients
 * (one new account after another) and one refresh client per session (rotating its token again and
 * again). A request without an answer ends its client: the server is gone.
 */
async function startStorm(baseUrl: string, sessions: number): Promise<Storm & { stop: () => Promise<void> }> {
  const run = uniqueId();
  const families: Family[] = [];
  for (let i = 0; i < sessions; i++) {
    const email = `session-${run}-${i}@example.com`;
    expect((await httpRequest(baseUrl, '/auth/register', { body: registration(email) })).status).toBe(201);
    const login = await httpRequest(baseUrl, '/auth/login', { body: { email, password: PASSWORD } });
    expect(login.status).toBe(200);
    const { refreshToken } = login.json<{ refreshToken: string }>();
    families.push({ current: refreshToken, acknowledged: [refreshToken] });
  }

  const registered: string[] = [];
  let rotations = 0;
  let stopped = false;
  const registrar = async (worker: number) => {
    for (let i = 0; !stopped && i < 500; i++) {
      const email = `storm-${run}-${worker}-${i}@example.com`;
      let status: number;
      try {
        status = (await httpRequest(baseUrl, '/auth/register', { body: registration(email), timeoutMs: 10_000 }))
          .status;
      } catch (error) {
        if (error instanceof NoResponseError) return;
        throw error;
      }
      expect(status).toBe(201);
      registered.push(email);
    }
  };
  const refresher = async (family: Family) => {
    for (let i = 0; !stopped && i < 2_000; i++) {
      let response;
      try {
        response = await httpRequest(baseUrl, '/auth/refresh', {
          body: { refreshToken: family.current },
          timeoutMs: 10_000,
        });
      } catch (error) {
        if (error instanceof NoResponseError) return;
        throw error;
      }
      expect(response.status, response.text).toBe(200);
      family.current = response.json<{ refreshToken: string }>().refreshToken;
      family.acknowledged.push(family.current);
      rotations++;
    }
  };
  const clients = Promise.all([...[0, 1, 2].map(registrar), ...families.map(refresher)]);
  return {
    registered,
    families,
    rotations: () => rotations,
    stop: async () => {
      stopped = true;
      await clients;
    },
  };
}

interface TokenRow {
  readonly family_id: string;
  readonly token_hash: string;
  readonly rotated_at: Date | null;
  readonly revoked_at: Date | null;
}

/**
 * Checks what the database holds against what the client was told: every acknowledged account
 * and token is stored, and every family has at most one live token (none rotated halfway).
 */
async function expectNothingLost(url: string, storm: Storm): Promise<Map<string, TokenRow[]>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const users = await client.query<{ email: string }>('select email from users where email = any($1)', [
      storm.registered,
    ]);
    expect(users.rows.map((row) => row.email).sort()).toEqual([...storm.registered].sort());

    const hashes = storm.families.flatMap((family) => family.acknowledged.map(hashRefreshToken));
    const tokens = await client.query<TokenRow>(
      `select family_id, token_hash, rotated_at, revoked_at from refresh_tokens
        where family_id in (select family_id from refresh_tokens where token_hash = any($1))`,
      [hashes],
    );
    const stored = new Set(tokens.rows.map((row) => row.token_hash));
    expect(
      hashes.filter((hash) => !stored.has(hash)),
      'acknowledged refresh tokens missing',
    ).toEqual([]);

    const byFamily = new Map<string, TokenRow[]>();
    for (const row of tokens.rows) byFamily.set(row.family_id, [...(byFamily.get(row.family_id) ?? []), row]);
    expect(byFamily.size).toBe(storm.families.length);
    for (const [familyId, rows] of byFamily) {
      const live = rows.filter((row) => row.rotated_at === null && row.revoked_at === null);
      const revoked = rows.some((row) => row.revoked_at !== null);
      // Not revoked: every token but the newest was rotated into a stored successor.
      expect(live.length, `live tokens of family ${familyId}`).toBe(revoked ? 0 : 1);
    }
    return byFamily;
  } finally {
    await client.end();
  }
}

/**
 * Presents each family's last acknowledged token once more. Either it is still live (its rotation
 * in flight at the crash never committed), or that rotation committed unseen: within the reuse
 * interval the client then gets the successor it never saw (the lost response of a crash is what
 * the interval is for); later, presenting the token is a reuse that revokes the whole family.
 * Each leaves no two live tokens.
 */
async function expectFamiliesUsableOrRevoked(baseUrl: string, url: string, storm: Storm): Promise<void> {
  const before = await expectNothingLost(url, storm);
  for (const family of storm.families) {
    const hash = hashRefreshToken(family.current);
    const rows = [...before.values()].find((tokens) => tokens.some((token) => token.token_hash === hash)) ?? [];
    const row = rows.find((token) => token.token_hash === hash);
    const sinceRotation = row?.rotated_at == null ? undefined : Date.now() - row.rotated_at.getTime();
    const response = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken: family.current } });
    if (row?.rotated_at === null && row.revoked_at === null) {
      expect(response.status, response.text).toBe(200);
      family.current = response.json<{ refreshToken: string }>().refreshToken;
      family.acknowledged.push(family.current);
    } else if (row?.revoked_at === null && sinceRotation !== undefined && sinceRotation < REUSE_INTERVAL_MS - 1000) {
      expect(response.status, response.text).toBe(200);
      // The successor the crash kept from the client: the family's one live token, not a new one.
      const successor = response.json<{ refreshToken: string }>().refreshToken;
      const live = rows.filter((token) => token.rotated_at === null && token.revoked_at === null);
      expect(live.map((token) => token.token_hash)).toEqual([hashRefreshToken(successor)]);
      family.current = successor;
      family.acknowledged.push(successor);
    } else if (row?.revoked_at === null && sinceRotation !== undefined && sinceRotation < REUSE_INTERVAL_MS + 1000) {
      // At the edge of the interval: either answer is right.
      expect([200, 401], response.text).toContain(response.status);
      if (response.status === 200) {
        family.current = response.json<{ refreshToken: string }>().refreshToken;
        family.acknowledged.push(family.current);
      }
    } else {
      expect(response.status, response.text).toBe(401);
    }
  }
  await expectNothingLost(url, storm);
}

describe('crash safety', () => {
  test(
    'after kill -9 of the server mid-storm and a restart, every acknowledged registration and rotation is there and no family has two live tokens',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const options = await serverOptions(onTestFinished, 'crash');
      const server = await startServer(onTestFinished, options);
      const storm = await startStorm(server.baseUrl, 8);
      await waitFor(
        'the storm to be acknowledged',
        () => (storm.rotations() >= 40 && storm.registered.length >= 6 ? true : undefined),
        30_000,
      );

      server.child.kill('SIGKILL');
      expect(await server.exited).toEqual({ code: null, signal: 'SIGKILL' });
      await storm.stop();

      const restarted = await startServer(onTestFinished, options);
      await expectFamiliesUsableOrRevoked(restarted.baseUrl, embeddedUrlOf(options.dataDir, options.pgPort), storm);
      const sample = storm.registered.slice(-2);
      for (const email of sample) {
        const login = await httpRequest(restarted.baseUrl, '/auth/login', { body: { email, password: PASSWORD } });
        expect(login.status, login.text).toBe(200);
      }
    },
  );

  test(
    'after kill -9 of the server and of its PostgreSQL mid-storm, a restart recovers the database with every acknowledged write',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const options = await serverOptions(onTestFinished, 'power-cut');
      const server = await startServer(onTestFinished, options);
      const storm = await startStorm(server.baseUrl, 8);
      await waitFor(
        'the storm to be acknowledged',
        () => (storm.rotations() >= 40 && storm.registered.length >= 6 ? true : undefined),
        30_000,
      );

      // Everything at once, as a power cut would: the server and every PostgreSQL process.
      const postgres = postgresProcessesOf(options.dataDir);
      expect(postgres.length).toBeGreaterThan(0);
      server.child.kill('SIGKILL');
      for (const pid of postgres) process.kill(pid, 'SIGKILL');
      await server.exited;
      await storm.stop();
      // Gone for good: not even a zombie waiting to be reaped (that case has a test of its own below).
      await waitFor(
        'the killed processes to be reaped',
        () => (postgres.some(processExists) ? undefined : true),
        10_000,
      );

      // The lock file of the killed PostgreSQL is still there; the restart must cope with it and recover from the WAL.
      const restarted = await startServer(onTestFinished, options);
      await expectFamiliesUsableOrRevoked(restarted.baseUrl, embeddedUrlOf(options.dataDir, options.pgPort), storm);
    },
  );

  test(
    'restarts after a crash even when the stale lock file names a process id now used by another postgres process',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const options = await serverOptions(onTestFinished, 'reused-pid');
      const first = await startServer(onTestFinished, options);
      const postgres = postgresProcessesOf(options.dataDir);
      first.child.kill('SIGKILL');
      for (const pid of postgres) process.kill(pid, 'SIGKILL');
      await first.exited;
      await waitFor(
        'the killed processes to be reaped',
        () => (postgres.some(processExists) ? undefined : true),
        10_000,
      );

      // After a reboot or in a busy container the dead postmaster's pid soon belongs to someone
      // else, often another PostgreSQL (or, for a few seconds, its own unreaped zombie).
      const impostor = await processNamedPostgres(onTestFinished);
      // Inside DATA_DIR, or outside it when the postgres user cannot reach the checkout (root, 0700).
      const lockFile = path.join(await embeddedClusterDirectory(options.dataDir), 'postmaster.pid');
      const lines = (await fs.readFile(lockFile, 'utf8')).split('\n');
      lines[0] = String(impostor);
      await fs.writeFile(lockFile, lines.join('\n'));

      const second = await startServer(onTestFinished, options);
      expect(
        (
          await httpRequest(second.baseUrl, '/auth/register', {
            body: registration(`reused-${uniqueId()}@example.com`),
          })
        ).status,
      ).toBe(201);
    },
  );

  test(
    'a server restarted after kill -9 stops, on SIGTERM, the PostgreSQL its killed predecessor left running',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const options = await serverOptions(onTestFinished, 'orphan');
      const first = await startServer(onTestFinished, options);
      first.child.kill('SIGKILL');
      await first.exited;
      // The killed server's PostgreSQL runs on, orphaned.
      expect(postgresProcessesOf(options.dataDir).length).toBeGreaterThan(0);

      const second = await startServer(onTestFinished, options);
      expect(
        (
          await httpRequest(second.baseUrl, '/auth/register', {
            body: registration(`orphan-${uniqueId()}@example.com`),
          })
        ).status,
      ).toBe(201);
      second.child.kill('SIGTERM');
      const { code } = await second.exited;
      expect(code, second.output()).toBe(0);
      expect(postgresProcessesOf(options.dataDir), 'PostgreSQL processes still running for this DATA_DIR').toEqual([]);
    },
  );
});
