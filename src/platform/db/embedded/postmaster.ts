import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Binaries } from './binaries.ts';
import { isAlive } from './lock.ts';
import { describe, run, runAsOptions, type RunAs } from './run-as.ts';

/** Starts the server of `clusterDir` on 127.0.0.1:`port`; a failure says why, with the end of its log. */
export async function startServer(binaries: Binaries, clusterDir: string, port: number, runAs?: RunAs): Promise<void> {
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

/** Stops the server of `clusterDir`, if one runs (fast shutdown), and waits until its postmaster is gone. */
export async function stopServer(binaries: Binaries, clusterDir: string, runAs?: RunAs): Promise<void> {
  const server = await runningServer(clusterDir);
  if (server === undefined) return;
  await run(binaries.pg_ctl, ['stop', '--pgdata', clusterDir, '--mode', 'fast', '--wait', '--timeout', '30'], runAs);
  // pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before it
  // exits: on a loaded machine it was still there when a caller looked for it.
  await untilGone(server.pid, clusterDir);
}

/** `pg_ctl stop`, blocking; throws when the server did not stop in time. */
export function stopServerSync(
  binaries: Binaries,
  clusterDir: string,
  mode: 'fast' | 'immediate',
  runAs?: RunAs,
): void {
  execFileSync(binaries.pg_ctl, ['stop', '--pgdata', clusterDir, '--mode', mode, '--wait', '--timeout', '15'], {
    ...runAsOptions(runAs),
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 30_000,
  });
}

/** The server already running on this cluster, read from postmaster.pid; stale lock files are removed. */
export async function runningServer(clusterDir: string): Promise<{ pid: number; port: number } | undefined> {
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
export async function untilGone(pid: number, clusterDir: string): Promise<void> {
  for (let waited = 0; waited < 10_000 && (await isPostmasterOf(pid, clusterDir)); waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A server that holds the lock but refuses connections (shutting down, wedged) is reported, not waited on for ever. */
export async function assertAccepting(port: number, pid: number): Promise<void> {
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

export async function assertPortFree(port: number): Promise<void> {
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

async function tail(file: string, lines = 15): Promise<string> {
  try {
    return (await fs.readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
