import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort, run, serverUser, waitFor } from './processes.ts';

/** Debian's PostgreSQL 15 server binaries (postgresql-15): initdb, pg_ctl, pg_basebackup. */
const BIN_DIR = process.env.TEST_PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';

export interface StreamingReplication {
  /** URL of `database` on the primary / on the standby (superuser `postgres`, trust on loopback). */
  primaryUrl(database: string): string;
  replicaUrl(database: string): string;
  /** Runs one statement on the primary or the standby, on a connection of its own. */
  queryPrimary<R extends pg.QueryResultRow>(database: string, text: string, values?: unknown[]): Promise<R[]>;
  queryReplica<R extends pg.QueryResultRow>(database: string, text: string, values?: unknown[]): Promise<R[]>;
  /** Waits until the standby has replayed everything the primary has written so far. */
  waitForReplay(timeoutMs?: number): Promise<void>;
  /** Stops the standby at once (`pg_ctl stop -m immediate`), as a crash would. */
  stopReplica(): Promise<void>;
  /** Stops both servers and removes their directories. Idempotent; never throws. */
  destroy(): Promise<void>;
}

/**
 * A real primary and a real hot standby made from it with `pg_basebackup -R` (streaming
 * replication), each on a free loopback port in 54400-54420, in a temporary directory, run as
 * `postgres` when we are root. `pg_stat_statements` is loaded on both so a test can tell which
 * server ran a query. Every step is bounded; whatever was started is stopped and removed if a
 * later step fails.
 *
 * @example
 * ```ts
 * const replication = await startStreamingReplication({ database: 'app' });
 * await replication.queryPrimary('app', 'create table t (x int)');
 * await replication.waitForReplay();
 * await replication.destroy();
 * ```
 */
export async function startStreamingReplication(options: { database: string }): Promise<StreamingReplication> {
  for (const tool of ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres']) {
    if (!existsSync(path.join(BIN_DIR, tool))) {
      throw new Error(
        `${path.join(BIN_DIR, tool)} is missing: install postgresql-15 (apt-get install -y postgresql-15) or set TEST_PG_BIN_DIR`,
      );
    }
  }
  const runAs = serverUser();
  const bin = (tool: string) => path.join(BIN_DIR, tool);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'replication-'));
  if (runAs !== undefined) await fs.chown(dir, runAs.uid, runAs.gid);
  const primaryDir = path.join(dir, 'primary');
  const replicaDir = path.join(dir, 'replica');
  const started: string[] = [];

  const stop = async (dataDir: string, mode: 'fast' | 'immediate') => {
    await run(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '30'], runAs).catch(() => undefined);
  };
  const destroy = async () => {
    for (const dataDir of started.splice(0).reverse()) await stop(dataDir, 'immediate');
    await fs.rm(dir, { recursive: true, force: true });
  };

  try {
    const primaryPort = await freePort(54400, 54420);
    await run(
      bin('initdb'),
      ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      runAs,
    );
    await fs.appendFile(
      path.join(primaryDir, 'postgresql.conf'),
      [
        '',
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'wal_level = replica',
        'max_wal_senders = 4',
        'hot_standby = on',
        "shared_preload_libraries = 'pg_stat_statements'",
        'max_connections = 40',
        'fsync = off',
        '',
      ].join('\n'),
    );
    await fs.appendFile(path.join(primaryDir, 'pg_hba.conf'), '\nhost replication postgres 127.0.0.1/32 trust\n');
    await startServer(bin('pg_ctl'), primaryDir, primaryPort, runAs);
    started.push(primaryDir);

    const primaryUrl = (database: string) => `postgres://postgres@127.0.0.1:${primaryPort}/${database}`;
    await query(primaryUrl('postgres'), `create database ${options.database}`);
    await query(primaryUrl(options.database), 'create extension pg_stat_statements');

    const replicaPort = await freePort(54400, 54420);
    await run(
      bin('pg_basebackup'),
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(primaryPort),
        '-U',
        'postgres',
        '-D',
        replicaDir,
        '-R',
        '-X',
        'stream',
        '-c',
        'fast',
        '--no-sync',
      ],
      runAs,
    );
    await startServer(bin('pg_ctl'), replicaDir, replicaPort, runAs);
    started.push(replicaDir);
    const replicaUrl = (database: string) => `postgres://postgres@127.0.0.1:${replicaPort}/${database}`;
    await waitFor(
      'the standby to accept read-only connections',
      async () =>
        (await query<{ standby: boolean }>(replicaUrl('postgres'), 'select pg_is_in_recovery() as standby'))[0]
          ?.standby === true,
      30_000,
    );

    const waitForReplay = async (timeoutMs = 15_000) => {
      const [primary] = await query<{ lsn: string }>(
        primaryUrl('postgres'),
        'select pg_current_wal_lsn()::text as lsn',
      );
      await waitFor(
        'the standby to replay the primary’s WAL',
        async () => {
          const [row] = await query<{ caught_up: boolean }>(
            replicaUrl('postgres'),
            'select pg_last_wal_replay_lsn() >= $1::pg_lsn as caught_up',
            [primary?.lsn],
          );
          return row?.caught_up === true;
        },
        timeoutMs,
        50,
      );
    };
    await waitForReplay();

    let replicaRunning = true;
    return {
      primaryUrl,
      replicaUrl,
      queryPrimary: (database, text, values) => query(primaryUrl(database), text, values),
      queryReplica: (database, text, values) => query(replicaUrl(database), text, values),
      waitForReplay,
      stopReplica: async () => {
        if (!replicaRunning) return;
        replicaRunning = false;
        await run(bin('pg_ctl'), ['stop', '-D', replicaDir, '-m', 'immediate', '-w', '-t', '30'], runAs);
      },
      destroy,
    };
  } catch (error) {
    const logs = await Promise.all(
      [primaryDir, replicaDir].map(async (dataDir) =>
        (await fs.readFile(path.join(dataDir, 'server.log'), 'utf8').catch(() => '')).slice(-2000),
      ),
    );
    await destroy();
    throw new Error(
      `Could not set up streaming replication: ${error instanceof Error ? error.message : String(error)}\n${logs.join('\n')}`,
      {
        cause: error,
      },
    );
  }
}

async function startServer(
  pgCtl: string,
  dataDir: string,
  port: number,
  runAs: ReturnType<typeof serverUser>,
): Promise<void> {
  await run(
    pgCtl,
    ['start', '-D', dataDir, '-l', path.join(dataDir, 'server.log'), '-w', '-t', '60', '-o', `-p ${port}`],
    runAs,
    90_000,
  );
}

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}
