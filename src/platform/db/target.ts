import type { Config } from '../config.ts';
import { ensureDatabaseExists, withDatabaseName } from './database-admin.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.ts';

/** The database the application uses, in the embedded server when it has no `DATABASE_URL`. */
export const EMBEDDED_DATABASE_NAME = 'app';

export interface DatabaseTarget {
  readonly url: string;
  /** The embedded server, when that is where `url` points. */
  readonly embedded: EmbeddedPostgres | undefined;
  /** Stops the embedded server if this process started it; a no-op for `DATABASE_URL`. */
  close(): Promise<void>;
}

/**
 * Where the application's data lives: `DATABASE_URL`, or the embedded PostgreSQL under
 * `DATA_DIR` (started, or attached to if another process already runs it).
 *
 * @example
 * ```ts
 * const target = await openDatabaseTarget(loadConfig(), console.error);
 * const db = createDatabase({ ...config.database, url: target.url });
 * // …
 * await db.destroy();
 * await target.close();
 * ```
 */
export async function openDatabaseTarget(config: Config, log?: (message: string) => void): Promise<DatabaseTarget> {
  if (config.database.url !== undefined) {
    return { url: config.database.url, embedded: undefined, close: async () => {} };
  }
  const embedded = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.database.embeddedPort,
    ...(log === undefined ? {} : { log }),
  });
  try {
    await ensureDatabaseExists(embedded.url, EMBEDDED_DATABASE_NAME);
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  return { url: withDatabaseName(embedded.url, EMBEDDED_DATABASE_NAME), embedded, close: () => embedded.stop() };
}
