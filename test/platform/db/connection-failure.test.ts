import net from 'node:net';
import pg from 'pg';
import { inject, onTestFinished } from 'vitest';
import { sql } from 'kysely';
import { watchAvailability } from '../../../src/platform/db/availability.ts';
import { describeConnectionFailure } from '../../../src/platform/db/connection-failure.ts';
import { createDatabase } from '../../../src/platform/db/database.ts';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { ServiceUnavailableError } from '../../../src/platform/errors/index.ts';
import { reportWorkerFailure } from '../../../src/platform/jobs/failures.ts';
import { adminQuery, describe, expect, test, TEST_POOL } from '../../helpers/database.ts';
import { freePort, waitFor } from '../../helpers/processes.ts';

// What an operator reads when the server cannot reach PostgreSQL (src/platform/db/connection-failure.ts),
// for real failures of the driver: a closed port, a wrong password, a missing database, a role
// that may not log in, a server that never answers or hangs up, and one that is starting up.
// Then the availability watcher's "lost" / "back" lines around a real outage.

/** What `pg` throws when it tries to connect to `url` (with a short connection timeout). */
async function connectError(url: string, connectionTimeoutMillis = 2000): Promise<unknown> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    return error;
  }
  await client.end();
  throw new Error(`connected to ${url}`);
}

/** A TCP server on a free port that does `onConnection` with every socket; closed after the test. */
async function fakeServer(onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) =>
      server.close(() => {
        resolve();
      }),
    );
  });
  return (server.address() as net.AddressInfo).port;
}

/** A PostgreSQL ErrorResponse message ('E') with the given SQLSTATE and text. */
function errorResponse(code: string, message: string): Buffer {
  const fields = Buffer.concat(
    [`SFATAL`, `VFATAL`, `C${code}`, `M${message}`].map((field) => Buffer.from(`${field}\0`)).concat(Buffer.from('\0')),
  );
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}

const adminUrl = () => new URL(inject('adminUrl'));

describe('describeConnectionFailure', () => {
  test('a closed port: connection refused, where (password masked) and what to check', async () => {
    const port = await freePort();
    const url = `postgres://app:s3cret@127.0.0.1:${port}/app`;
    const line = describeConnectionFailure(await connectError(url), url, 'DATABASE_URL');
    expect(line).toBe(
      `Cannot connect to PostgreSQL at 127.0.0.1:${port} (DATABASE_URL=postgres://app:****@127.0.0.1:${port}/app): ` +
        'connection refused (nothing listens there). Check that PostgreSQL runs and listens on that host and port.',
    );
    expect(line).not.toContain('s3cret');
  });

  test('a wrong password, named as such, the password not shown', async ({ skip }) => {
    const url = adminUrl();
    url.password = 'certainly-not-the-password';
    await adminQuery(`drop role if exists conn_failure_pw`);
    await adminQuery(`create role conn_failure_pw login password 'right-one'`);
    onTestFinished(() => adminQuery('drop role if exists conn_failure_pw'));
    url.username = 'conn_failure_pw';
    const error = await connectError(url.toString()).catch((unexpected: unknown) => unexpected);
    // A server whose pg_hba.conf trusts this connection (CI's PostgreSQL 15 at 127.0.0.1) checks no
    // password, so none can be wrong there; the embedded server checks them.
    if (error instanceof Error && error.message.startsWith('connected to')) {
      skip('this server trusts the connection (pg_hba trust): no password can be wrong');
    }
    const line = describeConnectionFailure(error, url.toString(), 'DATABASE_URL');
    expect((error as { code?: string }).code).toBe('28P01');
    expect(line).toContain('password authentication failed. Check the user name and password in the URL.');
    expect(line).toContain('conn_failure_pw:****@');
    expect(line).not.toContain('certainly-not-the-password');
  });

  test('a role that may not log in: the server refused the login, with its reason', async () => {
    await adminQuery('drop role if exists conn_failure_nologin');
    // Authenticated (right password), then refused: the role has no LOGIN.
    await adminQuery(`create role conn_failure_nologin nologin password 'its-password'`);
    onTestFinished(() => adminQuery('drop role if exists conn_failure_nologin'));
    const url = adminUrl();
    url.username = 'conn_failure_nologin';
    url.password = 'its-password';
    const line = describeConnectionFailure(await connectError(url.toString()), url.toString(), 'DATABASE_URL');
    expect(line).toMatch(
      /the server refused the login \(.*not permitted to log in\)\. Check the user name, and pg_hba\.conf/,
    );
  });

  test('a database that does not exist: the server says which, and to create it', async () => {
    const url = withDatabaseName(inject('adminUrl'), 'no_such_database_here');
    const line = describeConnectionFailure(await connectError(url), url, 'the embedded PostgreSQL');
    expect(line).toContain('database "no_such_database_here" does not exist. Check the database name in the URL');
    expect(line).toContain('(the embedded PostgreSQL=');
  });

  test('a server that is starting up: try again in a moment', async () => {
    const port = await fakeServer((socket) => {
      socket.once('data', () => socket.end(errorResponse('57P03', 'the database system is starting up')));
    });
    const url = `postgres://app@127.0.0.1:${port}/app`;
    expect(describeConnectionFailure(await connectError(url), url, 'DATABASE_URL')).toContain(
      'the server is starting up or shutting down. Check again in a moment.',
    );
  });

  test('a port that accepts and never answers: no answer within the connection timeout', async () => {
    const port = await fakeServer(() => {});
    const url = `postgres://app@127.0.0.1:${port}/app`;
    expect(describeConnectionFailure(await connectError(url, 300), url, 'DATABASE_URL')).toContain(
      'no answer within the connection timeout. Check the host and port, and any firewall in between.',
    );
  });

  test('a port that resets the connection: the connection was reset, check it is PostgreSQL and TLS', async () => {
    const port = await fakeServer((socket) => socket.resetAndDestroy());
    const url = `postgres://app@127.0.0.1:${port}/app`;
    const error = await connectError(url);
    expect((error as { code?: string }).code).toBe('ECONNRESET');
    expect(describeConnectionFailure(error, url, 'DATABASE_URL')).toContain(
      'the connection was reset. Check that the port is PostgreSQL’s, and its TLS settings (sslmode).',
    );
  });

  test('the failure is found through the data layer’s wrapping (the AppError’s cause)', async () => {
    const port = await freePort();
    const url = `postgres://app@127.0.0.1:${port}/app`;
    const db = createDatabase({ ...TEST_POOL, url, connectionTimeoutMs: 2000 });
    onTestFinished(() => db.destroy());
    const error = await sql`select 1`.execute(db).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(describeConnectionFailure(error, url, 'DATABASE_URL')).toContain(
      'connection refused (nothing listens there)',
    );
  });

  test('names the host of a URL without one localhost, the port 5432 by default, and masks no empty password', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(describeConnectionFailure(refused, 'postgres:///app', 'DATABASE_URL')).toContain(
      'at localhost:5432 (DATABASE_URL=postgres:///app)',
    );
    expect(describeConnectionFailure(refused, 'not a url', 'DATABASE_URL')).toContain(
      'at an unparsable address (DATABASE_URL=(not a URL))',
    );
  });

  test.for([
    ['ENOTFOUND', 'the host name does not resolve', 'the host name in the URL and your DNS'],
    ['EAI_AGAIN', 'the host name does not resolve', 'the host name in the URL and your DNS'],
    ['ETIMEDOUT', 'no answer (the host is unreachable)', 'the host and port, and any firewall in between'],
    ['EHOSTUNREACH', 'no answer (the host is unreachable)', 'the host and port, and any firewall in between'],
    ['ENETUNREACH', 'no answer (the host is unreachable)', 'the host and port, and any firewall in between'],
    ['3D000', 'the database does not exist', 'the database name in the URL (create it first)'],
  ])('the driver’s %s: %s', ([code, why, check]) => {
    // The codes Node's resolver and sockets report for hosts this machine has no network to fail
    // on (no DNS server, no route), in the shape they have; a 3D000 without the server's text.
    const error = Object.assign(new Error(''), { code });
    expect(describeConnectionFailure(error, 'postgres://db.example:6543/app', 'DATABASE_URL')).toBe(
      `Cannot connect to PostgreSQL at db.example:6543 (DATABASE_URL=postgres://db.example:6543/app): ${why}. Check ${check}.`,
    );
  });

  test('an unresolvable host name (a real lookup of a .invalid name)', async () => {
    const url = 'postgres://app@no-such-host.invalid:5432/app';
    expect(describeConnectionFailure(await connectError(url), url, 'DATABASE_URL')).toContain(
      'the host name does not resolve. Check the host name in the URL and your DNS.',
    );
  });

  test('searches every error of an AggregateError (both addresses of a host refused)', () => {
    const inner = [new Error('first'), Object.assign(new Error('second'), { code: 'ECONNREFUSED' })];
    expect(describeConnectionFailure(new AggregateError(inner), 'postgres://h/app', 'DATABASE_URL')).toContain(
      'connection refused',
    );
  });

  test('is undefined for what is not a connection failure, and for causes nested too deep or in a cycle', async () => {
    const notConnection = new pg.Client({ connectionString: inject('adminUrl') });
    await notConnection.connect();
    const syntax = await notConnection.query('selec 1').then(
      () => undefined,
      (error: unknown) => error,
    );
    await notConnection.end();
    expect(describeConnectionFailure(syntax, inject('adminUrl'), 'DATABASE_URL')).toBeUndefined();
    expect(describeConnectionFailure('a string', 'postgres://h/app', 'DATABASE_URL')).toBeUndefined();
    expect(describeConnectionFailure(null, 'postgres://h/app', 'DATABASE_URL')).toBeUndefined();
    expect(describeConnectionFailure(new AggregateError([new Error('x')]), 'postgres://h/app', 'S')).toBeUndefined();
    const cycle: { message: string; cause?: unknown } = { message: 'outer' };
    cycle.cause = cycle;
    expect(describeConnectionFailure(cycle, 'postgres://h/app', 'DATABASE_URL')).toBeUndefined();
    let deep: object = { code: 'ECONNREFUSED' };
    for (let i = 0; i < 6; i++) deep = { message: `wrapper ${i}`, cause: deep };
    expect(describeConnectionFailure(deep, 'postgres://h/app', 'DATABASE_URL')).toBeUndefined();
  });
});

/** A TCP proxy on a fixed port to the test server, switched on and off (an outage of "the database"). */
class Outage {
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  readonly port: number;
  constructor(port: number) {
    this.port = port;
  }

  async up(): Promise<void> {
    const target = adminUrl();
    this.#server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          this.#sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.#server?.listen(this.port, '127.0.0.1', resolve));
  }

  async down(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined)
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
  }
}

interface Logged {
  level: 'error' | 'info';
  fields: Record<string, unknown>;
  message: string;
}

describe('watchAvailability', () => {
  async function watched() {
    const outage = new Outage(await freePort());
    onTestFinished(() => outage.down());
    const target = adminUrl();
    target.port = String(outage.port);
    const url = target.toString();
    const logged: Logged[] = [];
    const outcomes: string[] = [];
    const checkoutErrors: string[] = [];
    const logger = {
      error: (fields: object, message: string) => logged.push({ level: 'error', fields: { ...fields }, message }),
      info: (fields: object, message: string) => logged.push({ level: 'info', fields: { ...fields }, message }),
    };
    const hooks = watchAvailability(
      { onQuery: (event) => outcomes.push(event.outcome), onCheckoutError: (error) => checkoutErrors.push(error.code) },
      () => logger,
      url,
      'DATABASE_URL',
    );
    const db = createDatabase({ ...TEST_POOL, url, connectionTimeoutMs: 2000 }, hooks);
    onTestFinished(() => db.destroy());
    return { outage, db, logged, outcomes, checkoutErrors };
  }

  test('says once that the database is lost (why, where), and once that it is back, with how long it was down', async () => {
    const { outage, db, logged, outcomes, checkoutErrors } = await watched();
    for (let i = 0; i < 3; i++) {
      await expect(sql`select 1`.execute(db)).rejects.toBeInstanceOf(ServiceUnavailableError);
    }
    expect(checkoutErrors).toEqual(['DATABASE_UNAVAILABLE', 'DATABASE_UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
    expect(logged).toHaveLength(1);
    expect(logged[0]?.level).toBe('error');
    expect(logged[0]?.message).toBe('lost the database: requests needing it answer 503 until it is back');
    expect(String(logged[0]?.fields.reason)).toContain(`127.0.0.1:${outage.port}`);
    expect(String(logged[0]?.fields.reason)).toContain('connection refused');
    if (adminUrl().password !== '') {
      expect(String(logged[0]?.fields.reason)).toContain(':****@');
      expect(String(logged[0]?.fields.reason)).not.toContain(adminUrl().password);
    }

    await outage.up();
    await sql`select 1`.execute(db);
    await sql`select 1`.execute(db);
    expect(logged).toHaveLength(2);
    expect(logged[1]).toMatchObject({ level: 'info', message: 'the database is back' });
    expect(logged[1]?.fields.downMs).toEqual(expect.any(Number));
    expect(outcomes).toEqual(['ok', 'ok']);
  });

  test('a connection that dies mid-query counts as lost too, and a query after it as back', async () => {
    const { outage, db, logged, outcomes } = await watched();
    await outage.up();
    await sql`select 1`.execute(db);
    const slow = sql`select pg_sleep(5)`.execute(db);
    const failed = slow.then(
      () => undefined,
      (error: unknown) => error,
    );
    await waitFor('the query to be running', () => outcomes.length === 1 && outage.port > 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await outage.down();
    expect(await failed).toBeInstanceOf(ServiceUnavailableError);
    expect(outcomes).toEqual(['ok', 'DATABASE_UNAVAILABLE']);
    expect(logged.map((entry) => entry.message)).toEqual([
      'lost the database: requests needing it answer 503 until it is back',
    ]);
    await outage.up();
    await sql`select 1`.execute(db);
    expect(logged.map((entry) => entry.message)).toEqual([
      'lost the database: requests needing it answer 503 until it is back',
      'the database is back',
    ]);
  });

  test('hooks are optional and the log may not be there yet', async () => {
    const port = await freePort();
    const hooks = watchAvailability({}, () => undefined, `postgres://app@127.0.0.1:${port}/app`, 'DATABASE_URL');
    const db = createDatabase(
      { ...TEST_POOL, url: `postgres://app@127.0.0.1:${port}/app`, connectionTimeoutMs: 2000 },
      hooks,
    );
    onTestFinished(() => db.destroy());
    await expect(sql`select 1`.execute(db)).rejects.toBeInstanceOf(ServiceUnavailableError);
  });
});

describe('reportWorkerFailure', () => {
  test('an unreachable database at debug only (the watcher announced it); anything else at error, with the error', async () => {
    const port = await freePort();
    const db = createDatabase({ ...TEST_POOL, url: `postgres://app@127.0.0.1:${port}/app`, connectionTimeoutMs: 2000 });
    onTestFinished(() => db.destroy());
    const unavailable = await sql`select 1`.execute(db).then(
      () => undefined,
      (error: unknown) => error,
    );
    const lines: Array<[string, Record<string, unknown>, string]> = [];
    const log = {
      debug: (fields: object, message: string) => lines.push(['debug', { ...fields }, message]),
      error: (fields: object, message: string) => lines.push(['error', { ...fields }, message]),
    };
    reportWorkerFailure(log, unavailable, 'outbox pass failed');
    const bug = new TypeError('a bug');
    reportWorkerFailure(log, bug, 'outbox pass failed');
    reportWorkerFailure(undefined, bug, 'no log yet');
    reportWorkerFailure(undefined, unavailable, 'no log yet');
    expect(lines).toHaveLength(2);
    expect(lines[0]?.[0]).toBe('debug');
    expect(lines[0]?.[1]).toEqual({ code: 'DATABASE_UNAVAILABLE' });
    expect(lines[0]?.[2]).toMatch(/^outbox pass failed: /);
    expect(lines[1]).toEqual(['error', { err: bug }, 'outbox pass failed']);
  });
});
