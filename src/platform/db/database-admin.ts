import pg from 'pg';

/**
 * Creates `name` on the server at `adminUrl` unless it exists.
 *
 * @example
 * ```ts
 * await ensureDatabaseExists(embedded.url, 'app');
 * ```
 */
export async function ensureDatabaseExists(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
      if (rowCount !== 0) return;
      try {
        await client.query(`create database ${client.escapeIdentifier(name)}`);
        return;
      } catch (error) {
        const code = (error as { code?: string }).code;
        // Created concurrently by another process, which is what we wanted: 42P04, or 23505 when
        // both inserted into pg_database at once.
        if (code === '42P04' || code === '23505') return;
        // 55006: template1 is busy with another process's CREATE DATABASE (two starters at once).
        if (code !== '55006' || attempt >= 20) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  } finally {
    await client.end();
  }
}

/**
 * Drops `name` on the server at `adminUrl` if it exists, ending its sessions first.
 *
 * @example
 * ```ts
 * await dropDatabase(embedded.url, 'app');
 * ```
 */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
  } finally {
    await client.end();
  }
}

/** The URL of database `name` on the same server as `url`. */
export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}
