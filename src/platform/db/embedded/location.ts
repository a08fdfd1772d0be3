import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { canTraverse, describe, runAsUser, type RunAs } from './run-as.ts';

/**
 * As root, clusters of checkouts the `postgres` user cannot reach (a clone under /root, any
 * `mkdir -m 700` parent) live here, one directory per checkout, named by a hash of its DATA_DIR.
 */
export const OUTSIDE_CLUSTERS_ROOT = '/var/lib/pg-fastify-backend';

/** The files under `dataDir` that coordinate the processes sharing one cluster. */
export interface ClusterFiles {
  readonly clusterDir: string;
  readonly passwordFile: string;
  /** Held (created exclusively, holding a pid) while a process initialises, starts, attaches to or stops the server. */
  readonly lockFile: string;
  /** One file per live user of the server, named `<pid>.<random>`: the last one out stops it. */
  readonly usersDir: string;
}

/** The coordinating files of the cluster of `dataDir` (resolved), which lives in `clusterDir`. */
export function clusterFiles(dataDir: string, clusterDir: string): ClusterFiles {
  return {
    clusterDir,
    passwordFile: path.join(dataDir, 'postgres.password'),
    lockFile: path.join(dataDir, 'postgres.lock'),
    usersDir: path.join(dataDir, 'postgres.users'),
  };
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

/** {@link embeddedClusterDirectory}, preparing the directory outside when it is needed. */
export async function clusterDirectory(
  dataDir: string,
  runAs: RunAs | undefined,
  log: (message: string) => void,
): Promise<string> {
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
