import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { expect } from 'vitest';
import { buildApp, type App } from '../../src/app.ts';
import type { Config } from '../../src/platform/config.ts';
import { createDatabase, createPool, type Database } from '../../src/platform/db/database.ts';
import { ensureDatabaseExists, withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { outsideClusterDirectory } from '../../src/platform/db/embedded/location.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { migrateToLatest } from '../../src/platform/db/migrator.ts';
import { freePort, releasePort } from '../helpers/processes.ts';
import { expectError } from '../helpers/assertions.ts';
import { removeDataDir } from '../helpers/data-dirs.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { TEST_JWT_SECRET, testConfig, testHasher } from '../helpers/app.ts';

/** The project root: where `src/server.ts` is and where `.data/` lives. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Where every scratch PostgreSQL and server of these tests keeps its files. Each test makes a
 * directory of its own inside and removes it when it ends, pass or fail.
 */
const SCRATCH_ROOT = path.join(ROOT, '.data', 'reliability');

export type OnFinished = (fn: () => Promise<void>) => void;

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A unique token for names: emails, application names, directories. */
export function uniqueId(): string {
  return randomBytes(5).toString('hex');
}

// Ports: the tests use only their own ranges (3300–3399 for HTTP, 54370–54389 for PostgreSQL),
// and each test file a sub-range of its own, so files running in parallel never compete for one.

// ---------------------------------------------------------------------------------------------
// A client's view of HTTP.

export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** Milliseconds from sending the request to the end of the response. */
  readonly ms: number;
  /** The body parsed as JSON, typed by the caller as fetch's `Response.json()` is. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  json<T = unknown>(): T;
}

export interface HttpRequestOptions {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** Sent as JSON (with content-type) unless it is already a string or Buffer. */
  readonly body?: unknown;
  /** Abort and fail after this long: a request that hangs fails the test instead of stalling it. */
  readonly timeoutMs?: number;
}

/** Thrown when no response came: the connection was refused, reset or timed out. */
export class NoResponseError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NoResponseError';
    this.code = code;
  }
}

/**
 * One request on a connection of its own (no keep-alive pool), so a refused or reset connection is
 * reported as such instead of being retried behind the test's back.
 */
export function httpRequest(baseUrl: string, urlPath: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  const { body } = options;
  const payload =
    body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const headers: Record<string, string> = {
    ...(body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)
      ? { 'content-type': 'application/json' }
      : {}),
    ...options.headers,
  };
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request(
      new URL(urlPath, baseUrl),
      { method: options.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error: NodeJS.ErrnoException) => {
          reject(new NoResponseError(error.code ?? 'EBROKEN', `response broken: ${error.message}`, { cause: error }));
        });
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            text,
            ms: performance.now() - started,
            // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
            json: <T>() => JSON.parse(text) as T,
          });
        });
      },
    );
    request.setTimeout(options.timeoutMs ?? 15_000, () => {
      request.destroy(
        new NoResponseError('ETIMEDOUT', `no response to ${urlPath} within ${options.timeoutMs ?? 15_000} ms`),
      );
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      reject(
        error instanceof NoResponseError
          ? error
          : new NoResponseError(error.code ?? 'EUNKNOWN', error.message, { cause: error }),
      );
    });
    request.end(payload);
  });
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Writes `bytes` as they are onto a fresh TCP connection and reads the response until the server
 * closes it (send `connection: close`). For what no HTTP client library will send: invalid
 * UTF-8, control bytes in headers, broken framing.
 */
export function rawRequest(port: number, bytes: Buffer, timeoutMs = 5_000): Promise<RawResponse | undefined> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no complete response within ${timeoutMs} ms to ${JSON.stringify(bytes.subarray(0, 120).toString('latin1'))}`,
        ),
      );
    }, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => {
      // A reset after (or instead of) the response: what was read so far is the answer.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      resolve(data.length === 0 ? undefined : parseResponse(data));
    });
    socket.write(bytes);
  });
}

function parseResponse(input: Buffer): RawResponse {
  let data = input;
  // Interim responses (`100 Continue`) come first; the answer is the final one.
  while (/^HTTP\/1\.[01] 1\d\d /.test(data.subarray(0, 16).toString('latin1')) && data.includes('\r\n\r\n')) {
    data = data.subarray(data.indexOf('\r\n\r\n') + 4);
  }
  const end = data.indexOf('\r\n\r\n');
  const head = data.subarray(0, end === -1 ? data.length : end).toString('latin1');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = end === -1 ? Buffer.alloc(0) : data.subarray(end + 4);
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body: body.toString('utf8') };
}

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd === -1) break;
    const size = parseInt(body.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** A 503 of the database family: the code, a `retry-after` in whole seconds, nothing leaked. */
export function expectUnavailable(
  response: HttpResponse,
  code: 'DATABASE_UNAVAILABLE' | 'POOL_EXHAUSTED' | 'QUERY_TIMEOUT',
): void {
  expectError(response, { statusCode: 503, type: 'ServiceUnavailableError', code });
  expect(response.headers['retry-after'], `retry-after on ${response.text}`).toMatch(/^\d+$/);
}

// ---------------------------------------------------------------------------------------------
// Scratch PostgreSQL servers and server processes of a test's own.

/** A directory of its own under `.data/reliability/`, removed (with everything in it) when the test ends. */
export async function scratchDirectory(onFinished: OnFinished, name: string): Promise<string> {
  const dir = path.join(SCRATCH_ROOT, `${name}-${process.pid}-${uniqueId()}`);
  await fs.mkdir(dir, { recursive: true });
  onFinished(async () => {
    await stopPostgresOf(dir);
    await removeDataDir(dir);
  });
  return dir;
}

export interface ScratchPostgres {
  readonly dataDir: string;
  readonly port: number;
  /** Superuser URL of the maintenance database `postgres`. */
  readonly adminUrl: string;
  /** Superuser URL of the migrated application database `app`. */
  readonly url: string;
  /** Stops the server (fast shutdown: sessions are terminated) and waits until it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same data directory and port. */
  start(): Promise<void>;
}

/**
 * A PostgreSQL server of the test's own, on a fresh data directory and a port of `ports`, with the
 * application database `app` migrated. It is stopped and its files removed when the test ends.
 */
export async function scratchPostgres(
  onFinished: OnFinished,
  name: string,
  ports: readonly [number, number],
): Promise<ScratchPostgres> {
  const dataDir = await scratchDirectory(onFinished, name);
  const port = await freePort(...ports);
  onFinished(async () => {
    releasePort(port);
  });
  let server: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir, port });
  await ensureDatabaseExists(server.url, 'app');
  const url = withDatabaseName(server.url, 'app');
  await migrateToLatest(url);
  return {
    dataDir,
    port,
    adminUrl: server.url,
    url,
    async stop() {
      await server.stop();
    },
    async start() {
      server = await startEmbeddedPostgres({ dataDir, port });
    },
  };
}

/**
 * The PostgreSQL processes serving the cluster under `dataDir`: the postmaster (found by its
 * command line, which names the cluster directory) and its children (backends have rewritten
 * command lines, so they are found by parent).
 */
export function postgresProcessesOf(dataDir: string): number[] {
  const clusterDirs = clusterDirectoriesOf(dataDir);
  const parents = new Map<number, number>();
  const postmasters: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces, so parse from the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      parents.set(pid, Number(fields[1]));
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'postgres' && clusterDirs.some((dir) => argv.includes(dir)))
        postmasters.push(pid);
    } catch {
      // The process ended while we looked.
    }
  }
  const children = [...parents].filter(([, ppid]) => postmasters.includes(ppid)).map(([pid]) => pid);
  return [...postmasters, ...children];
}

/** True while `pid` exists, zombie or not (signal 0 reaches a zombie until it is reaped). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure no PostgreSQL of `dataDir` runs any more: a fast shutdown of the postmaster (SIGINT),
 * then SIGKILL for anything still there after five seconds. For cleanup after tests that killed
 * the server that owned it, or that failed half-way.
 */
export async function stopPostgresOf(dataDir: string): Promise<void> {
  let pids = postgresProcessesOf(dataDir);
  if (pids.length === 0) return;
  for (const pid of pids) {
    try {
      process.kill(pid, pid === pids[0] ? 'SIGINT' : 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && pids.some(processExists)) await sleep(50);
  pids = pids.filter(processExists);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The superuser URL of the embedded server a server process started under `dataDir`. */
export function embeddedUrlOf(dataDir: string, port: number, database = 'app'): string {
  const password = readFileSync(path.join(dataDir, 'postgres.password'), 'utf8').trim();
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

export type { ServerProcess };

export interface ServerOptions {
  readonly dataDir: string;
  readonly port: number;
  readonly pgPort: number;
  readonly env?: Record<string, string>;
}

/**
 * The real server, `node src/server.ts`, as a child process: embedded PostgreSQL under `dataDir`,
 * listening on 127.0.0.1:`port`. Resolves once `/health/ready` answers 200. Killed (SIGKILL)
 * when the test ends if it still runs; its PostgreSQL is stopped by the data directory's cleanup.
 */
export async function startServer(onFinished: OnFinished, options: ServerOptions): Promise<ServerProcess> {
  const server = await startServerProcess({
    port: options.port,
    env: {
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      DATA_DIR: options.dataDir,
      EMBEDDED_PG_PORT: String(options.pgPort),
      JWT_SECRET: TEST_JWT_SECRET,
      ...options.env,
    },
  });
  onFinished(async () => {
    if (server.alive) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
  });
  return server;
}

/** True while a file exists: PostgreSQL's lock file tells whether it thinks it is running. */
export function hasLockFile(dataDir: string): boolean {
  return clusterDirectoriesOf(dataDir).some((dir) => existsSync(path.join(dir, 'postmaster.pid')));
}

/**
 * Where the embedded cluster of `dataDir` may live: inside it, or (as root, when the `postgres`
 * user cannot reach it, as in a clone under /root) outside, keyed by it.
 */
function clusterDirectoriesOf(dataDir: string): string[] {
  return [path.resolve(dataDir, 'postgres'), outsideClusterDirectory(dataDir)];
}

// ---------------------------------------------------------------------------------------------
// The application in this process, on a pool of its own.

export interface PooledApp {
  readonly app: App;
  readonly config: Config;
  readonly pool: pg.Pool;
  readonly db: Database;
  readonly baseUrl: string;
  readonly applicationName: string;
}

/**
 * The real application on a `pg.Pool` of its own to `url` (sized and timed by `env`, like the
 * server's), listening on a port of `ports`. Its connections carry a unique `application_name`,
 * so a test can find them in `pg_stat_activity`. Closed when the test ends. It hashes passwords
 * at the cheap test cost ({@link testHasher}, every limit as configured): these scenarios are about
 * input, pools and races, not what a hash costs, and at OWASP's cost every registration and every
 * login of an unknown email was tens of milliseconds of CPU (hostile-input sends hundreds).
 */
export async function appOnPool(
  onFinished: OnFinished,
  url: string,
  ports: readonly [number, number],
  env: Record<string, string> = {},
): Promise<PooledApp> {
  const applicationName = `reliability-${uniqueId()}`;
  const config = testConfig({ DB_APPLICATION_NAME: applicationName, ...env });
  const poolConfig = { ...config.database, url };
  const pool = createPool(poolConfig);
  const db = createDatabase(poolConfig, { pool });
  const app = await buildApp({
    config,
    db,
    jwtSecret: TEST_JWT_SECRET,
    hasher: testHasher(config),
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: config.database.poolMax,
    }),
  });
  const port = await freePort(...ports);
  onFinished(async () => {
    await app.close();
    await db.destroy();
    releasePort(port);
  });
  await app.listen({ host: '127.0.0.1', port });
  return { app, config, pool, db, baseUrl: `http://127.0.0.1:${port}`, applicationName };
}

/** A password that satisfies the contract. */
export const PASSWORD = 'correct horse battery staple';

export function registration(email: string): { email: string; password: string; name: string } {
  return { email, password: PASSWORD, name: 'Reliable Rita' };
}
