/**
 * In-process repository benchmark: findById and insert through our UserRepository (prepared
 * statements on and off) against raw `pg` (unnamed and named statements), Knex and Drizzle.
 * Same database, pool of 10 each, 32 concurrent callers, ops/s; rounds interleave the variants
 * (rotating their order) so background noise on the shared machine hits every variant alike.
 */
import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import pg from 'pg';
import { createDatabase, createPool } from '../src/platform/db/database.ts';
import { AppMetrics } from '../src/platform/metrics/metrics.ts';
import { UserRepository } from '../src/users/users.repository.ts';
import { users } from './lib/drizzle-schema.ts';
import { CpuMeter, postgresPids } from './lib/cpu.ts';
import { log } from './lib/environment.ts';
import { median } from './lib/stats.ts';

export const POOL_SIZE = 10;
export const CALLERS = 32;

export type Operation = 'findById' | 'insert';

interface NewRow {
  readonly email: string;
  readonly passwordHash: string;
  readonly name: string;
}

interface Variant {
  readonly name: string;
  readonly description: string;
  findById(id: string): Promise<unknown>;
  insert(row: NewRow): Promise<unknown>;
  close(): Promise<void>;
}

const SELECT_USER = 'select * from users where id = $1';
const INSERT_USER = 'insert into users (email, password_hash, name) values ($1, $2, $3) returning *';

function oursVariant(url: string, preparedStatements: boolean): Variant {
  const config = {
    url,
    poolMax: POOL_SIZE,
    connectionTimeoutMs: 10_000,
    idleTimeoutMs: 0,
    statementTimeoutMs: 10_000,
    applicationName: 'bench-repo',
    preparedStatements,
  };
  // Wired as server.ts wires it: every query feeds the metrics histogram.
  const metrics = new AppMetrics();
  const db = createDatabase(config, {
    pool: createPool(config),
    onQuery: (event) => {
      metrics.observeQuery(event);
    },
  });
  const repository = new UserRepository(db);
  return {
    name: preparedStatements ? 'ours (prepared)' : 'ours (unprepared)',
    description: `UserRepository on createDatabase(), DB_PREPARED_STATEMENTS=${preparedStatements}, metrics hook on`,
    findById: (id) => repository.findById(id),
    insert: (row) => repository.create(row),
    close: () => db.destroy(),
  };
}

function rawVariant(url: string, named: boolean): Variant {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, idleTimeoutMillis: 0 });
  return {
    name: named ? 'raw pg (prepared)' : 'raw pg',
    description: named
      ? 'pool.query({ name, text, values }): named prepared statements'
      : 'pool.query(text, values): unnamed, parsed and planned on every execution',
    findById: (id) =>
      named ? pool.query({ name: 'find_user', text: SELECT_USER, values: [id] }) : pool.query(SELECT_USER, [id]),
    insert: (row) => {
      const values = [row.email, row.passwordHash, row.name];
      return named ? pool.query({ name: 'insert_user', text: INSERT_USER, values }) : pool.query(INSERT_USER, values);
    },
    close: () => pool.end(),
  };
}

function knexVariant(url: string): Variant {
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: POOL_SIZE } });
  return {
    name: 'knex',
    description: "knex('users').where('id', id).first(); insert(...).returning('*')",
    findById: (id) => knex('users').where('id', id).first(),
    insert: (row) =>
      knex('users').insert({ email: row.email, password_hash: row.passwordHash, name: row.name }).returning('*'),
    close: () => knex.destroy(),
  };
}

function drizzleVariant(url: string, prepared: boolean): Variant {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, idleTimeoutMillis: 0 });
  const db = drizzle({ client: pool });
  const findPrepared = db
    .select()
    .from(users)
    .where(eq(users.id, sql.placeholder('id')))
    .prepare('drizzle_find_user');
  const insertPrepared = db
    .insert(users)
    .values({ email: sql.placeholder('email'), password_hash: sql.placeholder('hash'), name: sql.placeholder('name') })
    .returning()
    .prepare('drizzle_insert_user');
  return {
    name: prepared ? 'drizzle (.prepare)' : 'drizzle',
    description: prepared
      ? 'drizzle node-postgres, .prepare(name) queries (named statements)'
      : 'drizzle node-postgres, db.select().from(users).where(eq(users.id, id))',
    findById: async (id) =>
      prepared ? (await findPrepared.execute({ id }))[0] : (await db.select().from(users).where(eq(users.id, id)))[0],
    insert: async (row) =>
      prepared
        ? insertPrepared.execute({ email: row.email, hash: row.passwordHash, name: row.name })
        : db.insert(users).values({ email: row.email, password_hash: row.passwordHash, name: row.name }).returning(),
    close: () => pool.end(),
  };
}

export function createVariants(url: string): Variant[] {
  return [
    oursVariant(url, true),
    oursVariant(url, false),
    rawVariant(url, false),
    rawVariant(url, true),
    knexVariant(url),
    drizzleVariant(url, false),
    drizzleVariant(url, true),
  ];
}

interface Measurement {
  readonly opsPerSecond: number;
  /** CPU of this (the Node) process per operation, µs. */
  readonly nodeUsPerOp: number;
  /** CPU of the PostgreSQL server's processes per operation, µs (embedded server only). */
  readonly postgresUsPerOp: number;
}

/** Runs `CALLERS` loops over `op` for `seconds`; ops completed per second and CPU per op. */
async function measure(
  variant: Variant,
  op: Operation,
  seconds: number,
  ids: readonly string[],
  tag: string,
  clusterDir?: string,
): Promise<Measurement> {
  const deadline = performance.now() + seconds * 1000;
  const prefix = `bench-ins-${tag}-${randomBytes(4).toString('hex')}`;
  const passwordHash = '$argon2id$v=19$m=19456,t=2,p=1$not-a-real-hash';
  let completed = 0;
  let sequence = 0;
  const postgresCpu = new CpuMeter(() => postgresPids(clusterDir));
  postgresCpu.start();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const caller = async () => {
    while (performance.now() < deadline) {
      if (op === 'findById') {
        const id = ids[Math.floor(Math.random() * ids.length)] ?? '';
        await variant.findById(id);
      } else {
        const n = sequence++;
        await variant.insert({ email: `${prefix}-${n}@example.com`, passwordHash, name: `Inserted ${n}` });
      }
      completed++;
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, caller));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const postgresMs = postgresCpu.stop();
  return {
    opsPerSecond: completed / elapsed,
    nodeUsPerOp: (cpu.user + cpu.system) / completed,
    postgresUsPerOp: clusterDir === undefined ? Number.NaN : (postgresMs * 1000) / completed,
  };
}

export interface RepoResult {
  readonly variant: string;
  readonly description: string;
  readonly op: Operation;
  readonly rounds: readonly number[];
  readonly median: number;
  readonly nodeUsPerOp: number;
  readonly postgresUsPerOp: number;
}

export interface RepoBenchOptions {
  readonly url: string;
  readonly ids: readonly string[];
  readonly seconds: number;
  readonly rounds: number;
  readonly only?: readonly string[];
  readonly ops?: readonly Operation[];
  readonly clusterDir?: string | undefined;
  /** Called after the warm-up, when the measured rounds begin (profiles mark their window). */
  readonly onRoundsStart?: () => void;
}

export async function runRepoBench(options: RepoBenchOptions): Promise<RepoResult[]> {
  const variants = createVariants(options.url).filter(
    (v) => options.only === undefined || options.only.includes(v.name),
  );
  const ops = options.ops ?? (['findById', 'insert'] as const);
  const samples = new Map<string, Measurement[]>();
  try {
    // Warm-up: every connection of every pool open, statements prepared, code paths optimised.
    log(`repo: warming up ${variants.length} variants`);
    for (const variant of variants) {
      for (const op of ops) await measure(variant, op, Math.min(1, options.seconds), options.ids, 'warm');
    }
    options.onRoundsStart?.();
    for (let round = 0; round < options.rounds; round++) {
      for (const op of ops) {
        // Rotate the order every round: no variant always runs first or last.
        const order = variants.map((_, i) => variants[(i + round) % variants.length]).filter((v) => v !== undefined);
        for (const variant of order) {
          const result = await measure(variant, op, options.seconds, options.ids, `r${round}`, options.clusterDir);
          const key = `${variant.name}|${op}`;
          samples.set(key, [...(samples.get(key) ?? []), result]);
          log(
            `repo: round ${round + 1} ${op.padEnd(8)} ${variant.name.padEnd(20)} ${Math.round(result.opsPerSecond)} ops/s, ` +
              `cpu/op node ${Math.round(result.nodeUsPerOp)}µs pg ${Math.round(result.postgresUsPerOp)}µs`,
          );
        }
      }
    }
  } finally {
    await Promise.all(variants.map((variant) => variant.close()));
  }
  return variants.flatMap((variant) =>
    ops.map((op) => {
      const runs = samples.get(`${variant.name}|${op}`) ?? [];
      const rounds = runs.map((run) => run.opsPerSecond);
      return {
        variant: variant.name,
        description: variant.description,
        op,
        rounds,
        median: median(rounds),
        nodeUsPerOp: median(runs.map((run) => run.nodeUsPerOp)),
        postgresUsPerOp: median(runs.map((run) => run.postgresUsPerOp)),
      };
    }),
  );
}
