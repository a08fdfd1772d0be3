import { execFile, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The `postgres` user, when we are root: PostgreSQL and PgBouncer refuse to run as root. */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** Who to run database servers as: ourselves, or `postgres` when root (it must exist: the embedded harness creates it). */
export function serverUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'postgres',
    ]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Runs a program to completion (as `runAs`), failing with its stderr; never longer than `timeoutMs`. */
export async function run(
  file: string,
  args: readonly string[],
  runAs: RunAs | undefined,
  timeoutMs = 60_000,
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      ...(runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }),
      cwd: os.tmpdir(),
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    return stdout;
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${stderr?.trim() || message || String(error)}`, {
      cause: error,
    });
  }
}

const handedOut = new Set<number>();

/**
 * A free TCP port on 127.0.0.1 within [from, to], starting at a random one so suites running side
 * by side rarely race for the same port, and never one this process handed out and did not
 * {@link releasePort} yet. Without a range, one the system picks (for a server of the test's own
 * that nothing else is told about).
 */
export async function freePort(from?: number, to?: number): Promise<number> {
  if (from === undefined || to === undefined) return ephemeralPort();
  const span = to - from + 1;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = from + ((start + i) % span);
    if (handedOut.has(port)) continue;
    if (await isPortFree(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`No free port on 127.0.0.1 between ${from} and ${to}`);
}

function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') reject(new Error('Expected a TCP address'));
        else resolve(address.port);
      });
    });
  });
}

/** Gives a port of {@link freePort} back, once whatever listened on it is gone. */
export function releasePort(port: number): void {
  handedOut.delete(port);
}

/** Whether nothing listens on `port` at 127.0.0.1 right now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => {
      resolve(false);
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/**
 * Polls `check` every `intervalMs` until it returns something other than `undefined` or `false`,
 * and returns that (a boolean probe resolves `true`); fails naming `what`, with the last error
 * `check` threw as the cause, after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | false | undefined> | T | false | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/** Ends a child process: `signal`, then SIGKILL if it has not exited within `graceMs`. */
export async function stopProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 5_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  child.kill(signal);
  const killed = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!killed) {
    child.kill('SIGKILL');
    await exited;
  }
}
