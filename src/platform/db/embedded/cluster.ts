import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Binaries } from './binaries.ts';
import type { ClusterFiles } from './location.ts';
import { describe, run, SUPERUSER, type RunAs } from './run-as.ts';

/** The superuser's URL of the maintenance database `postgres` on 127.0.0.1:`port`. */
export function superuserUrl(password: string, port: number): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/** Creates the cluster in `clusterDir` with a new superuser password, written to `passwordFile`. */
export async function initialise(binaries: Binaries, clusterDir: string, passwordFile: string, runAs?: RunAs) {
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
export async function readPassword(
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
  const password = resetPassword(files, binaries, runAs);
  await fs.writeFile(files.passwordFile, password, { mode: 0o600 });
  log(`${files.passwordFile} was missing: set a new superuser password (the data is kept)`);
  return password;
}

/** Sets a new superuser password on the stopped cluster, in single-user mode, and returns it. */
function resetPassword(files: ClusterFiles, binaries: Binaries, runAs: RunAs | undefined): string {
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
  return password;
}
