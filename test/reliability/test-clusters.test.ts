import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { deleteOrphanedCluster, relocatedClusters } from '../../src/platform/db/embedded/admin.ts';
import { embeddedClusterDirectory, OUTSIDE_CLUSTERS_ROOT } from '../../src/platform/db/embedded/location.ts';
import { freePort, releasePort } from '../helpers/processes.ts';
import { ROOT, scratchDirectory } from './support.ts';

// Root running `npm test` in a checkout the `postgres` user cannot reach (a clone under /root):
// every cluster the suite starts is relocated under /var/lib/pg-fastify-backend, where removing
// the test's directory does not remove it. The suite runs here for real, in a private copy of the
// checkout, and must leave none of them behind.

/** The clusters under OUTSIDE_CLUSTERS_ROOT that belong to a DATA_DIR inside `dir`. */
async function relocatedUnder(dir: string) {
  return (await relocatedClusters()).filter((cluster) => cluster.dataDir?.startsWith(`${dir}${path.sep}`));
}

describe.runIf(process.getuid?.() === 0)('npm test as root in a checkout the postgres user cannot reach', () => {
  it(
    'leaves no relocated cluster behind: neither the suite’s own nor those of the directories its tests removed',
    { timeout: 300_000 },
    async () => {
      const privateDir = await scratchDirectory(onTestFinished, 'harness-clusters');
      await fs.chmod(privateDir, 0o700);
      const checkout = path.join(privateDir, 'clone');
      await fs.mkdir(checkout);
      for (const entry of [
        'package.json',
        'tsconfig.json',
        'vitest.config.ts',
        'src',
        'migrations',
        'db-types',
        'test',
      ]) {
        await fs.cp(path.join(ROOT, entry), path.join(checkout, entry), { recursive: true });
      }
      await fs.symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
      onTestFinished(async () => {
        for (const cluster of await relocatedUnder(checkout)) await deleteOrphanedCluster(cluster);
      });
      // The scenario holds: the suite's own cluster is relocated.
      expect(await embeddedClusterDirectory(path.join(checkout, '.data', 'test'))).toMatch(
        new RegExp(`^${OUTSIDE_CLUSTERS_ROOT}/`),
      );

      const port = await freePort(55950, 55999);
      onTestFinished(async () => {
        releasePort(port);
      });
      // A file whose tests start, stop and remove several clusters of their own.
      const suite = spawn('npm', ['--silent', 'test', '--', 'test/platform/db/embedded.test.ts'], {
        cwd: checkout,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', TEST_EMBEDDED_PG_PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      suite.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      suite.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      const code = await new Promise<number | null>((resolve) => suite.once('exit', resolve));
      expect(code, output).toBe(0);

      expect(await relocatedUnder(checkout)).toEqual([]);
    },
  );
});
