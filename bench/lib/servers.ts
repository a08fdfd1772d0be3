import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ROOT_DIR, type BenchSettings } from './environment.ts';
import { spawnServer, type ServerProcess } from './processes.ts';

/** The GET /users/:id contenders, each a process of its own on its own port. */
export const TARGETS = ['app', 'app-unprepared', 'ours-route', 'raw', 'drizzle'] as const;
export type Target = (typeof TARGETS)[number];

export const TARGET_LABELS: Readonly<Record<Target, string>> = {
  app: 'full app (prepared on)',
  'app-unprepared': 'full app (prepared off)',
  'ours-route': 'ours, bare route',
  raw: 'raw pg route',
  drizzle: 'drizzle route',
};

export const TARGET_DESCRIPTIONS: Readonly<Record<Target, string>> = {
  app: 'src/server.ts: JWT auth (the principal from the cache; +1 query when it misses), metrics, security headers, request log at info to /dev/null',
  'app-unprepared': 'the same with DB_PREPARED_STATEMENTS=false',
  'ours-route': 'tiny Fastify route over createDatabase() + UserRepository.findById (prepared), no auth/log/metrics',
  raw: 'tiny Fastify route, pg.Pool.query(text, [id]) unnamed (the limit)',
  drizzle: 'tiny Fastify route, drizzle-orm/node-postgres select().from(users).where(eq())',
};

/** One secret for every app process, so a token from one is valid on the other. */
export const JWT_SECRET = randomBytes(48).toString('base64url');
/** Likewise for the signing keys' encryption (production requires one). */
export const ENCRYPTION_KEY = randomBytes(32).toString('base64');

export interface AppEnvOptions {
  readonly port: number;
  readonly databaseUrl: string;
  readonly settings: BenchSettings;
  readonly preparedStatements?: boolean;
  /** `info` (every request logged) unless an ablation turns it down. */
  readonly logLevel?: string;
  /** PRINCIPAL_CACHE_SECONDS; the server's default (60) unless an ablation turns it off. */
  readonly principalCacheSeconds?: number;
  /** HASH_THREAD_NICE; the server's default (0) unless an ablation sets it. */
  readonly hashThreadNice?: number;
}

/**
 * The environment of the real server for a benchmark: production mode, info-level request log,
 * default pool (10), rate limits raised out of the way (they would answer 429 after 10 logins),
 * idle pooled connections kept (no reconnect between runs), and a token lifetime longer than the run.
 */
export function appEnv(options: AppEnvOptions): Record<string, string> {
  return {
    NODE_ENV: 'production',
    EMAIL_TRANSPORT: 'log',
    METRICS_PUBLIC: 'true',
    LOG_LEVEL: options.logLevel ?? 'info',
    HOST: '127.0.0.1',
    PORT: String(options.port),
    DATABASE_URL: options.databaseUrl,
    MIGRATE_ON_START: 'false',
    DATA_DIR: options.settings.dataDir,
    JWT_SECRET,
    ENCRYPTION_KEY,
    APP_URL: 'http://localhost:3000',
    // Production requires a WebAuthn relying party since passkeys; no benchmark uses one.
    WEBAUTHN_RP_ID: 'app.example.test',
    WEBAUTHN_ORIGINS: 'https://app.example.test',
    ACCESS_TOKEN_TTL_SECONDS: '7200',
    RATE_LIMIT_LOGIN: '1000000',
    RATE_LIMIT_REGISTER: '1000000',
    RATE_LIMIT_REFRESH: '1000000',
    DB_POOL_MAX: '10',
    DB_IDLE_TIMEOUT_MS: '0',
    DB_PREPARED_STATEMENTS: String(options.preparedStatements ?? true),
    ...(options.principalCacheSeconds === undefined
      ? {}
      : { PRINCIPAL_CACHE_SECONDS: String(options.principalCacheSeconds) }),
    ...(options.hashThreadNice === undefined ? {} : { HASH_THREAD_NICE: String(options.hashThreadNice) }),
  };
}

export function startApp(
  name: string,
  options: AppEnvOptions & {
    cpuProfileDir?: string;
    /** Another checkout's directory (default: this tree). */ root?: string;
  },
): Promise<ServerProcess> {
  return spawnServer({
    name,
    script: path.join(options.root ?? ROOT_DIR, 'src/server.ts'),
    port: options.port,
    env: appEnv(options),
    ...(options.cpuProfileDir === undefined ? {} : { cpuProfileDir: options.cpuProfileDir }),
  });
}

export function startBaseline(
  name: string,
  flavour: 'raw' | 'drizzle' | 'ours',
  port: number,
  databaseUrl: string,
): Promise<ServerProcess> {
  return spawnServer({
    name,
    script: path.join(ROOT_DIR, 'bench/servers/baseline.ts'),
    port,
    env: {
      BASELINE: flavour,
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      DB_POOL_MAX: '10',
      NODE_ENV: 'production',
    },
  });
}

export interface Session {
  readonly accessToken: string;
  readonly refreshToken: string;
}

/** Logs in through the API (the way a client gets its tokens). */
export async function login(baseUrl: string, email: string, password: string): Promise<Session> {
  const response = await fetch(`${baseUrl}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (!response.ok) throw new Error(`login as ${email} answered ${response.status}: ${await response.text()}`);
  const body = (await response.json()) as { accessToken: string; refreshToken: string };
  return { accessToken: body.accessToken, refreshToken: body.refreshToken };
}

/**
 * The servers under test by name, each with the way to start it again. On this shared machine a
 * server may die under another developer's feet (an unexpected exit is logged with its code and
 * signal); the run restarts it, notes the incident in the results, and repeats that measurement.
 */
export class ServerSet {
  readonly #servers = new Map<string, ServerProcess>();
  readonly #starters = new Map<string, () => Promise<ServerProcess>>();
  readonly incidents: string[] = [];

  async add(name: string, start: () => Promise<ServerProcess>): Promise<ServerProcess> {
    this.#starters.set(name, start);
    const server = await start();
    this.#servers.set(name, server);
    return server;
  }

  has(name: string): boolean {
    return this.#servers.has(name);
  }

  get size(): number {
    return this.#servers.size;
  }

  /** The running server, started again first if it died. */
  async get(name: string): Promise<ServerProcess | undefined> {
    const server = this.#servers.get(name);
    const start = this.#starters.get(name);
    if (server === undefined || start === undefined) return undefined;
    if (server.alive) return server;
    this.incidents.push(`${new Date().toISOString()}: ${name} (pid ${server.pid}) had exited; restarted`);
    const restarted = await start();
    this.#servers.set(name, restarted);
    return restarted;
  }
}

export async function startTargetSet(settings: BenchSettings, databaseUrl: string): Promise<ServerSet> {
  const base = settings.portBase;
  const set = new ServerSet();
  await set.add('app', () => startApp('app', { port: base, databaseUrl, settings }));
  await set.add('app-unprepared', () =>
    startApp('app-unprepared', { port: base + 1, databaseUrl, settings, preparedStatements: false }),
  );
  await set.add('ours-route', () => startBaseline('ours-route', 'ours', base + 2, databaseUrl));
  await set.add('raw', () => startBaseline('raw', 'raw', base + 3, databaseUrl));
  await set.add('drizzle', () => startBaseline('drizzle', 'drizzle', base + 4, databaseUrl));
  return set;
}
