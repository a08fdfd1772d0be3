import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import {
  deleteEmbeddedCluster,
  deleteOrphanedCluster,
  relocatedClusters,
} from '../../src/platform/db/embedded/admin.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { MIGRATIONS_DIR, migrateToLatest } from '../../src/platform/db/migrator.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL on the test server (embedded, or TEST_DATABASE_URL's server). */
    adminUrl: string;
    /** The migrated template every test database is cloned from. */
    templateDatabase: string;
  }
}

const TEMPLATE_PREFIX = 'test_template_';

/**
 * Once per `vitest run`: a PostgreSQL server (the embedded one under .data/test — or TEST_DATA_DIR
 * on TEST_EMBEDDED_PG_PORT, to run two suites side by side — or the one named by TEST_DATABASE_URL) and a template database migrated from migrations/. The template is named
 * by a hash of migrations/, so an unchanged schema is not migrated again on the next run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TEST_DATABASE_URL;
  const dataDir = path.resolve(process.env.TEST_DATA_DIR ?? '.data/test');
  const relocatedBefore = new Set((await relocatedClusters()).map((cluster) => cluster.dir));
  const embedded =
    external === undefined || external === ''
      ? await startEmbeddedPostgres({ dataDir, port: Number(process.env.TEST_EMBEDDED_PG_PORT ?? 54330) })
      : undefined;
  const adminUrl = embedded?.url ?? withDatabaseName(external ?? '', 'postgres');

  const templateDatabase = TEMPLATE_PREFIX + (await migrationsHash());
  await ensureTemplate(adminUrl, templateDatabase);

  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  return async () => {
    await embedded?.stop();
    await removeRelocatedClusters(dataDir, embedded, relocatedBefore);
  };
}

/**
 * As root with a checkout the `postgres` user cannot reach, clusters are relocated under
 * /var/lib/pg-fastify-backend, where deleting the checkout or a test's directory does not delete
 * them (about 40 MB to 600 MB each). So every one this run created goes: the suite's own (unless
 * another suite on the same TEST_DATA_DIR still runs on it), and any whose directory a test
 * deleted without deleting its cluster. Clusters inside their DATA_DIR go with the directory.
 */
async function removeRelocatedClusters(
  dataDir: string,
  embedded: EmbeddedPostgres | undefined,
  before: ReadonlySet<string>,
): Promise<void> {
  if (embedded !== undefined && !embedded.clusterDir.startsWith(`${dataDir}${path.sep}`)) {
    await deleteEmbeddedCluster(dataDir);
  }
  for (const cluster of await relocatedClusters()) {
    if (!before.has(cluster.dir)) await deleteOrphanedCluster(cluster);
  }
}

async function migrationsHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of (await fs.readdir(MIGRATIONS_DIR)).sort()) {
    hash
      .update(file)
      .update('\0')
      .update(await fs.readFile(path.join(MIGRATIONS_DIR, file)))
      .update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

async function ensureTemplate(adminUrl: string, template: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(
      `select datname from pg_database where datname like '${TEMPLATE_PREFIX}%' or datname like 'test_w%'`,
    );
    if (rows.some((row) => row.datname === template)) return;

    // Templates of older migrations and the worker databases cloned from them go.
    for (const { datname } of rows) {
      await admin.query(`drop database if exists ${admin.escapeIdentifier(datname)} with (force)`);
    }
    const building = `${template}_building`;
    await admin.query(`drop database if exists ${building} with (force)`);
    await admin.query(`create database ${building}`);
    await migrateToLatest(withDatabaseName(adminUrl, building));
    // Renamed only once fully migrated, so an interrupted run never leaves a half-built template.
    await admin.query(`alter database ${building} rename to ${template}`);
  } finally {
    await admin.end();
  }
}
