import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { embeddedClusterDirectory } from '../../src/platform/db/embedded/location.ts';
import { freePort, isPortFree, releasePort, waitFor } from '../helpers/processes.ts';
import {
  embeddedUrlOf,
  httpRequest,
  postgresProcessesOf,
  registration,
  ROOT,
  scratchDirectory,
  sleep,
  uniqueId,
  type HttpResponse,
  type OnFinished,
} from './support.ts';

// Ctrl-C as a terminal sends it: SIGINT to every process of the foreground process group, so
// `npm start`'s node gets it from the terminal and again from npm, which forwards it. `npm start`
// runs detached here (a process group of its own, as a shell's job is) and the group is signalled.

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

interface Job {
  readonly child: ChildProcess;
  readonly pgid: number;
  readonly exited: Promise<number | null>;
  readonly baseUrl: string;
  readonly dataDir: string;
  readonly admin: pg.Client;
  output(): string;
  /**
   * What a terminal does on Ctrl-C: SIGINT to the whole process group. npm forwards its copy to
   * the server at once, so the kernel may merge it with the terminal's; one more, 100 ms later, is
   * npm's copy arriving late (a loaded machine), which must count as the same Ctrl-C too.
   */
  ctrlC(): Promise<void>;
}

/** `npm start` as a terminal's foreground job, ready, with a superuser session on its database. */
async function npmStartJob(onFinished: OnFinished): Promise<Job> {
  const dataDir = await scratchDirectory(onFinished, 'ctrl-c');
  const port = await freePort(3900, 3949);
  const pgPort = await freePort(55900, 55949);
  onFinished(async () => {
    releasePort(port);
    releasePort(pgPort);
  });
  const child = spawn('npm', ['--silent', 'start'], {
    cwd: ROOT,
    detached: true,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
      JWT_SECRET: SECRET,
      SHUTDOWN_GRACE_MS: '20000',
      RATE_LIMIT_REGISTER: '1000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pgid = child.pid ?? 0;
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  onFinished(async () => {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // the group is gone
    }
    await exited;
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    'npm start to be ready',
    async () => {
      if (child.exitCode !== null) throw new Error(`exited early:\n${output}`);
      return (await httpRequest(baseUrl, '/health/ready', { timeoutMs: 2_000 }).catch(() => undefined))?.status === 200
        ? true
        : undefined;
    },
    90_000,
  );
  const admin = new pg.Client({ connectionString: embeddedUrlOf(dataDir, pgPort), application_name: 'ctrl-c-admin' });
  admin.on('error', () => {}); // the server's shutdown stops PostgreSQL under this session
  await admin.connect();
  onFinished(async () => {
    await admin.end().catch(() => {});
  });
  return {
    child,
    pgid,
    exited,
    baseUrl,
    dataDir,
    admin,
    output: () => output,
    ctrlC: async () => {
      const server = Number(/"pid":(\d+)/.exec(output)?.[1]);
      process.kill(-pgid, 'SIGINT');
      await sleep(100);
      try {
        process.kill(server, 'SIGINT');
      } catch {
        // already gone (a forced exit)
      }
    },
  };
}

/** A registration held in flight by a lock on `users` until the returned `commit` runs. */
async function registrationInFlight(
  job: Job,
): Promise<{ answer: Promise<HttpResponse | Error>; commit(): Promise<void> }> {
  await job.admin.query('begin');
  await job.admin.query('lock table users in access exclusive mode');
  const answer = httpRequest(job.baseUrl, '/auth/register', {
    body: registration(`ctrl-c-${uniqueId()}@example.com`),
    timeoutMs: 30_000,
  }).catch((error: unknown) => error as Error);
  await waitFor('the registration to wait on the lock', async () => {
    await job.admin.query('select pg_stat_clear_snapshot()');
    const { rows } = await job.admin.query<{ count: string }>(
      "select count(*) from pg_stat_activity where application_name = 'pg-fastify-backend' and wait_event_type = 'Lock'",
    );
    return Number(rows[0]?.count) === 1 ? true : undefined;
  });
  return {
    answer,
    commit: async () => {
      await job.admin.query('commit');
    },
  };
}

async function expectDatabaseStopped(dataDir: string): Promise<void> {
  await waitFor('PostgreSQL to be gone', async () => postgresProcessesOf(dataDir).length === 0, 30_000);
  const clusterDir = await embeddedClusterDirectory(dataDir);
  expect(existsSync(path.join(clusterDir, 'postmaster.pid')), 'postmaster.pid left behind').toBe(false);
}

describe.runIf(process.platform === 'linux')('Ctrl-C in a terminal (SIGINT to the process group)', () => {
  it(
    'shuts npm start down gracefully: the request in flight completes, the embedded PostgreSQL stops, exit 0',
    { timeout: 180_000 },
    async () => {
      const job = await npmStartJob(onTestFinished);
      const inFlight = await registrationInFlight(job);

      await job.ctrlC();
      // npm's forwarded copy of the same SIGINT has arrived by now: it must not be taken as "force".
      await sleep(1_000);
      expect(job.child.exitCode, job.output()).toBeNull();
      expect(postgresProcessesOf(job.dataDir).length).toBeGreaterThan(0);

      await inFlight.commit();
      const answer = await inFlight.answer;
      expect(answer instanceof Error ? answer.message : answer.status, job.output()).toBe(201);
      expect(await job.exited, job.output()).toBe(0);
      expect(job.output()).toMatch(/"signal":"SIGINT".*"msg":"shutting down"/);
      expect(job.output()).not.toMatch(/exiting now|second SIGINT/);
      await expectDatabaseStopped(job.dataDir);
      expect(await isPortFree(Number(new URL(job.baseUrl).port))).toBe(true);
    },
  );

  it(
    'forces an exit on a second Ctrl-C well after the first, stopping the embedded PostgreSQL, and says so in one line',
    { timeout: 180_000 },
    async () => {
      const job = await npmStartJob(onTestFinished);
      await registrationInFlight(job); // cut off by the forced exit

      await job.ctrlC();
      await sleep(2_500);
      expect(job.child.exitCode, job.output()).toBeNull();
      const forced = performance.now();
      await job.ctrlC();
      expect(await job.exited).not.toBe(0);
      expect(performance.now() - forced).toBeLessThan(15_000);

      const lines = job
        .output()
        .split('\n')
        .filter((line) => line.includes('exiting now'));
      expect(lines, job.output()).toHaveLength(1);
      expect(lines[0]).toMatch(
        /second SIGINT \d+ ms after the first; exiting now: the embedded PostgreSQL was stopped \(fast shutdown/,
      );
      await expectDatabaseStopped(job.dataDir);
    },
  );
});
