import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { removeDataDir } from '../../helpers/data-dirs.ts';
import { freePort } from '../../helpers/processes.ts';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { EMBEDDED_DATABASE_NAME, openDatabaseTarget } from '../../../src/platform/db/target.ts';
import { TEST_JWT_SECRET } from '../../helpers/app.ts';

const dataDir = path.resolve('.data', `target-test-${randomBytes(4).toString('hex')}`);

async function currentDatabase(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ name: string }>('select current_database() as name')).rows[0]?.name;
  } finally {
    await client.end();
  }
}

describe('openDatabaseTarget', () => {
  afterAll(async () => {
    await removeDataDir(dataDir);
  });

  it('uses DATABASE_URL as it is, starts nothing, and has nothing to close', async () => {
    const url = 'postgres://app@db.internal:5432/orders';
    const target = await openDatabaseTarget(
      loadConfig({ NODE_ENV: 'test', JWT_SECRET: TEST_JWT_SECRET, DATABASE_URL: url }),
    );
    expect(target.url).toBe(url);
    expect(target.embedded).toBeUndefined();
    await expect(target.close()).resolves.toBeUndefined();
  });

  it('without DATABASE_URL starts the embedded server under DATA_DIR with an `app` database, and a second opener attaches to it', async () => {
    const port = await freePort();
    const config = loadConfig({
      NODE_ENV: 'test',
      JWT_SECRET: TEST_JWT_SECRET,
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(port),
    });
    const messages: string[] = [];
    const first = await openDatabaseTarget(config, (message) => messages.push(message));
    try {
      expect(first.embedded?.owned).toBe(true);
      expect(new URL(first.url).pathname).toBe(`/${EMBEDDED_DATABASE_NAME}`);
      expect(new URL(first.url).port).toBe(String(port));
      expect(await currentDatabase(first.url)).toBe('app');
      expect(messages).toContain(`starting embedded PostgreSQL on 127.0.0.1:${port}`);

      // Another process (here: another opener, without a log) finds the server running and leaves it alone.
      const second = await openDatabaseTarget(config);
      expect(second.embedded?.owned).toBe(false);
      expect(second.url).toBe(first.url);
      await second.close();
      expect(await currentDatabase(first.url)).toBe('app');
    } finally {
      await first.close();
    }
    await expect(currentDatabase(first.url)).rejects.toThrow(/ECONNREFUSED/);
  });
});
