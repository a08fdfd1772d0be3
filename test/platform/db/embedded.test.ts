import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../helpers/processes.ts';
import { removeDataDir } from '../../helpers/data-dirs.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedClusterDirectory } from '../../../src/platform/db/embedded/location.ts';
import { ensureDatabaseExists, withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { startEmbeddedPostgres } from '../../../src/platform/db/embedded.ts';

// One cluster for the file: initdb costs about a second, and every case below can share it.
const dataDir = path.resolve('.data', `embedded-test-${randomBytes(4).toString('hex')}`);
// Inside dataDir, or (as root, in a checkout the postgres user cannot reach) outside, keyed by it;
// known once the first start has made dataDir.
let clusterDir = '';

async function query(url: string, text: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows }: { rows: unknown[] } = await client.query(text);
    return rows;
  } finally {
    await client.end();
  }
}

async function serverPid(): Promise<number | undefined> {
  try {
    return Number((await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return undefined;
  }
}

// Cases on a directory of their own run side by side (each mostly waits on initdb and the server);
// the cases on the file's one cluster run one after another, beside them.
describe.concurrent('the embedded PostgreSQL', () => {
  it('initialises a cluster on first start, with a password, and stops it', async () => {
    const freshDir = `${dataDir}-fresh`;
    const freshPort = await freePort();
    const embedded = await startEmbeddedPostgres({ dataDir: freshDir, port: freshPort });
    try {
      expect(embedded.owned).toBe(true);
      expect(embedded.url).toMatch(new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${freshPort}/postgres$`));
      const [row] = (await query(
        embedded.url,
        'select current_setting($$server_version_num$$)::int >= 150000 as ok',
      )) as {
        ok: boolean;
      }[];
      expect(row?.ok).toBe(true);
      await expect(query(embedded.url.replace(/:[^:@]+@/, ':wrong@'), 'select 1')).rejects.toThrow(/password/);
      expect((await fs.stat(path.join(freshDir, 'postgres.password'))).mode & 0o777).toBe(0o600);
    } finally {
      await embedded.stop();
    }
    await expect(query(embedded.url, 'select 1')).rejects.toThrow();
    await removeDataDir(freshDir);
  });

  it('serialises concurrent starters on a new directory: one initialises, the others wait and attach', async () => {
    const sharedDir = `${dataDir}-concurrent`;
    const sharedPort = await freePort();
    const messages: string[] = [];
    const starters = await Promise.allSettled(
      [1, 2, 3].map(() =>
        startEmbeddedPostgres({ dataDir: sharedDir, port: sharedPort, log: (message) => messages.push(message) }),
      ),
    );
    const started = starters.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    try {
      expect(starters.filter((result) => result.status === 'rejected')).toEqual([]);
      expect(messages.filter((message) => message.startsWith('initialising'))).toHaveLength(1);
      expect(messages.filter((message) => message.startsWith('starting'))).toHaveLength(1);
      expect(new Set(started.map((embedded) => embedded.url)).size).toBe(1);
      for (const embedded of started) expect(await query(embedded.url, 'select 1 as one')).toEqual([{ one: 1 }]);
    } finally {
      for (const embedded of started) await embedded.stop();
      await removeDataDir(sharedDir);
    }
  });

  it('starts over when an earlier initialisation was interrupted', async () => {
    const otherDir = `${dataDir}-partial`;
    await fs.mkdir(path.join(otherDir, 'postgres'), { recursive: true });
    await fs.writeFile(path.join(otherDir, 'postgres', 'half-written'), 'x');
    const otherPort = await freePort();
    const embedded = await startEmbeddedPostgres({ dataDir: otherDir, port: otherPort });
    try {
      expect(await query(embedded.url, 'select 1 as one')).toEqual([{ one: 1 }]);
    } finally {
      await embedded.stop();
      await removeDataDir(otherDir);
    }
  });

  // `concurrent` lets this group run beside the cases above; its own cases share one cluster and
  // run one at a time, in order.
  const inOrder = { concurrent: false } as const;
  describe.concurrent('on one cluster, initialised once', () => {
    let port: number;

    beforeAll(async () => {
      port = await freePort();
      // Initialised once here, so each case below can run alone and in any order.
      await (await startEmbeddedPostgres({ dataDir, port })).stop();
      clusterDir = await embeddedClusterDirectory(dataDir);
    });

    afterAll(async () => {
      await removeDataDir(dataDir);
    });

    it('keeps data across restarts and attaches to a server another process already runs', inOrder, async () => {
      const first = await startEmbeddedPostgres({ dataDir, port });
      try {
        await ensureDatabaseExists(first.url, 'kept');
        await ensureDatabaseExists(first.url, 'kept'); // idempotent
        await query(withDatabaseName(first.url, 'kept'), 'create table if not exists notes (body text)');
        await query(withDatabaseName(first.url, 'kept'), "insert into notes values ('survives')");

        const second = await startEmbeddedPostgres({ dataDir, port: port + 1 });
        expect(second.owned).toBe(false);
        expect(second.port).toBe(port);
        await second.stop(); // not its server: a no-op
        expect(await query(first.url, 'select 1 as one')).toEqual([{ one: 1 }]);
      } finally {
        await first.stop();
      }

      const restarted = await startEmbeddedPostgres({ dataDir, port });
      try {
        expect(await query(withDatabaseName(restarted.url, 'kept'), 'select body from notes')).toContainEqual({
          body: 'survives',
        });
      } finally {
        restarted.stopSync();
        restarted.stopSync(); // idempotent
      }
      expect(await serverPid()).toBeUndefined();
    });

    it('recovers from a lock file left by a killed run', inOrder, async () => {
      // A postmaster.pid naming a process that is not PostgreSQL (this test runner) is stale.
      await fs.writeFile(path.join(clusterDir, 'postmaster.pid'), `${process.pid}\n${clusterDir}\n0\n${port}\n`);
      const embedded = await startEmbeddedPostgres({ dataDir, port });
      try {
        expect(embedded.owned).toBe(true);
        expect(await query(embedded.url, 'select 1 as one')).toEqual([{ one: 1 }]);
      } finally {
        await embedded.stop();
      }
    });

    it('says which port is taken instead of hanging when another program holds it', inOrder, async () => {
      const blocker = net.createServer();
      await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
      try {
        await expect(startEmbeddedPostgres({ dataDir, port })).rejects.toThrow(
          new RegExp(`Port ${port} on 127\\.0\\.0\\.1 is already in use.*EMBEDDED_PG_PORT`),
        );
      } finally {
        await new Promise((resolve) => blocker.close(resolve));
      }
    });

    it(
      'keeps the data when the password file is gone: a new superuser password is set and written down',
      inOrder,
      async () => {
        const passwordFile = path.join(dataDir, 'postgres.password');
        const before = await startEmbeddedPostgres({ dataDir, port });
        await ensureDatabaseExists(before.url, 'kept_without_password');
        await before.stop();
        await fs.rm(passwordFile);

        const messages: string[] = [];
        const after = await startEmbeddedPostgres({ dataDir, port, log: (message) => messages.push(message) });
        try {
          expect(messages.join('\n')).toMatch(
            /postgres\.password was missing: set a new superuser password \(the data is kept\)/,
          );
          expect(messages.join('\n')).not.toMatch(/remove|delete|lost/i);
          expect((await fs.readFile(passwordFile, 'utf8')).trim()).not.toBe('');
          expect(after.url).not.toBe(before.url);
          expect(
            await query(after.url, "select datname from pg_database where datname = 'kept_without_password'"),
          ).toEqual([{ datname: 'kept_without_password' }]);
          await expect(query(before.url, 'select 1')).rejects.toThrow(/password/);
        } finally {
          await after.stop();
        }
      },
    );

    it('stays up while any of its users runs: the last one to stop stops it', inOrder, async () => {
      const first = await startEmbeddedPostgres({ dataDir, port });
      const second = await startEmbeddedPostgres({ dataDir, port });
      await first.stop();
      expect(await query(second.url, 'select 1 as one')).toEqual([{ one: 1 }]);
      await second.stop();
      await expect(query(second.url, 'select 1')).rejects.toThrow();
      expect(await serverPid()).toBeUndefined();
    });
  });
});
