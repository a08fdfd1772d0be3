import {
  createQueryId,
  type Compilable,
  type CompiledQuery,
  type Kysely,
  type KyselyPlugin,
  type QueryResult,
} from 'kysely';
import type { DB } from './database.ts';

/** Stands in for an argument while the query is compiled; replaced by the value on every execution. */
class Placeholder {
  readonly index: number;

  constructor(index: number) {
    this.index = index;
  }
}

/**
 * A fixed-shape query built and compiled once, then executed with new values.
 *
 * Kysely builds an operation tree and compiles it to SQL on every call; for the short queries of
 * a repository that is a large part of the time Node spends per query. `fixedQuery` calls `build`
 * once, with placeholders for its arguments, keeps the SQL and the parameter positions, and
 * afterwards only substitutes the values: the same SQL text, so the same named prepared
 * statement, on every call.
 *
 * `build` must use each argument only as a value (in `where`, `set`, `values`, …): not branch on
 * it, not call methods on it, not use it as a column or table name. An argument that does not end
 * up as a parameter of the compiled SQL is an error at the first execution. Queries whose shape
 * depends on the arguments (an optional filter) are built per call the usual way.
 *
 * @example
 * ```ts
 * const findUser = fixedQuery((db, id: string) => db.selectFrom('users').selectAll().where('id', '=', id));
 * const user = await findUser.takeFirst(db, id); // db may be a transaction
 * ```
 */
export function fixedQuery<Args extends unknown[], Row>(
  build: (db: Kysely<DB>, ...args: Args) => Compilable<Row>,
): FixedQuery<Args, Row> {
  return new FixedQuery(build);
}

/** SQL compiled for one compilation context, and where each of its parameters comes from. */
interface Compilation<Row> {
  readonly adapter: unknown;
  readonly plugins: readonly KyselyPlugin[];
  readonly compiled: CompiledQuery<Row>;
  /** For each compiled parameter: the argument it takes, or -1 for a constant of the query. */
  readonly sources: readonly number[];
}

/** Distinct contexts one query keeps compiled (root databases, `withSchema` copies); the oldest goes first. */
const MAX_COMPILATIONS = 8;

export class FixedQuery<Args extends unknown[], Row> {
  readonly #build: (db: Kysely<DB>, ...args: Args) => Compilable<Row>;
  #compilations: Compilation<Row>[] = [];

  constructor(build: (db: Kysely<DB>, ...args: Args) => Compilable<Row>) {
    this.#build = build;
  }

  /**
   * Runs the query on `db` (the root database or a transaction) through `db.executeQuery`, with
   * the SQL compiled for `db`'s dialect and plugins: a `withSchema` or `withPlugin` copy gets SQL
   * compiled for it, never the SQL of another instance.
   */
  async execute(db: Kysely<DB>, ...args: Args): Promise<QueryResult<Row>> {
    const { compiled, sources } = this.#compilationFor(db, args.length);
    const parameters = sources.map((source, i) => (source < 0 ? compiled.parameters[i] : args[source]));
    return db.executeQuery<Row>({ sql: compiled.sql, query: compiled.query, queryId: createQueryId(), parameters });
  }

  /** The first row, or undefined when there is none. */
  async takeFirst(db: Kysely<DB>, ...args: Args): Promise<Row | undefined> {
    const { rows } = await this.execute(db, ...args);
    return rows[0];
  }

  /** The first row; for queries that always return one (`insert … returning`). */
  async takeOne(db: Kysely<DB>, ...args: Args): Promise<Row> {
    const { rows } = await this.execute(db, ...args);
    const [row] = rows;
    if (row === undefined)
      throw new Error(`fixedQuery: "${this.#compilations[0]?.compiled.sql ?? ''}" returned no row`);
    return row;
  }

  /** Rows inserted, updated or deleted. */
  async affectedRows(db: Kysely<DB>, ...args: Args): Promise<bigint> {
    const { numAffectedRows } = await this.execute(db, ...args);
    return numAffectedRows ?? 0n;
  }

  /**
   * The compilation for `db`'s context. What shapes the SQL is the dialect (its adapter) and the
   * plugins, in order: a transaction shares both with the database it was opened on (Kysely
   * copies the plugin list, not the plugins), a `withSchema`/`withPlugin` copy does not.
   */
  #compilationFor(db: Kysely<DB>, argCount: number): Compilation<Row> {
    const executor = db.getExecutor();
    const { adapter, plugins } = executor;
    const found = this.#compilations.find(
      (each) =>
        each.adapter === adapter &&
        each.plugins.length === plugins.length &&
        each.plugins.every((plugin, i) => plugin === plugins[i]),
    );
    if (found !== undefined) return found;
    const compilation = {
      adapter,
      plugins: [...plugins],
      ...this.#compile(db, Math.max(this.#build.length - 1, argCount)),
    };
    if (this.#compilations.length >= MAX_COMPILATIONS) this.#compilations.shift();
    this.#compilations.push(compilation);
    return compilation;
  }

  #compile(db: Kysely<DB>, arity: number): { compiled: CompiledQuery<Row>; sources: number[] } {
    const placeholders = Array.from({ length: arity }, (_, i) => new Placeholder(i));
    // The placeholders stand in for values of any type; Kysely only stores them as parameters.
    const compiled = this.#build(db, ...(placeholders as unknown as Args)).compile();
    const sources = compiled.parameters.map((parameter) => (parameter instanceof Placeholder ? parameter.index : -1));
    const unused = placeholders.filter((placeholder) => !sources.includes(placeholder.index));
    if (unused.length > 0) {
      throw new TypeError(
        `fixedQuery: argument ${unused.map((p) => p.index + 1).join(', ')} of "${compiled.sql}" is not a parameter of the query`,
      );
    }
    return { compiled, sources };
  }
}
