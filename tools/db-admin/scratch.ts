import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { migrateToLatest } from '../../src/platform/db/migrator.ts';

/**
 * Runs `fn` against a throw-away database migrated from `migrations/`, created on the server of
 * `adminUrl` and dropped afterwards. The schema the migrations describe, with nothing else in it.
 *
 * @example
 * ```ts
 * await withScratchDatabase(adminUrl, async (url) => generateTypes(url));
 * ```
 */
export async function withScratchDatabase<T>(adminUrl: string, fn: (url: string) => Promise<T>): Promise<T> {
  const name = `scratch_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `create database ${name}`);
  try {
    const url = withDatabaseName(adminUrl, name);
    await migrateToLatest(url);
    return await fn(url);
  } finally {
    await adminQuery(adminUrl, `drop database if exists ${name} with (force)`);
  }
}

/** Runs one statement on a connection of its own to `adminUrl` (DDL on databases, outside any transaction). */
export async function adminQuery(adminUrl: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
