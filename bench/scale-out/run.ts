/**
 * `npm run bench:scale-out`: one API instance vs two instances vs two instances through PgBouncer
 * (transaction mode), same machine, same run, interleaved rounds. Throughput (2xx/s) and latency
 * percentiles (p50, p95, p99) of GET /users?limit=20 as an admin: a bearer-token check (one
 * primary-key read) and the keyset listing (one index scan), i.e. the API's typical read path.
 *
 * Two instances get half the connections each (a round-robin load balancer, without its hop);
 * p95 is computed over every response of both. Machine CPU busy time is read from /proc/stat
 * around each measurement: on a 2-core machine that runs the load generator, the instances,
 * PostgreSQL and PgBouncer together, it is the ceiling and the reason the figures are what they are.
 *
 * Everything it starts — an embedded PostgreSQL under BENCH_DATA_DIR (default .data/bench-scale-out)
 * on BENCH_PG_PORT (54415), PgBouncer on BENCH_PGBOUNCER_PORT (6435), the instances on ports in
 * 3450–3499 — is stopped at the end, also after a failure or Ctrl-C. Results go to
 * bench/scale-out/results.json and results.md.
 *
 * Settings: BENCH_SECONDS (10 per measurement), BENCH_CONNECTIONS (32 in total), BENCH_ROUNDS (2),
 * BENCH_POOL_MAX (10 per instance), BENCH_PGBOUNCER_POOL (10 server connections).
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { createDatabase } from '../../src/platform/db/database.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { migrateToLatest } from '../../src/platform/db/migrator.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { startServerProcess, type ServerProcess as Instance } from '../../test/helpers/server-process.ts';
import { startPgBouncer, type PgBouncer } from '../../test/helpers/pgbouncer.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const POOL_MAX = Number(env.BENCH_POOL_MAX ?? 10);
const PGBOUNCER_POOL = Number(env.BENCH_PGBOUNCER_POOL ?? 10);
const PATH = '/users?limit=20';
const DATABASE = 'scale_out_bench';
const SECRET = 'bench-scale-out-secret-of-at-least-32-bytes';
const PASSWORD = 'bench passphrase';
const SEEDED_USERS = 1000;

type Setup = 'one instance' | 'two instances' | 'two instances via PgBouncer';
const SETUPS: readonly Setup[] = ['one instance', 'two instances', 'two instances via PgBouncer'];

interface Measurement {
  readonly setup: Setup;
  readonly round: number;
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly non2xx: number;
  readonly errors: number;
  /** Share of the machine's CPU time that was busy during the measurement. */
  readonly cpuBusy: number;
}

const say = (message: string) => process.stderr.write(`[bench:scale-out] ${message}\n`);
const stoppers: (() => Promise<void>)[] = [];

async function cleanUp(): Promise<void> {
  for (const stop of stoppers.splice(0).reverse())
    await stop().catch((error: unknown) => say(`cleanup: ${String(error)}`));
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanUp().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  const embedded: EmbeddedPostgres = await startEmbeddedPostgres({
    dataDir: path.resolve(ROOT, env.BENCH_DATA_DIR ?? '.data/bench-scale-out'),
    port: Number(env.BENCH_PG_PORT ?? 54415),
    log: say,
  });
  stoppers.push(() => embedded.stop());
  const url = await freshDatabase(embedded.url);
  const bouncer: PgBouncer = await startPgBouncer({
    serverUrl: embedded.url,
    port: Number(env.BENCH_PGBOUNCER_PORT ?? 6435),
    poolMode: 'transaction',
    defaultPoolSize: PGBOUNCER_POOL,
  });
  stoppers.push(() => bouncer.stop());

  const measurements: Measurement[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    // Interleaved, in a different order each round, so drift (other load, caches) spreads evenly.
    const order = round % 2 === 1 ? SETUPS : [...SETUPS].reverse();
    for (const setup of order) {
      const viaBouncer = setup === 'two instances via PgBouncer';
      const instances = await startInstances(
        setup === 'one instance' ? 1 : 2,
        viaBouncer ? bouncer.url(DATABASE) : url,
        viaBouncer,
      );
      try {
        const token = await accessToken(instances[0]?.baseUrl ?? '');
        await load(instances, token, Math.min(3, SECONDS)); // warm-up: JIT, pools, plans
        const measured = await measure(setup, round, instances, token);
        measurements.push(measured);
        say(
          `round ${round}, ${setup}: ${measured.requestsPerSecond.toFixed(0)} req/s, p95 ${measured.p95.toFixed(1)} ms, ` +
            `CPU ${(measured.cpuBusy * 100).toFixed(0)}% busy`,
        );
      } finally {
        await Promise.all(instances.map((instance) => instance.stop()));
        stoppers.splice(stoppers.length - instances.length, instances.length);
      }
    }
  }

  const environment = {
    date: new Date().toISOString(),
    commit: git(['rev-parse', '--short', 'HEAD']),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: await serverVersion(url),
    pgbouncer: execFileSync(existsPgBouncer(), ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '',
    loadAverageBefore: loadBefore.map((value) => Number(value.toFixed(2))),
    loadAverageAfter: os.loadavg().map((value) => Number(value.toFixed(2))),
    settings: {
      seconds: SECONDS,
      connections: CONNECTIONS,
      rounds: ROUNDS,
      poolMaxPerInstance: POOL_MAX,
      pgbouncerPool: PGBOUNCER_POOL,
      path: PATH,
    },
  };
  await fs.writeFile(path.join(HERE, 'results.json'), `${JSON.stringify({ environment, measurements }, null, 2)}\n`);
  await fs.writeFile(path.join(HERE, 'results.md'), report(environment, measurements));
  process.stdout.write(report(environment, measurements));
}

/** Drops and recreates the benchmark's database, migrated and seeded with an admin and SEEDED_USERS users. */
async function freshDatabase(adminUrl: string): Promise<string> {
  const admin = createDatabase({
    url: adminUrl,
    poolMax: 1,
    connectionTimeoutMs: 5000,
    idleTimeoutMs: 1000,
    statementTimeoutMs: 0,
    applicationName: 'bench',
  });
  try {
    const { sql } = await import('kysely');
    await sql.raw(`drop database if exists ${DATABASE} with (force)`).execute(admin);
    await sql.raw(`create database ${DATABASE}`).execute(admin);
  } finally {
    await admin.destroy();
  }
  const url = withDatabaseName(adminUrl, DATABASE);
  await migrateToLatest(url);
  const db = createDatabase({
    url,
    poolMax: 4,
    connectionTimeoutMs: 5000,
    idleTimeoutMs: 1000,
    statementTimeoutMs: 0,
    applicationName: 'bench',
  });
  try {
    const passwordHash = await new PasswordHasher({ concurrency: 1, queueLimit: 1 }).hash(PASSWORD);
    const users = new UserRepository(db);
    await users.create({ email: 'admin@bench.example', name: 'Admin', passwordHash, role: 'admin' });
    for (let i = 0; i < SEEDED_USERS; i++)
      await users.create({ email: `user${i}@bench.example`, name: `User ${i}`, passwordHash });
  } finally {
    await db.destroy();
  }
  return url;
}

async function startInstances(count: number, databaseUrl: string, viaBouncer: boolean): Promise<Instance[]> {
  const instanceEnv = {
    NODE_ENV: 'production',
    EMAIL_TRANSPORT: 'log',
    METRICS_PUBLIC: 'true',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    DB_POOL_MODE: viaBouncer ? 'transaction' : 'session',
    DB_POOL_MAX: String(POOL_MAX),
    MIGRATE_ON_START: 'false',
    JWT_SECRET: SECRET,
    // Every instance must open the same signing keys.
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    APP_URL: 'http://localhost:3000',
    HASH_CONCURRENCY: '1',
  };
  const instances: Instance[] = [];
  for (let i = 0; i < count; i++) {
    const instance = await startServerProcess({ env: instanceEnv, port: [3450, 3499] });
    instances.push(instance);
    stoppers.push(() => instance.stop());
  }
  return instances;
}

async function accessToken(base: string): Promise<string> {
  const response = await fetch(`${base}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'admin@bench.example', password: PASSWORD }),
  });
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { accessToken: string }).accessToken;
}

interface Load {
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly latencies: number[];
}

/** `connections` split evenly over the instances, each with an autocannon of its own, all at once. */
async function load(instances: readonly Instance[], token: string, seconds: number): Promise<Load> {
  const latencies: number[] = [];
  let ok = 0;
  let non2xx = 0;
  const results = await Promise.all(
    instances.map(
      (instance) =>
        new Promise<autocannon.Result>((resolve, reject) => {
          const run = autocannon(
            {
              url: `${instance.baseUrl}${PATH}`,
              connections: Math.max(1, Math.round(CONNECTIONS / instances.length)),
              duration: seconds,
              headers: { authorization: `Bearer ${token}` },
            },
            (error, result) => {
              if (error !== null && error !== undefined)
                reject(error instanceof Error ? error : new Error(String(error)));
              else resolve(result);
            },
          );
          run.on('response', (_client, statusCode, _bytes, responseTime) => {
            if (statusCode >= 200 && statusCode < 300) {
              ok++;
              latencies.push(responseTime);
            } else {
              non2xx++;
            }
          });
        }),
    ),
  );
  return { ok, non2xx, errors: results.reduce((sum, result) => sum + result.errors + result.timeouts, 0), latencies };
}

async function measure(
  setup: Setup,
  round: number,
  instances: readonly Instance[],
  token: string,
): Promise<Measurement> {
  const cpuBefore = cpuTimes();
  const started = performance.now();
  const result = await load(instances, token, SECONDS);
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = cpuTimes();
  const sorted = result.latencies.sort((a, b) => a - b);
  const percentile = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return {
    setup,
    round,
    requestsPerSecond: result.ok / elapsed,
    p50: percentile(0.5),
    p95: percentile(0.95),
    p99: percentile(0.99),
    non2xx: result.non2xx,
    errors: result.errors,
    cpuBusy: (cpuAfter.busy - cpuBefore.busy) / Math.max(1, cpuAfter.total - cpuBefore.total),
  };
}

/** Busy and total jiffies of every CPU since boot (/proc/stat's first line). */
function cpuTimes(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

async function serverVersion(url: string): Promise<string> {
  const db = createDatabase({
    url,
    poolMax: 1,
    connectionTimeoutMs: 5000,
    idleTimeoutMs: 1000,
    statementTimeoutMs: 0,
    applicationName: 'bench',
  });
  try {
    const { sql } = await import('kysely');
    const { rows } = await sql<{ version: string }>`select current_setting('server_version') as version`.execute(db);
    return rows[0]?.version ?? 'unknown';
  } finally {
    await db.destroy();
  }
}

function existsPgBouncer(): string {
  try {
    readFileSync('/usr/sbin/pgbouncer');
    return '/usr/sbin/pgbouncer';
  } catch {
    return 'pgbouncer';
  }
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function report(
  environment: Record<string, unknown> & { settings: Record<string, unknown> },
  measurements: readonly Measurement[],
): string {
  const rows = SETUPS.map((setup) => {
    const runs = measurements.filter((m) => m.setup === setup);
    const fmt = (pick: (m: Measurement) => number, digits: number) => median(runs.map(pick)).toFixed(digits);
    return `| ${setup} | ${fmt((m) => m.requestsPerSecond, 0)} | ${fmt((m) => m.p50, 1)} | ${fmt((m) => m.p95, 1)} | ${fmt((m) => m.p99, 1)} | ${(median(runs.map((m) => m.cpuBusy)) * 100).toFixed(0)}% | ${runs.reduce((sum, m) => sum + m.non2xx + m.errors, 0)} |`;
  });
  const perRound = measurements.map(
    (m) =>
      `| ${m.round} | ${m.setup} | ${m.requestsPerSecond.toFixed(0)} | ${m.p95.toFixed(1)} | ${(m.cpuBusy * 100).toFixed(0)}% |`,
  );
  return [
    `# Scale-out benchmark: GET ${PATH}`,
    '',
    `${String(environment.date)}, commit ${String(environment.commit)}, ${String(environment.cpus)} × ${String(environment.cpuModel)}, ` +
      `Node ${String(environment.node)}, PostgreSQL ${String(environment.postgres)}, ${String(environment.pgbouncer)}; ` +
      `load average before ${JSON.stringify(environment.loadAverageBefore)}, after ${JSON.stringify(environment.loadAverageAfter)}.`,
    `${SECONDS} s per measurement after a warm-up, ${CONNECTIONS} connections in total, ${ROUNDS} interleaved rounds (medians below); ` +
      `DB_POOL_MAX=${POOL_MAX} per instance, PgBouncer default_pool_size=${PGBOUNCER_POOL}.`,
    '',
    '| setup | req/s | p50 ms | p95 ms | p99 ms | machine CPU busy | non-2xx + errors |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '| round | setup | req/s | p95 ms | CPU busy |',
    '|---:|---|---:|---:|---:|',
    ...perRound,
    '',
  ].join('\n');
}

try {
  await main();
} finally {
  await cleanUp();
}
