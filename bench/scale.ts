/**
 * `npm run bench:scale [-- 10000,100000,...]`: cost as the data grows. For each size N it keeps a
 * database `pgfb_scale_<N>` (seeded once with generate_series, reused by later runs) with N users
 * and N refresh tokens, runs ANALYZE, then measures p50/p95 of every repository query in process
 * and of GET /users/:id, POST /auth/refresh and POST /auth/login over real HTTP, with the plan node
 * each query uses. At the largest size it also measures pruning throughput and GET /users/:id
 * while pruning runs. Writes bench/results/scale.json and scale.md.
 *
 * Embedded PostgreSQL under DATA_DIR (default .data/bench-scale) on EMBEDDED_PG_PORT (54361), or
 * BENCH_DATABASE_URL's server.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import argon2 from 'argon2';
import { CompiledQuery, Kysely, PostgresDialect, type Kysely as KyselyType } from 'kysely';
import pg from 'pg';
import type { DB } from '../db-types/index.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createDatabase, createPool } from '../src/db/database.ts';
import { ensureDatabaseExists, startEmbeddedPostgres, withDatabaseName } from '../src/db/embedded.ts';
import { migrateToLatest } from '../src/db/migrator.ts';
import { PRUNE_RULES } from '../src/repositories/prune.ts';
import { RefreshTokenRepository } from '../src/repositories/refresh-tokens.ts';
import { UserRepository } from '../src/repositories/users.ts';
import { OWASP_ARGON2ID } from '../src/services/passwords.ts';
import { MaintenanceJob } from '../src/workers/maintenance.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const RESULTS = path.join(ROOT, 'bench/results');
const PASSWORD = 'bench password 123';
const JWT_SECRET = 'bench-secret-that-is-at-least-32-bytes-long!';
const SIZES = (process.argv[2] ?? '10000,100000,1000000,10000000').split(',').map(Number);
const ITERATIONS = Number(process.env.BENCH_SCALE_ITERATIONS ?? 300);
const HTTP_ITERATIONS = Number(process.env.BENCH_SCALE_HTTP_ITERATIONS ?? 200);

interface Timing {
  readonly p50: number;
  readonly p95: number;
  readonly plan?: string;
}

interface SizeResult {
  readonly rows: number;
  readonly seedSeconds: number | null;
  readonly queries: Record<string, Timing>;
  readonly http: Record<string, Timing>;
  /** Bytes per million rows of each table and index. */
  readonly sizes: Record<string, number>;
  readonly rssMiB: number;
  readonly bufferHitRatio: number;
  readonly pruning?: { rows: number; seconds: number; rowsPerSecond: number; getUserP95WhilePruning: number };
}

const log = (message: string) => process.stderr.write(`[bench:scale] ${message}\n`);

function percentiles(samples: number[]): { p50: number; p95: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: round(at(0.5)), p95: round(at(0.95)) };
}
const round = (ms: number) => Math.round(ms * 1000) / 1000;

async function timed(iterations: number, run: (i: number) => Promise<unknown>): Promise<{ p50: number; p95: number }> {
  for (let i = 0; i < Math.min(20, iterations); i++) await run(i);
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const started = performance.now();
    await run(i);
    samples.push(performance.now() - started);
  }
  return percentiles(samples);
}

/** N users (one shared real argon2id hash of PASSWORD) and N refresh tokens, one statement each. */
async function seedSize(url: string, rows: number, hash: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: counted } = await client.query<{ n: string }>('select count(*) as n from users');
    if (Number(counted[0]?.n) === rows) return null;
    const started = performance.now();
    await client.query('truncate users cascade');
    // Unlogged-speed bulk load: no per-row FK check needed, the rows are generated consistent.
    await client.query('set session_replication_role = replica');
    await client.query(
      `insert into users (email, password_hash, name, created_at)
       select 'user' || g || '@example.com', $1, 'User ' || g, now() - g * interval '1 second'
       from generate_series(1, $2::int) as g`,
      [hash, rows],
    );
    await client.query(
      `insert into refresh_tokens (user_id, family_id, token_hash, expires_at, created_at)
       select id, id, md5(id::text), now() + interval '30 days', created_at from users`,
    );
    await client.query('set session_replication_role = origin');
    // The user the HTTP requests run as: an admin may read any user.
    await client.query(`update users set role = 'admin' where email = 'user1@example.com'`);
    await client.query('vacuum analyze users');
    await client.query('vacuum analyze refresh_tokens');
    return (performance.now() - started) / 1000;
  } finally {
    await client.end();
  }
}

/** The plan's scan nodes of the query a repository call sends. */
async function planOf(pool: pg.Pool, call: (db: KyselyType<DB>) => Promise<unknown>): Promise<string> {
  const captured: CompiledQuery[] = [];
  const capturing = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (event.level === 'query') captured.push(event.query);
    },
  });
  const trx = await capturing.startTransaction().execute();
  // The log reports the transaction's own BEGIN too.
  captured.length = 0;
  try {
    await call(trx);
    const statement = captured[0];
    if (statement === undefined) return 'none';
    const { rows } = await trx.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      CompiledQuery.raw(`explain (format json) ${statement.sql}`, [...statement.parameters]),
    );
    const plan = rows[0]?.['QUERY PLAN'][0].Plan;
    return plan === undefined
      ? 'none'
      : nodes(plan)
          .filter((node) => node['Node Type'].includes('Scan'))
          .map((node) => `${node['Node Type']}${node['Index Name'] === undefined ? '' : ` (${node['Index Name']})`}`)
          .join(', ') ||
          nodes(plan)[0]?.['Node Type'] ||
          'none';
  } finally {
    await trx.rollback().execute();
  }
}

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Index Name'?: string;
  readonly Plans?: readonly PlanNode[];
}
const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

async function stats(url: string): Promise<{ hit: number; read: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ hit: string; read: string }>(
      'select blks_hit as hit, blks_read as read from pg_stat_database where datname = current_database()',
    );
    return { hit: Number(rows[0]?.hit), read: Number(rows[0]?.read) };
  } finally {
    await client.end();
  }
}

async function relationSizes(url: string, rows: number): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: sizes } = await client.query<{ name: string; bytes: string }>(
      `select c.relname as name, pg_relation_size(c.oid) as bytes from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relkind in ('r', 'i') and c.relname not like 'kysely%'
       order by c.relname`,
    );
    return Object.fromEntries(sizes.map((s) => [s.name, Math.round((Number(s.bytes) * 1e6) / rows)]));
  } finally {
    await client.end();
  }
}

async function measureSize(
  url: string,
  rows: number,
  seedSeconds: number | null,
  largest: boolean,
): Promise<SizeResult> {
  const pool = createPool({
    url,
    poolMax: 4,
    connectionTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    statementTimeoutMs: 60_000,
    applicationName: 'bench-scale',
  });
  const db = createDatabase(
    {
      url,
      poolMax: 4,
      connectionTimeoutMs: 10_000,
      idleTimeoutMs: 10_000,
      statementTimeoutMs: 60_000,
      applicationName: 'bench-scale',
    },
    { pool },
  );
  const before = await stats(url);
  const users = new UserRepository(db);
  const emailOf = (i: number) => `user${1 + ((i * 7919) % rows)}@example.com`;
  const sample = await Promise.all(Array.from({ length: 200 }, (_, i) => users.findByEmail(emailOf(i))));
  const ids = sample.flatMap((user) => (user === undefined ? [] : [user.id]));
  const idOf = (i: number) => ids[i % ids.length] ?? '';
  const cursorAt = async (offset: number) => {
    const { rows: found } = await pool.query<{ created_at: Date; id: string }>(
      'select created_at, id from users order by created_at desc, id desc offset $1 limit 1',
      [offset],
    );
    const row = found[0];
    return row === undefined ? undefined : { createdAt: row.created_at, id: row.id };
  };
  const middle = await cursorAt(Math.floor(rows / 2));
  const end = await cursorAt(rows - 25);
  const now = new Date();

  // Each query with the call that makes it; writes run in a transaction that is rolled back.
  const calls: Record<string, (db: KyselyType<DB>, i: number) => Promise<unknown>> = {
    'users.findById': (d, i) => new UserRepository(d).findById(idOf(i)),
    'users.findByEmail': (d, i) => new UserRepository(d).findByEmail(emailOf(i)),
    'users.list (first page)': (d) => new UserRepository(d).list(50),
    'users.list (middle page)': (d) => new UserRepository(d).list(50, middle),
    'users.list (last page)': (d) => new UserRepository(d).list(50, end),
    'refreshTokens.findByHash': async (d, i) => {
      const id = idOf(i);
      return new RefreshTokenRepository(d).findByHash(await md5(pool, id));
    },
    'refreshTokens.revokeFamily': (d, i) => new RefreshTokenRepository(d).revokeFamily(idOf(i), now),
    'refreshTokens.revokeAllForUser': (d, i) => new RefreshTokenRepository(d).revokeAllForUser(idOf(i), now),
  };
  const hashes = await Promise.all(ids.map((id) => md5(pool, id)));
  calls['refreshTokens.findByHash'] = (d, i) =>
    new RefreshTokenRepository(d).findByHash(hashes[i % hashes.length] ?? '');
  const writes = new Set(['refreshTokens.revokeFamily', 'refreshTokens.revokeAllForUser']);

  const queries: Record<string, Timing> = {};
  for (const [name, call] of Object.entries(calls)) {
    const timing = await timed(ITERATIONS, async (i) => {
      if (!writes.has(name)) return call(db, i);
      const trx = await db.startTransaction().execute();
      try {
        return await call(trx, i);
      } finally {
        await trx.rollback().execute();
      }
    });
    queries[name] = { ...timing, plan: await planOf(pool, (d) => call(d, 0)) };
    log(`${rows}: ${name} p50 ${timing.p50} ms p95 ${timing.p95} ms (${queries[name].plan})`);
  }

  // Over HTTP: the real app on a real socket, production argon2 parameters.
  const app = await buildApp({
    config: loadConfig({
      NODE_ENV: 'production',
      EMAIL_TRANSPORT: 'log',
      METRICS_PUBLIC: 'true',
      JWT_SECRET,
      DATABASE_URL: url,
      LOG_LEVEL: 'silent',
      RATE_LIMIT_LOGIN: '1000000',
      RATE_LIMIT_REFRESH: '1000000',
    }),
    jwtSecret: JWT_SECRET,
    db,
  });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const http: Record<string, Timing> = {};
  const session = await loginAs(address, emailOf(0));
  const getUser = (i: number) =>
    fetch(`${address}/users/${idOf(i)}`, { headers: { authorization: `Bearer ${session.accessToken}` } }).then((r) =>
      r.text(),
    );
  http['GET /users/:id'] = await timed(HTTP_ITERATIONS, getUser);
  let refreshToken = session.refreshToken;
  http['POST /auth/refresh'] = await timed(HTTP_ITERATIONS, async () => {
    const response = await fetch(`${address}/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken }),
    });
    const body = (await response.json()) as { refreshToken: string };
    refreshToken = body.refreshToken;
  });
  http['POST /auth/login'] = await timed(Math.min(40, HTTP_ITERATIONS), (i) => loginAs(address, emailOf(i)));
  for (const [name, timing] of Object.entries(http)) log(`${rows}: ${name} p50 ${timing.p50} ms p95 ${timing.p95} ms`);
  const rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
  const after = await stats(url);
  const bufferHitRatio = round(
    (after.hit - before.hit) / Math.max(1, after.hit - before.hit + after.read - before.read),
  );

  let pruning: SizeResult['pruning'];
  if (largest) pruning = await measurePruning(url, db, rows, getUser);

  await app.close();
  await db.destroy();
  return {
    rows,
    seedSeconds,
    queries,
    http,
    sizes: await relationSizes(url, rows),
    rssMiB,
    bufferHitRatio,
    ...(pruning ? { pruning } : {}),
  };
}

async function md5(pool: pg.Pool, id: string): Promise<string> {
  const { rows } = await pool.query<{ h: string }>('select md5($1::text) as h', [id]);
  return rows[0]?.h ?? '';
}

async function loginAs(address: string, email: string): Promise<{ accessToken: string; refreshToken: string }> {
  const response = await fetch(`${address}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as { accessToken: string; refreshToken: string };
}

/** 10% of the tokens made prunable, deleted by the job while GET /users/:id is measured; then restored. */
async function measurePruning(
  url: string,
  db: Kysely<DB>,
  rows: number,
  getUser: (i: number) => Promise<unknown>,
): Promise<NonNullable<SizeResult['pruning']>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const target = Math.floor(rows / 10);
  await client.query(
    `update refresh_tokens set expires_at = now() - interval '30 days'
     where id in (select id from refresh_tokens order by created_at limit $1)`,
    [target],
  );
  await client.query('analyze refresh_tokens');
  const job = new MaintenanceJob({
    db,
    policy: { refreshTokenGraceSeconds: 86_400, auditRetentionDays: 365, emailOutboxRetentionDays: 30 },
    batchSize: 1000,
    pauseMs: 10,
    rules: PRUNE_RULES,
  });
  const started = performance.now();
  const running = job.runOnce();
  const samples: number[] = [];
  const state = { done: false };
  void running.finally(() => {
    state.done = true;
  });
  for (let i = 0; !state.done; i++) {
    const t = performance.now();
    await getUser(i);
    samples.push(performance.now() - t);
  }
  const report = await running;
  const seconds = (performance.now() - started) / 1000;
  const pruned = report.outcome === 'skipped' ? 0 : Object.values(report.pruned).reduce((a, b) => a + b, 0);
  // Put the deleted tokens back, so the next run finds this size as it was.
  await client.query(
    `insert into refresh_tokens (user_id, family_id, token_hash, expires_at, created_at)
     select u.id, u.id, md5(u.id::text), now() + interval '30 days', u.created_at from users u
     where not exists (select from refresh_tokens t where t.user_id = u.id)`,
  );
  await client.query('vacuum analyze refresh_tokens');
  await client.end();
  return {
    rows: pruned,
    seconds: round(seconds),
    rowsPerSecond: Math.round(pruned / seconds),
    getUserP95WhilePruning: percentiles(samples).p95,
  };
}

async function main(): Promise<void> {
  const dataDir = path.resolve(ROOT, process.env.DATA_DIR ?? '.data/bench-scale');
  const external = process.env.BENCH_DATABASE_URL;
  const embedded =
    external === undefined || external === ''
      ? await startEmbeddedPostgres({ dataDir, port: Number(process.env.EMBEDDED_PG_PORT ?? 54361), log })
      : undefined;
  const serverUrl = embedded?.url ?? external ?? '';
  const hash = await argon2.hash(PASSWORD, { type: argon2.argon2id, ...OWASP_ARGON2ID });
  const previous = readPrevious();
  const results: SizeResult[] = [];
  try {
    for (const rows of SIZES) {
      const name = `pgfb_scale_${rows}`;
      await ensureDatabaseExists(serverUrl, name);
      const url = withDatabaseName(serverUrl, name);
      await migrateToLatest(url);
      log(`${rows}: seeding (reused when present)`);
      const seedSeconds = await seedSize(url, rows, hash);
      log(`${rows}: ${seedSeconds === null ? 'reused' : `seeded in ${seedSeconds.toFixed(1)} s`}`);
      results.push(await measureSize(url, rows, seedSeconds, rows === Math.max(...SIZES)));
      write([...previous.filter((r) => !results.some((n) => n.rows === r.rows)), ...results]);
    }
  } finally {
    await embedded?.stop();
  }
}

function readPrevious(): SizeResult[] {
  try {
    return (JSON.parse(fs.readFileSync(path.join(RESULTS, 'scale.json'), 'utf8')) as { sizes: SizeResult[] }).sizes;
  } catch {
    return [];
  }
}

function write(all: SizeResult[]): void {
  const sizes = [...all].sort((a, b) => a.rows - b.rows);
  const machine = {
    cpus: os.availableParallelism(),
    loadAverage: os.loadavg().map((v) => round(v)),
    at: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(RESULTS, 'scale.json'), `${JSON.stringify({ machine, sizes }, null, 2)}\n`);
  const base = sizes[0];
  const lines = [
    '# Cost as the data grows (`npm run bench:scale`)',
    '',
    `Machine: ${machine.cpus} cores, load average ${machine.loadAverage.join(' / ')} at ${machine.at} (shared with other work: absolute figures are noisy; ratios are of one run).`,
    `Sizes: ${sizes.map((s) => s.rows.toLocaleString('en')).join(', ')} users and as many refresh tokens. p50 / p95 in ms; ratio = p95 / p95 at ${base?.rows.toLocaleString('en') ?? '?'}.`,
    '',
    `| query | ${sizes.map((s) => `${s.rows.toLocaleString('en')} p50 / p95`).join(' | ')} | ratio at largest | plan at largest |`,
    `|---|${sizes.map(() => '---|').join('')}---|---|`,
  ];
  const largest = sizes[sizes.length - 1];
  const row = (name: string, pick: (s: SizeResult) => Timing | undefined) => {
    const first = base === undefined ? undefined : pick(base);
    const last = largest === undefined ? undefined : pick(largest);
    const ratio = first && last ? (last.p95 / first.p95).toFixed(2) : '?';
    lines.push(
      `| ${name} | ${sizes
        .map((s) => {
          const t = pick(s);
          return t ? `${t.p50} / ${t.p95}` : '—';
        })
        .join(' | ')} | ${ratio} | ${last?.plan ?? ''} |`,
    );
  };
  for (const name of Object.keys(base?.queries ?? {})) row(name, (s) => s.queries[name]);
  for (const name of Object.keys(base?.http ?? {})) row(`HTTP ${name}`, (s) => s.http[name]);
  lines.push('', '## On-disk size per million rows (bytes / 10^6 rows, from pg_relation_size)', '');
  const relations = Object.keys(largest?.sizes ?? {});
  lines.push(
    `| relation | ${sizes.map((s) => s.rows.toLocaleString('en')).join(' | ')} |`,
    `|---|${sizes.map(() => '---|').join('')}`,
  );
  for (const relation of relations)
    lines.push(
      `| ${relation} | ${sizes.map((s) => `${((s.sizes[relation] ?? 0) / 2 ** 20).toFixed(1)} MiB`).join(' | ')} |`,
    );
  lines.push('', '## Process and cache', '');
  for (const s of sizes)
    lines.push(
      `- ${s.rows.toLocaleString('en')}: server RSS ${s.rssMiB} MiB, buffer hit ratio ${(s.bufferHitRatio * 100).toFixed(2)}% during the measurements${s.seedSeconds === null ? '' : `, seeded in ${s.seedSeconds.toFixed(1)} s`}`,
    );
  if (largest?.pruning) {
    const p = largest.pruning;
    const without = largest.http['GET /users/:id']?.p95 ?? NaN;
    lines.push(
      '',
      `## Pruning at ${largest.rows.toLocaleString('en')} rows`,
      '',
      `${p.rows.toLocaleString('en')} expired tokens deleted in ${p.seconds} s (${p.rowsPerSecond.toLocaleString('en')} rows/s, batches of 1000, 10 ms pause). GET /users/:id p95 while pruning ${p.getUserP95WhilePruning} ms vs ${without} ms without (${((p.getUserP95WhilePruning / without - 1) * 100).toFixed(0)}%).`,
    );
  }
  lines.push('', 'Reproduce: `npm run bench:scale` (all sizes) or `npm run bench:scale -- 10000,100000`.', '');
  fs.writeFileSync(path.join(RESULTS, 'scale.md'), lines.join('\n'));
}

await main();
