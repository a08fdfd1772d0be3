import type { Kysely } from 'kysely';
import type { DB } from './database.ts';

// What test/platform/db/query-plans.test.ts checks, declared beside each repository in a sibling
// `<table>.plans.ts`: the test finds every `src/**/*.repository.ts` and `*.plans.ts`, fills the
// tables, and fails when a public repository method has no case or a case reads the wrong index.

/** One call of a repository method and the index its single statement must read through. */
export interface PlanCase<R, S> {
  /** The method's name, then what the call is in parentheses when a method has several shapes. */
  readonly name: string;
  readonly call: (repository: R, sample: S) => Promise<unknown>;
  /**
   * The index the query must read through (or one of several equally bounded ones, where
   * PostgreSQL versions choose differently); undefined for an INSERT, which reads none.
   */
  readonly index: string | readonly string[] | undefined;
  /** Why the table may be read whole by design (it holds a handful of rows however large the installation grows). */
  readonly tinyTable?: string;
}

/** Rows for one table, big enough (with statistics) that the planner's choice means something. */
export interface PlanSeed {
  readonly table: string;
  /** Tables whose seed must run first (the rows this one refers to). */
  readonly after?: readonly string[];
  readonly fill: (db: Kysely<DB>) => Promise<void>;
}

/** The query-plan declarations of one repository class. */
export interface QueryPlans<R, S> {
  readonly repository: new (db: Kysely<DB>) => R;
  readonly seed?: PlanSeed;
  /** Reads, once every table is seeded, the rows the cases look up. */
  readonly sample: (db: Kysely<DB>) => Promise<S>;
  readonly cases: readonly PlanCase<R, S>[];
}

/**
 * Declares a repository's query-plan cases (typed by the repository and the sample).
 *
 * @example
 * ```ts
 * export const projectPlans = queryPlans({
 *   repository: ProjectRepository,
 *   sample: async (db) => ({ userId: (await sampleUser(db)).userId }),
 *   cases: [{ name: 'listOfUser', call: (r, s) => r.listOfUser(s.userId, 21), index: 'projects_user_id_created_at_id_idx' }],
 * });
 * ```
 */
export function queryPlans<R, S>(plans: QueryPlans<R, S>): QueryPlans<R, S> {
  return plans;
}

/** Whether a module export is a {@link queryPlans} declaration. */
export function isQueryPlans(value: unknown): value is QueryPlans<unknown, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    'repository' in value &&
    typeof value.repository === 'function' &&
    'cases' in value &&
    Array.isArray(value.cases)
  );
}
