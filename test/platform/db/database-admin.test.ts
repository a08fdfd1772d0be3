import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { dropDatabase, ensureDatabaseExists, withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { describe, expect, test } from '../../helpers/database.ts';

// What npm start, the migrate commands and the test harness do to make their database exist:
// several starters at once (two terminals, vitest's workers) must all end with it, none failing.

const adminUrl = () => inject('adminUrl');

async function exists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return (await client.query('select 1 from pg_database where datname = $1', [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

describe('creating and dropping databases', () => {
  test('six starters creating one new database at once all succeed, and the database exists once', async ({
    onTestFinished,
  }) => {
    const name = `admin_${randomBytes(4).toString('hex')}`;
    onTestFinished(() => dropDatabase(adminUrl(), name));
    await Promise.all(Array.from({ length: 6 }, () => ensureDatabaseExists(adminUrl(), name)));
    expect(await exists(name)).toBe(true);
    // Existing already: nothing to do.
    await ensureDatabaseExists(adminUrl(), name);

    const client = new pg.Client({ connectionString: withDatabaseName(adminUrl(), name) });
    // The forced drop below ends this session: the client hears it as an error event.
    client.on('error', () => {});
    await client.connect();
    expect((await client.query<{ db: string }>('select current_database() as db')).rows[0]?.db).toBe(name);
    // Dropped with its sessions ended (WITH (FORCE)), and dropping it again is no error.
    await dropDatabase(adminUrl(), name);
    await client.end().catch(() => undefined);
    expect(await exists(name)).toBe(false);
    await dropDatabase(adminUrl(), name);
  });

  test('a name that needs quoting is created as written, and its URL encodes it', async ({ onTestFinished }) => {
    const name = `Admin "quoted" ${randomBytes(2).toString('hex')}`;
    onTestFinished(() => dropDatabase(adminUrl(), name));
    await ensureDatabaseExists(adminUrl(), name);
    expect(await exists(name)).toBe(true);
    expect(new URL(withDatabaseName(adminUrl(), name)).pathname).toBe(`/${encodeURIComponent(name)}`);
  });

  test('a server that refuses the creation fails with its error', async () => {
    // A role without CREATEDB: the error is the server's, not swallowed as "created meanwhile".
    const client = new pg.Client({ connectionString: adminUrl() });
    await client.connect();
    const role = `nocreate_${randomBytes(4).toString('hex')}`;
    try {
      await client.query(`create role ${role} login password 'x'`);
      const url = new URL(adminUrl());
      url.username = role;
      url.password = 'x';
      await expect(ensureDatabaseExists(url.toString(), `refused_${role}`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.query(`drop role if exists ${role}`);
      await client.end();
    }
  });
});
