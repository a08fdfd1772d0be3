import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { serverUser, stopProcess, waitFor } from './processes.ts';

export interface PgBouncerOptions {
  /** The PostgreSQL server behind it: a URL with the user (and password) PgBouncer logs in as. */
  readonly serverUrl: string;
  /** Loopback port to listen on. */
  readonly port: number;
  readonly poolMode?: 'session' | 'transaction';
  /** Server connections per database and user (PgBouncer's default_pool_size). */
  readonly defaultPoolSize?: number;
  readonly maxClientConn?: number;
  readonly startTimeoutMs?: number;
}

export interface PgBouncer {
  readonly port: number;
  /** A client URL for `database` through PgBouncer. */
  url(database: string): string;
  /** Transactions and queries PgBouncer has served, summed over every database (its SHOW STATS). */
  totals(): Promise<{ transactions: number; queries: number }>;
  /** Stops PgBouncer and removes its files. Idempotent. */
  stop(): Promise<void>;
  /** The last lines of its log (for failure messages). */
  log(): Promise<string>;
}

/** Debian's package installs it in /usr/sbin, which is not on every PATH. */
function binary(): string {
  return existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer';
}

/**
 * Starts a real PgBouncer on 127.0.0.1:`port` in front of `serverUrl` (any database name is
 * forwarded), configured in a temporary directory and run as `postgres` when we are root.
 * Clients are trusted (loopback only, a test) and must use the server URL's user name; PgBouncer
 * logs in to the server with that user and password. No startup parameter is ignored
 * (`ignore_startup_parameters` is empty), so a client that sends `statement_timeout` at startup
 * is refused, as in production.
 *
 * @example
 * ```ts
 * const bouncer = await startPgBouncer({ serverUrl: 'postgres://postgres@127.0.0.1:5432/postgres', port: 6432 });
 * const pool = new pg.Pool({ connectionString: bouncer.url('app') });
 * await bouncer.stop();
 * ```
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const server = new URL(options.serverUrl);
  const user = decodeURIComponent(server.username || 'postgres');
  const password = decodeURIComponent(server.password);
  const runAs = serverUser();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgbouncer-'));
  const logFile = path.join(dir, 'pgbouncer.log');
  const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;
  const target = [
    `host=${server.hostname}`,
    `port=${server.port || '5432'}`,
    `user=${quote(user)}`,
    ...(password === '' ? [] : [`password=${quote(password)}`]),
  ].join(' ');
  await fs.writeFile(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = ${target}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${options.port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      `admin_users = ${user}`,
      `pool_mode = ${options.poolMode ?? 'transaction'}`,
      `default_pool_size = ${options.defaultPoolSize ?? 20}`,
      `max_client_conn = ${options.maxClientConn ?? 500}`,
      'server_idle_timeout = 10',
      `logfile = ${logFile}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  await fs.writeFile(path.join(dir, 'userlist.txt'), `"${user}" ""\n`, { mode: 0o600 });
  if (runAs !== undefined) {
    for (const file of ['', 'pgbouncer.ini', 'userlist.txt'])
      await fs.chown(path.join(dir, file), runAs.uid, runAs.gid);
  }

  const child: ChildProcess = spawn(binary(), [path.join(dir, 'pgbouncer.ini')], {
    ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }),
    cwd: dir,
    stdio: 'ignore',
  });
  // Never outlive the process that started it, even when that one crashes.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });

  const url = (database: string) =>
    `postgres://${encodeURIComponent(user)}@127.0.0.1:${options.port}/${encodeURIComponent(database)}`;
  const readLog = async () =>
    (await fs.readFile(logFile, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-20).join('\n');
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stopProcess(child, 'SIGTERM');
    process.removeListener('exit', killOnExit);
    await fs.rm(dir, { recursive: true, force: true });
  };

  try {
    await waitFor(
      `PgBouncer on 127.0.0.1:${options.port}`,
      async () => {
        if (spawnError !== undefined) throw spawnError;
        if (child.exitCode !== null) throw new Error(`pgbouncer exited with code ${child.exitCode}`);
        await adminQuery(url('pgbouncer'), 'SHOW VERSION');
        return true;
      },
      options.startTimeoutMs ?? 10_000,
    );
  } catch (error) {
    const log = await readLog();
    await stop();
    throw new Error(`PgBouncer did not start (is it installed? apt-get install -y pgbouncer):\n${log}`, {
      cause: error,
    });
  }

  return {
    port: options.port,
    url,
    totals: async () => {
      const rows = await adminQuery(url('pgbouncer'), 'SHOW STATS');
      return rows.reduce<{ transactions: number; queries: number }>(
        (sum, row) => ({
          transactions: sum.transactions + Number(row.total_xact_count ?? 0),
          queries: sum.queries + Number(row.total_query_count ?? 0),
        }),
        { transactions: 0, queries: 0 },
      );
    },
    stop,
    log: readLog,
  };
}

/** The admin console speaks only the simple query protocol: a plain client, no parameters. */
async function adminQuery(url: string, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  await client.connect();
  try {
    return (await client.query<Record<string, unknown>>(text)).rows;
  } finally {
    await client.end();
  }
}
