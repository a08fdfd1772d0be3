import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { startEmbeddedPostgres } from '../../../src/platform/db/embedded.ts';
import { openServer, STARTUP_STEPS, type StartupStep } from '../../../src/lifecycle.ts';
import { TEST_JWT_SECRET } from '../../helpers/app.ts';
import { isolatedDatabase } from '../../helpers/database.ts';
import { removeDataDir } from '../../helpers/data-dirs.ts';
import { freePort, isPortFree } from '../../helpers/processes.ts';
import { hasLockFile, postgresProcessesOf } from '../../reliability/support.ts';

// src/lifecycle.ts puts everything start-up opens on one disposal stack. A failure injected
// after each step must leave nothing behind: no PostgreSQL process, no listening port, no
// connection from the pool or the change feed.

const dataDir = path.resolve('.data', `startup-${randomBytes(4).toString('hex')}`);

class InjectedFailure extends Error {}

function failAt(target: StartupStep) {
  return (step: StartupStep) => {
    if (step === target) throw new InjectedFailure(`injected after ${step}`);
  };
}

async function connectionsNamed(adminUrl: string, applicationName: string): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ count: number }>(
      'select count(*)::int as count from pg_stat_activity where application_name like $1',
      [`${applicationName}%`],
    );
    return rows[0]?.count ?? -1;
  } finally {
    await client.end();
  }
}

describe('start-up and teardown', { timeout: 180_000 }, () => {
  let pgPort: number;

  beforeAll(async () => {
    pgPort = await freePort(55700, 55799);
    // Initialised once: every case below starts (and must stop) this cluster.
    await (await startEmbeddedPostgres({ dataDir, port: pgPort })).stop();
  });

  afterAll(async () => {
    await removeDataDir(dataDir);
  });

  it.each(STARTUP_STEPS.map((step) => [step]))(
    'with the embedded database, a failure after %s leaves no PostgreSQL process and no open port',
    async (step) => {
      const port = await freePort(3700, 3799);
      const config = loadConfig({
        NODE_ENV: 'test',
        JWT_SECRET: TEST_JWT_SECRET,
        DATA_DIR: dataDir,
        EMBEDDED_PG_PORT: String(pgPort),
        HOST: '127.0.0.1',
        PORT: String(port),
      });
      await expect(openServer(config, { say: () => {}, afterStep: failAt(step) })).rejects.toThrow(InjectedFailure);
      expect(postgresProcessesOf(dataDir)).toEqual([]);
      expect(hasLockFile(dataDir)).toBe(false);
      expect(readdirSync(path.join(dataDir, 'postgres.users'))).toEqual([]);
      expect(await isPortFree(port)).toBe(true);
    },
  );

  it.each(STARTUP_STEPS.map((step) => [step]))(
    'with DATABASE_URL, a failure after %s leaves no connection from the pool or the change feed',
    async (step) => {
      const { url } = await isolatedDatabase(onTestFinished);
      const applicationName = `startup-${randomBytes(4).toString('hex')}`;
      const port = await freePort(3700, 3799);
      const config = loadConfig({
        NODE_ENV: 'test',
        JWT_SECRET: TEST_JWT_SECRET,
        DATABASE_URL: url,
        DB_APPLICATION_NAME: applicationName,
        HOST: '127.0.0.1',
        PORT: String(port),
      });
      await expect(openServer(config, { say: () => {}, afterStep: failAt(step) })).rejects.toThrow(InjectedFailure);
      expect(await connectionsNamed(url, applicationName)).toBe(0);
      expect(await isPortFree(port)).toBe(true);
    },
  );

  it('closes everything, in reverse order, on shutdown after a full start', async () => {
    const port = await freePort(3700, 3799);
    const config = loadConfig({
      NODE_ENV: 'test',
      JWT_SECRET: TEST_JWT_SECRET,
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
      HOST: '127.0.0.1',
      PORT: String(port),
    });
    const server = await openServer(config, { say: () => {} });
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`);
    expect(response.status).toBe(200);
    expect(postgresProcessesOf(dataDir).length).toBeGreaterThan(0);
    await server.close();
    await server.close(); // idempotent
    expect(postgresProcessesOf(dataDir)).toEqual([]);
    expect(await isPortFree(port)).toBe(true);
  });

  it('stops at the next step and closes what was opened when start-up is aborted (a signal)', async () => {
    const port = await freePort(3700, 3799);
    const config = loadConfig({
      NODE_ENV: 'test',
      JWT_SECRET: TEST_JWT_SECRET,
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
      HOST: '127.0.0.1',
      PORT: String(port),
    });
    const controller = new AbortController();
    const opening = openServer(config, {
      say: () => {},
      signal: controller.signal,
      afterStep: (step) => {
        if (step === 'pool') controller.abort();
      },
    });
    await expect(opening).rejects.toThrow(/abort/i);
    expect(postgresProcessesOf(dataDir)).toEqual([]);
    expect(await isPortFree(port)).toBe(true);
  });
});
