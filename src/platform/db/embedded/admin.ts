import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { superuserUrl } from './cluster.ts';
import { embeddedClusterDirectory, OUTSIDE_CLUSTERS_ROOT, outsideClusterDirectory } from './location.ts';
import { liveUsers, withLock } from './lock.ts';
import { runningServer, untilGone } from './postmaster.ts';

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
  return { url: superuserUrl(password, running?.port ?? port), running: running !== undefined };
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
