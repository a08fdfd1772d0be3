import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const LOCK_TIMEOUT_MS = 180_000;

/**
 * Runs `fn` holding `lockFile`. A lock whose holder is gone (killed mid-start) is broken; one
 * held longer than {@link LOCK_TIMEOUT_MS} by a live process is reported, not waited on for ever.
 */
export async function withLock<T>(lockFile: string, log: (message: string) => void, fn: () => Promise<T>): Promise<T> {
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
export function withLockSync(lockFile: string, fn: () => void): void {
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
export function liveUsers(usersDir: string): number[] {
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

/** Whether process `pid` runs, whoever's it is. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive but another user's (e.g. `postgres` while we are not root).
    return (error as { code?: string }).code === 'EPERM';
  }
}
