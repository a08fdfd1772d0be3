import { spawn, type ChildProcess } from 'node:child_process';
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
import type { Config } from '../../src/config.ts';
import { createDatabase, createPool, type Database } from '../../src/db/database.ts';
import {
  ensureDatabaseExists,
  startEmbeddedPostgres,
  withDatabaseName,
  type EmbeddedPostgres,
} from '../../src/db/embedded.ts';
import { migrateToLatest } from '../../src/db/migrator.ts';
import type { ErrorBody } from '../../src/errors/index.ts';
import { isPortFree } from '../helpers/processes.ts';
import { TEST_JWT_SECRET, testConfig } from '../helpers/app.ts';

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

/**
 * Polls `check` every `intervalMs` until it returns something other than `undefined`, and returns
 * that; fails naming `what` after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/** A unique token for names: emails, application names, directories. */
export function uniqueId(): string {
  return randomBytes(5).toString('hex');
}

// ---------------------------------------------------------------------------------------------
// Ports: the tests use only their own ranges (3300–3399 for HTTP, 54370–54389 for PostgreSQL),
// and each test file a sub-range of its own, so files running in parallel never compete for one.

const taken = new Set<number>();

/** The first port of `[from, to]` nobody listens on (and this process did not hand out already). */
export async function freePort(from: number, to: number): Promise<number> {
  for (let port = from; port <= to; port++) {
    if (taken.has(port)) continue;
    if (await isPortFree(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`No free port on 127.0.0.1 from ${from} to ${to}`);
}

/** Gives a port of {@link freePort} back, once whatever listened on it is gone. */
export function releasePort(port: number): void {
  taken.delete(port);
}

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

// ---------------------------------------------------------------------------------------------
// What a client may rely on in an error.

/** The error body's `error` object, as the application defines it. */
export type ErrorBodyJson = ErrorBody['error'];

const ERROR_KEYS = new Set(['type', 'message', 'statusCode', 'code', 'requestId', 'field', 'details']);

/** What a driver, SQL or a stack trace looks like; none of it may reach a client. */
export const LEAK =
  /\b(select|insert|update|delete)\b.*\b(from|into|set)\b|violates|constraint|terminating connection|ECONNREFUSED|ECONNRESET|Connection terminated|timeout exceeded|canceling statement|pg_|relation "|SQLSTATE|\bat .+\.(ts|js):\d+/i;

/**
 * Asserts the contract's one error shape on a response: a JSON body `{ error: { type, message,
 * statusCode, code, requestId, field?, details? } }` whose statusCode is the status, whose requestId
 * is the `x-request-id` header, and, for a 5xx, the fixed message and nothing from the driver.
 */
export function expectErrorShape(
  response: {
    status: number;
    headers: Readonly<Record<string, string | string[] | undefined>>;
    text?: string;
    body?: string;
  },
  expected: { status?: number; code?: string | readonly string[]; type?: string } = {},
): ErrorBodyJson {
  const text = response.text ?? response.body ?? '';
  const context = `HTTP ${response.status}: ${text.slice(0, 500)}`;
  if (expected.status !== undefined) expect(response.status, context).toBe(expected.status);
  expect(response.status, context).toBeGreaterThanOrEqual(400);
  expect(String(response.headers['content-type']), context).toMatch(/^application\/json/);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    throw new Error(`the error body is not JSON: ${context}`);
  }
  expect(parsed, context).toBeTypeOf('object');
  expect(Object.keys(parsed as object), context).toEqual(['error']);
  const error = (parsed as { error: ErrorBodyJson }).error;
  for (const key of Object.keys(error))
    expect(ERROR_KEYS.has(key), `unexpected error key ${key} in ${context}`).toBe(true);
  expect(error, context).toMatchObject({
    type: expect.any(String),
    message: expect.any(String),
    statusCode: response.status,
    code: expect.any(String),
    requestId: expect.any(String),
  });
  expect(error.requestId, context).not.toBe('');
  expect(error.requestId, context).toBe(response.headers['x-request-id']);
  if (expected.type !== undefined) expect(error.type, context).toBe(expected.type);
  if (expected.code !== undefined) {
    expect(typeof expected.code === 'string' ? [expected.code] : expected.code, context).toContain(error.code);
  }
  if (response.status >= 500) {
    expect(error.message, context).toBe(response.status === 503 ? 'Service unavailable' : 'Internal server error');
    expect(text, context).not.toMatch(LEAK);
  }
  return error;
}

/** A 503 of the database family: the code, a `retry-after` in whole seconds, nothing leaked. */
export function expectUnavailable(
  response: HttpResponse,
  code: 'DATABASE_UNAVAILABLE' | 'POOL_EXHAUSTED' | 'QUERY_TIMEOUT',
): void {
  expectErrorShape(response, { status: 503, type: 'ServiceUnavailableError', code });
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
    await fs.rm(dir, { recursive: true, force: true });
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
  const clusterDir = path.resolve(dataDir, 'postgres');
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
      if (path.basename(argv[0] ?? '') === 'postgres' && argv.includes(clusterDir)) postmasters.push(pid);
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

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly baseUrl: string;
  /** Resolves when the process has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
}

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
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(options.port),
    DATA_DIR: options.dataDir,
    EMBEDDED_PG_PORT: String(options.pgPort),
    JWT_SECRET: TEST_JWT_SECRET,
    ...options.env,
  };
  const child = spawn(process.execPath, ['src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  onFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });

  const baseUrl = `http://127.0.0.1:${options.port}`;
  let exitedEarly = false;
  const ready = waitFor(
    'the server to become ready',
    async () => {
      if (exitedEarly) return false;
      const response = await httpRequest(baseUrl, '/health/ready', { timeoutMs: 2_000 }).catch(() => undefined);
      return response?.status === 200 ? true : undefined;
    },
    45_000,
    100,
  );
  const failedToStart = exited.then(({ code, signal }) => {
    exitedEarly = true;
    throw new Error(`the server exited (code ${code}, signal ${signal}) before it was ready`);
  });
  await Promise.race([ready, failedToStart]).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}\n--- server output ---\n${output}`, { cause: error });
  });
  // Once ready, an exit is for the test to observe, not a failure to start.
  failedToStart.catch(() => {});
  return { child, port: options.port, baseUrl, exited, output: () => output };
}

/** True while a file exists: PostgreSQL's lock file tells whether it thinks it is running. */
export function hasLockFile(dataDir: string): boolean {
  return existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'));
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
 * so a test can find them in `pg_stat_activity`. Closed when the test ends.
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
