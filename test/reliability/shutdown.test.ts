import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { startEmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import {
  embeddedUrlOf,
  hasLockFile,
  httpRequest,
  NoResponseError,
  postgresProcessesOf,
  registration,
  scratchDirectory,
  sleep,
  startServer,
  uniqueId,
  type OnFinished,
  type ServerProcess,
} from './support.ts';
import { expectError } from '../helpers/assertions.ts';
import { freePort, releasePort, waitFor } from '../helpers/processes.ts';

// The real server (`node src/server.ts`) as a child process, on an embedded PostgreSQL under a
// DATA_DIR of the test's own, stopped with SIGTERM while requests are in flight.

const HTTP_PORTS = [3320, 3329] as const;
const PG_PORTS = [54374, 54377] as const;
/** The server's default application_name: its pooled connections in pg_stat_activity. */
const APPLICATION_NAME = 'pg-fastify-backend';

interface Setup {
  readonly server: ServerProcess;
  readonly dataDir: string;
  readonly pgPort: number;
  /** A superuser session on the server's database, beside its pool. */
  readonly admin: pg.Client;
}

async function serverWithAdmin(onFinished: OnFinished, env: Record<string, string>): Promise<Setup> {
  const dataDir = await scratchDirectory(onFinished, 'shutdown');
  const port = await freePort(...HTTP_PORTS);
  const pgPort = await freePort(...PG_PORTS);
  onFinished(async () => {
    releasePort(port);
    releasePort(pgPort);
  });
  const server = await startServer(onFinished, {
    dataDir,
    port,
    pgPort,
    env: { RATE_LIMIT_REGISTER: '100000', ...env },
  });
  const admin = new pg.Client({
    connectionString: embeddedUrlOf(dataDir, pgPort),
    application_name: 'reliability-admin',
  });
  // The server's shutdown stops PostgreSQL under this session: that is expected, not a failure.
  admin.on('error', () => {});
  await admin.connect();
  onFinished(async () => {
    await admin.end().catch(() => {});
  });
  return { server, dataDir, pgPort, admin };
}

/** Holds every write to `users` until the returned function commits: requests stay in flight. */
async function lockUsers(admin: pg.Client): Promise<() => Promise<void>> {
  await admin.query('begin');
  await admin.query('lock table users in access exclusive mode');
  return async () => {
    await admin.query('commit');
  };
}

async function waitingOnLocks(admin: pg.Client): Promise<number> {
  await admin.query('select pg_stat_clear_snapshot()');
  const { rows } = await admin.query<{ count: string }>(
    "select count(*) from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'",
    [APPLICATION_NAME],
  );
  return Number(rows[0]?.count);
}

/** Probes with new connections until one is refused; answers before that must be 200 or a clean 503. */
async function waitUntilRefused(baseUrl: string): Promise<void> {
  await waitFor(
    'new connections to be refused',
    async () => {
      try {
        const response = await httpRequest(baseUrl, '/health/live', { timeoutMs: 2_000 });
        if (response.status !== 200) expectError(response, { statusCode: 503 });
        return undefined;
      } catch (error) {
        if (error instanceof NoResponseError && error.code === 'ECONNREFUSED') return true;
        throw error;
      }
    },
    5_000,
    10,
  );
}

describe.runIf(process.platform === 'linux')('the server process', () => {
  test(
    'runs its hashing threads below the event loop with HASH_THREAD_NICE=10',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const { server } = await serverWithAdmin(onTestFinished, { HASH_THREAD_NICE: '10' });
      const pid = server.child.pid ?? 0;
      const threads = readdirSync(`/proc/${pid}/task`).map((threadId) => ({
        name: readFileSync(`/proc/${pid}/task/${threadId}/comm`, 'utf8').trim(),
        nice: os.getPriority(Number(threadId)),
      }));
      const workers = threads.filter((thread) => thread.name === 'libuv-worker');
      expect(workers.length).toBeGreaterThan(0);
      expect(workers.map((thread) => thread.nice)).toEqual(workers.map(() => 10));
      expect(os.getPriority(pid)).toBe(0);
      expect(server.output()).toContain('worker threads (password hashing) run below the event loop');
    },
  );
});

describe('graceful shutdown under load', () => {
  test(
    'on SIGTERM finishes the requests in flight, refuses new connections, exits 0 within the grace period and stops its PostgreSQL',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const graceMs = 10_000;
      const { server, dataDir, pgPort, admin } = await serverWithAdmin(onTestFinished, {
        SHUTDOWN_GRACE_MS: String(graceMs),
      });
      expect(postgresProcessesOf(dataDir).length).toBeGreaterThan(0);
      const run = uniqueId();
      const emails = Array.from({ length: 5 }, (_, i) => `shutdown-${run}-${i}@example.com`);

      const commit = await lockUsers(admin);
      const inFlight = emails.map((email) =>
        httpRequest(server.baseUrl, '/auth/register', { body: registration(email), timeoutMs: 20_000 }),
      );
      await waitFor('five registrations in flight', async () =>
        (await waitingOnLocks(admin)) === 5 ? true : undefined,
      );

      const signalled = performance.now();
      server.child.kill('SIGTERM');
      await waitUntilRefused(server.baseUrl);
      // Still in flight while the server is closing; then the lock goes and they complete.
      await sleep(300);
      await commit();
      const answers = await Promise.all(inFlight);
      expect(answers.map((response) => response.status)).toEqual([201, 201, 201, 201, 201]);

      const { code } = await server.exited;
      expect(code, server.output()).toBe(0);
      expect(performance.now() - signalled).toBeLessThan(graceMs);
      expect(postgresProcessesOf(dataDir)).toEqual([]);
      expect(hasLockFile(dataDir)).toBe(false);

      // What was acknowledged is there when the database starts again.
      const database = await startEmbeddedPostgres({ dataDir, port: pgPort });
      onTestFinished(async () => {
        await database.stop();
      });
      const check = new pg.Client({ connectionString: embeddedUrlOf(dataDir, pgPort) });
      await check.connect();
      try {
        const { rows } = await check.query<{ count: string }>('select count(*) from users where email = any($1)', [
          emails,
        ]);
        expect(Number(rows[0]?.count)).toBe(5);
      } finally {
        await check.end();
      }
    },
  );

  test(
    'when a request outlives the grace period, still exits within it and leaves no PostgreSQL running',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const graceMs = 2_000;
      const { server, dataDir, admin } = await serverWithAdmin(onTestFinished, { SHUTDOWN_GRACE_MS: String(graceMs) });

      await lockUsers(admin);
      const stuck = httpRequest(server.baseUrl, '/auth/register', {
        body: registration(`stuck-${uniqueId()}@example.com`),
        timeoutMs: 20_000,
      }).then(
        (response) => response.status,
        (error: unknown) => (error as NoResponseError).code,
      );
      await waitFor('the registration to be in flight', async () =>
        (await waitingOnLocks(admin)) === 1 ? true : undefined,
      );

      const signalled = performance.now();
      server.child.kill('SIGTERM');
      const { code } = await server.exited;
      const elapsed = performance.now() - signalled;
      expect(elapsed).toBeLessThan(graceMs + 1_500);
      // Not a clean exit: a request was cut off.
      expect(code, server.output()).not.toBe(0);
      // The request got an answer or its connection closed: it does not hang.
      expect(await stuck).not.toBe('ETIMEDOUT');

      // One line says the exit was forced and what became of the database.
      expect(server.output().match(/exiting now: the embedded PostgreSQL was stopped/g), server.output()).toHaveLength(
        1,
      );
      expect(server.output()).toMatch(/requests still running after the grace period; exiting now/);

      // The embedded PostgreSQL must not outlive the server that started it.
      await sleep(1_000);
      expect(postgresProcessesOf(dataDir), 'PostgreSQL processes still running for this DATA_DIR').toEqual([]);
    },
  );
});
