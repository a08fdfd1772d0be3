import fs from 'node:fs/promises';
import { deleteEmbeddedCluster } from '../../src/platform/db/embedded/admin.ts';

/**
 * Removes a test's DATA_DIR and its embedded cluster, wherever that lives: as root, with a checkout
 * the `postgres` user cannot reach, the cluster is relocated under /var/lib/pg-fastify-backend and
 * removing the directory alone would leave it there for good. A server still running on it is
 * stopped at once.
 */
export async function removeDataDir(dataDir: string): Promise<void> {
  await deleteEmbeddedCluster(dataDir, { force: true });
  await fs.rm(dataDir, { recursive: true, force: true });
}
