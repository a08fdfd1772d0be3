/**
 * `node bench/layers.ts`: where Node's CPU per query goes, layer by layer, and what one access
 * token verification costs. Unlike the throughput benchmarks this measures CPU µs per operation of
 * this process only (process.cpuUsage), which is steadier on a shared machine.
 *
 * findById, 32 concurrent callers, a pool of 10 each, 7 rounds interleaved (order rotated), medians:
 * raw pg with a named statement; the same compiled query through Kysely's executor; fixedQuery
 * on the root database (the executor plus fixedQuery's own lookup, no hooks, no operation label); UserRepository without hooks (adds the label:
 * AsyncLocalStorage per repository call);
 * UserRepository with the metrics hook (as src/server.ts wires it). And fast-jwt's HS256
 * verification with the app's options, without and with its verified-token cache. And how soon
 * after a committed change to a user the change feed hears it (the principal cache's window).
 *
 * Uses the benchmark's database (`npm run bench` creates and seeds it; DATA_DIR, EMBEDDED_PG_PORT
 * and BENCH_DATABASE_URL as for the other benchmarks). Results are printed, not written.
 */
import { createSigner, createVerifier } from 'fast-jwt';
import { createQueryId } from 'kysely';
import pg from 'pg';
import { fixedQuery } from '../src/platform/db/compiled-query.ts';
import { createDatabase, createPool } from '../src/platform/db/database.ts';
import { UserChangeFeed } from '../src/platform/db/user-changes.ts';
import { AppMetrics } from '../src/platform/metrics/metrics.ts';
import { UserRepository } from '../src/users/users.repository.ts';
import { openBenchDatabase } from './lib/database.ts';
import { log, readSettings } from './lib/environment.ts';
import { median } from './lib/stats.ts';

const CALLERS = 32;
/** Rounds of the query layers (BENCH_ROUNDS, default 7); each runs every variant, the order rotated by one. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

async function cpuPerOperation(
  op: (id: string) => Promise<unknown>,
  ids: readonly string[],
  ms: number,
): Promise<number> {
  const deadline = performance.now() + ms;
  let done = 0;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (performance.now() < deadline) {
        await op(ids[Math.floor(Math.random() * ids.length)] ?? '');
        done++;
      }
    }),
  );
  const cpu = process.cpuUsage(before);
  return (cpu.user + cpu.system) / done;
}

async function queryLayers(url: string): Promise<void> {
  const config = {
    url,
    poolMax: 10,
    connectionTimeoutMs: 10_000,
    idleTimeoutMs: 0,
    statementTimeoutMs: 10_000,
    applicationName: 'bench-layers',
    preparedStatements: true,
  };
  const raw = new pg.Pool({ connectionString: url, max: 10, idleTimeoutMillis: 0 });
  const metrics = new AppMetrics();
  const plain = createDatabase(config, { pool: createPool(config) });
  const hooked = createDatabase(config, {
    pool: createPool(config),
    onQuery: (event) => {
      metrics.observeQuery(event);
    },
  });
  const byId = fixedQuery((db, id: string) => db.selectFrom('users').selectAll().where('id', '=', id));
  const template = plain.selectFrom('users').selectAll().where('id', '=', '').compile();
  const variants: [string, (id: string) => Promise<unknown>][] = [
    [
      'raw pg, named statement',
      (id) => raw.query({ name: 'layers_find', text: 'select * from users where id = $1', values: [id] }),
    ],
    [
      "compiled query through Kysely's executor",
      (id) => plain.executeQuery({ ...template, parameters: [id], queryId: createQueryId() }),
    ],
    ['fixedQuery (root database)', (id) => byId.takeFirst(plain, id)],
    ['+ operation label (UserRepository)', (id) => new UserRepository(plain).findById(id)],
    ['+ metrics hook (as server.ts)', (id) => new UserRepository(hooked).findById(id)],
  ];
  try {
    const ids = (await raw.query<{ id: string }>('select id from users limit 2000')).rows.map((row) => row.id);
    if (ids.length === 0) throw new Error('the bench database has no users: run npm run bench:repo once');
    for (const [, op] of variants) await cpuPerOperation(op, ids, 1000);
    const samples = new Map<string, number[]>();
    for (let round = 0; round < ROUNDS; round++) {
      // Rotated so that no variant always runs first (or right after the same one) in a round.
      const order = [...variants.slice(round % variants.length), ...variants.slice(0, round % variants.length)];
      for (const [name, op] of order)
        samples.set(name, [...(samples.get(name) ?? []), await cpuPerOperation(op, ids, 2500)]);
    }
    console.log(`\nfindById, Node CPU µs per query (median of ${ROUNDS} rounds, order rotated; min–max in brackets):`);
    for (const [name] of variants) {
      const values = samples.get(name) ?? [];
      console.log(
        `  ${name.padEnd(42)} ${median(values).toFixed(1)} (${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)})`,
      );
    }
  } finally {
    await Promise.all([raw.end(), plain.destroy(), hooked.destroy()]);
  }
}

function jwtVerification(): void {
  const key = 'k'.repeat(48);
  const sign = createSigner({ key, algorithm: 'HS256', kid: 'bench', iss: 'iss', aud: 'aud', expiresIn: 900_000 });
  const claims: Record<string, unknown> = { sub: '0193a6f2-1234-4abc-8def-0123456789ab', typ: 'access' };
  const token = sign(claims);
  // The options src/auth/plugin.ts gives @fastify/jwt.
  const options = {
    key,
    algorithms: ['HS256' as const],
    allowedIss: 'iss',
    allowedAud: 'aud',
    requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud', 'typ'],
  };
  const variants: [string, (token: string) => unknown][] = [
    ['fast-jwt verify (as configured)', createVerifier(options)],
    ['fast-jwt verify with cache: 10000', createVerifier({ ...options, cache: 10_000 })],
  ];
  const time = (verify: (token: string) => unknown, n: number) => {
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++) verify(token);
    const cpu = process.cpuUsage(before);
    return (cpu.user + cpu.system) / n;
  };
  for (const [, verify] of variants) time(verify, 20_000);
  console.log('\nAccess token verification, CPU µs per call (median of 5 × 50,000):');
  for (const [name, verify] of variants) {
    console.log(`  ${name.padEnd(38)} ${median(Array.from({ length: 5 }, () => time(verify, 50_000))).toFixed(2)}`);
  }
}

/**
 * How long after an UPDATE of a user has committed (the client got its answer) the change feed
 * hears it: the principal cache's window. 200 updates, one at a time.
 */
async function notificationDelay(url: string): Promise<void> {
  const pending = new Map<string, () => void>();
  const feed = new UserChangeFeed(
    { url, applicationName: 'bench-layers-feed' },
    { onChange: (id) => pending.get(id)?.(), onReset: () => undefined },
  );
  const client = new pg.Client({ connectionString: url });
  await Promise.all([feed.start(), client.connect()]);
  try {
    if (!feed.live) throw new Error('the change feed did not go live');
    const { rows } = await client.query<{ id: string }>('select id from users limit 1');
    const id = rows[0]?.id;
    if (id === undefined) throw new Error('the bench database has no users: run npm run bench:repo once');
    const delays: number[] = [];
    for (let i = 0; i < 200; i++) {
      const heard = new Promise<number>((resolve) =>
        pending.set(id, () => {
          resolve(performance.now());
        }),
      );
      await client.query('update users set updated_at = now() where id = $1', [id]);
      const committed = performance.now();
      delays.push(Math.max(0, (await heard) - committed));
    }
    delays.sort((a, b) => a - b);
    const at = (q: number) =>
      (delays[Math.min(delays.length - 1, Math.floor(q * delays.length))] ?? Number.NaN).toFixed(2);
    console.log('\nChange notification heard after the commit returned, ms (200 updates):');
    console.log(`  median ${at(0.5)}   p95 ${at(0.95)}   max ${at(1)}`);
  } finally {
    await Promise.all([feed.close(), client.end()]);
  }
}

const database = await openBenchDatabase(readSettings());
try {
  log(`layers: ${database.serverVersion} (${database.kind})`);
  await queryLayers(database.url);
  jwtVerification();
  await notificationDelay(database.url);
} finally {
  await database.close();
}
