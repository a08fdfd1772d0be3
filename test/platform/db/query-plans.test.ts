import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import type { DB } from '../../../db-types/index.ts';
import { isQueryPlans, type PlanSeed, type QueryPlans } from '../../../src/platform/db/query-plans.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';

/**
 * Every repository query, run for real against tables big enough (with statistics) that the
 * planner's choice means something, and its plan read back with EXPLAIN (FORMAT JSON). The SQL is
 * what the repositories send (captured through Kysely's query log), not a copy of it. What to run
 * is declared beside each repository, in a sibling `<table>.plans.ts` (src/platform/db/query-plans.ts):
 * the seed of its table, the sample rows, and each method's call with the index it must use. A
 * repository method without a case fails the coverage check; a query that would read a whole
 * table fails its plan check.
 */

const SRC = path.resolve(import.meta.dirname, '../../../src');

type AnyPlans = QueryPlans<unknown, unknown>;

async function sourceFiles(suffix: string): Promise<string[]> {
  return (await readdir(SRC, { recursive: true })).filter((name) => name.endsWith(suffix)).sort();
}

/** Every declaration of every `src/**\/*.plans.ts`, with the file it came from. */
async function declarations(): Promise<{ file: string; plans: AnyPlans }[]> {
  const found: { file: string; plans: AnyPlans }[] = [];
  for (const file of await sourceFiles('.plans.ts')) {
    const exports = (await import(path.join(SRC, file))) as Record<string, unknown>;
    for (const value of Object.values(exports)) if (isQueryPlans(value)) found.push({ file, plans: value });
  }
  return found;
}

/** The seeds in an order where each runs after the tables it names in `after`. */
function seedOrder(seeds: readonly PlanSeed[]): PlanSeed[] {
  const byTable = new Map(seeds.map((seed) => [seed.table, seed]));
  const ordered: PlanSeed[] = [];
  const visit = (seed: PlanSeed, path: readonly string[]) => {
    if (ordered.includes(seed)) return;
    if (path.includes(seed.table)) throw new Error(`seeds depend on each other: ${[...path, seed.table].join(' → ')}`);
    for (const table of seed.after ?? []) {
      const first = byTable.get(table);
      if (first === undefined) throw new Error(`the seed of ${seed.table} runs after ${table}, which has none`);
      visit(first, [...path, seed.table]);
    }
    ordered.push(seed);
  };
  for (const seed of seeds) visit(seed, []);
  return ordered;
}

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly 'Index Name'?: string;
  readonly Plans?: readonly PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

const INDEX_SCANS = new Set(['Index Scan', 'Index Only Scan', 'Bitmap Index Scan']);

/** Fills every declared table (one statement or two each) and gathers statistics. */
async function seed(database: Kysely<DB>, seeds: readonly PlanSeed[]): Promise<void> {
  // Bulk loading may outlast the pool's statement timeout on a busy machine; it is not what is tested.
  await database.transaction().execute(async (db) => {
    await sql`set local statement_timeout = 0`.execute(db);
    for (const each of seedOrder(seeds)) await each.fill(db);
  });
  await sql`analyze ${sql.join(seeds.map((each) => sql.table(each.table)))}`.execute(database);
}

describe('query plans at scale', () => {
  test('every public method of every repository has a plan case beside it', async () => {
    const declared = await declarations();
    const repositories = new Map<unknown, string>();
    const files = await sourceFiles('.repository.ts');
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const exports = (await import(path.join(SRC, file))) as Record<string, unknown>;
      for (const [name, value] of Object.entries(exports)) {
        if (name.endsWith('Repository') && typeof value === 'function') repositories.set(value, `${file}: ${name}`);
      }
    }

    const missing: string[] = [];
    for (const [repository, where] of repositories) {
      const own = declared.filter((each) => each.plans.repository === repository);
      if (own.length === 0) {
        missing.push(`${where} has no queryPlans({ repository: … }) in a sibling .plans.ts`);
        continue;
      }
      const listed = new Set(own.flatMap((each) => each.plans.cases.map((c) => c.name.split(' ')[0])));
      const prototype = (repository as { prototype: object }).prototype;
      for (const method of Object.getOwnPropertyNames(prototype)) {
        if (method !== 'constructor' && !listed.has(method)) missing.push(`${where}.${method} has no plan case`);
      }
    }
    expect(missing).toEqual([]);
    // Every declaration names a repository of a repository file, and one table is seeded once.
    expect(declared.filter((each) => !repositories.has(each.plans.repository)).map((each) => each.file)).toEqual([]);
    const tables = declared.flatMap((each) => (each.plans.seed === undefined ? [] : [each.plans.seed.table]));
    expect(tables.length).toBe(new Set(tables).size);
  });

  // Seeding every table takes seconds, more on a busy machine and with each table a feature adds.
  test(
    'each hot repository query reads through its index, with no sequential scan',
    { timeout: 180_000 },
    async ({ onTestFinished }) => {
      const declared = (await declarations()).map((each) => each.plans);
      const database = await isolatedDatabase(onTestFinished);
      await seed(
        database.db,
        declared.flatMap((plans) => (plans.seed === undefined ? [] : [plans.seed])),
      );
      const samples = new Map<AnyPlans, unknown>();
      for (const plans of declared) samples.set(plans, await plans.sample(database.db));

      // The repositories run on a Kysely that logs every compiled query (SQL and parameters); the
      // pool is the fixture's, closed with it.
      let captured: CompiledQuery[] = [];
      const capturing = new Kysely<DB>({
        dialect: new PostgresDialect({ pool: database.pool }),
        log: (event) => {
          if (event.level === 'query') captured.push(event.query);
        },
      });

      const failures: string[] = [];
      for (const plans of declared) {
        for (const query of plans.cases) {
          const name = `${plans.repository.name}.${query.name}`;
          // In a transaction that is rolled back, so a delete or an update leaves the next query its rows.
          const trx = await capturing.startTransaction().execute();
          captured = [];
          try {
            await query.call(new plans.repository(trx), samples.get(plans));
            expect(captured, `${name} sent one statement`).toHaveLength(1);
            const [statement] = captured;
            if (statement === undefined) continue;
            const explained = await trx.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
              CompiledQuery.raw(`explain (format json) ${statement.sql}`, [...statement.parameters]),
            );
            const plan = explained.rows[0]?.['QUERY PLAN'][0].Plan;
            expect(plan, `${name} has a plan`).toBeDefined();
            if (plan === undefined) continue;
            const nodes = nodesOf(plan);
            const shape = nodes
              .map((node) =>
                [node['Node Type'], node['Index Name'] ?? node['Relation Name']].filter(Boolean).join(' on '),
              )
              .join(' > ');
            if (query.tinyTable === undefined && nodes.some((node) => node['Node Type'] === 'Seq Scan')) {
              failures.push(`${name}: sequential scan (${shape})\n    ${statement.sql}`);
            }
            const accepted: readonly string[] | undefined =
              typeof query.index === 'string' ? [query.index] : query.index;
            if (
              accepted !== undefined &&
              !nodes.some((node) => INDEX_SCANS.has(node['Node Type']) && accepted.includes(node['Index Name'] ?? ''))
            ) {
              failures.push(`${name}: does not use ${accepted.join(' or ')} (${shape})\n    ${statement.sql}`);
            }
            if (
              query.index === undefined &&
              query.tinyTable === undefined &&
              nodes.some((node) => node['Node Type'].includes('Scan'))
            ) {
              failures.push(`${name}: an insert that scans (${shape})`);
            }
          } finally {
            await trx.rollback().execute();
          }
        }
      }
      expect(failures).toEqual([]);

      // The check can fail: on the same data, a lookup by an unindexed column is a sequential scan.
      const unindexed = await database.db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        CompiledQuery.raw(`explain (format json) select * from users where name = $1`, ['User 7']),
      );
      const control = unindexed.rows[0]?.['QUERY PLAN'][0].Plan;
      expect(control === undefined ? [] : nodesOf(control).map((node) => node['Node Type'])).toContain('Seq Scan');
    },
  );
});
