import { AsyncLocalStorage } from 'node:async_hooks';

/** The repository operation a query runs for, e.g. `users.findByEmail`. */
const operationContext = new AsyncLocalStorage<string>();

/** One executed query, labelled for metrics and the slow-query log; never its parameters. */
export interface QueryEvent {
  /** `table.verb` (derived from the SQL), or the label {@link withOperation} gave. */
  readonly operation: string;
  readonly durationMs: number;
  /** `ok`, or the error code of the AppError it failed with (a bounded set). */
  readonly outcome: string;
  readonly sql: string;
  readonly parameterCount: number;
}

/**
 * Runs `fn` with its queries labelled `operation` (for queries outside repositories: health checks,
 * transaction control). Repository queries need nothing: {@link currentOperation} derives their label.
 */
export function withOperation<T>(operation: string, fn: () => T): T {
  return operationContext.run(operation, fn);
}

/** Distinct statements whose label is remembered; the code sends a bounded set of SQL texts. */
const MAX_REMEMBERED = 4_096;
const derived = new Map<string, string>();

/**
 * The label of a statement for metrics and the slow-query log: the one {@link withOperation} set,
 * else `<table>.<verb>` read from the SQL (`users.select`), so a repository written in plain Kysely
 * is labelled without registering anything. Never SQL text or values.
 *
 * @example
 * ```ts
 * currentOperation('select * from "users" where "id" = $1'); // 'users.select'
 * ```
 */
export function currentOperation(sql: string): string {
  const explicit = operationContext.getStore();
  if (explicit !== undefined) return explicit;
  let label = derived.get(sql);
  if (label === undefined) {
    label = labelOf(sql);
    if (derived.size >= MAX_REMEMBERED) derived.clear();
    derived.set(sql, label);
  }
  return label;
}

const VERBS = new Set(['select', 'insert', 'update', 'delete']);
const TOKEN = /"((?:[^"]|"")+)"|([a-z_]+)|([()])/gi;

/**
 * `<table>.<verb>` of the outermost statement (a CTE's own statements are inside parentheses):
 * the table after `insert into`, `update`, `delete from`, or the first `from` of a select;
 * `query.<verb>` when there is none, `statement.<first word>` for anything else.
 */
export function labelOf(sql: string): string {
  let depth = 0;
  let first: string | undefined;
  let verb: string | undefined;
  let expectTable = false;
  for (const match of sql.matchAll(TOKEN)) {
    const [token, quoted, word, paren] = match;
    if (paren !== undefined) depth += paren === '(' ? 1 : -1;
    if (paren !== undefined || depth !== 0) continue;
    const lower = word?.toLowerCase();
    first ??= lower;
    if (verb === undefined) {
      if (lower !== undefined && VERBS.has(lower)) [verb, expectTable] = [lower, lower === 'update'];
    } else if (expectTable) {
      // `"public"."users"`: the name after the last dot is the table.
      if (sql[match.index + token.length] !== '.') return `${(quoted ?? word ?? '').replaceAll('""', '"')}.${verb}`;
    } else if ((lower === 'into' && verb === 'insert') || (lower === 'from' && verb !== 'update')) {
      expectTable = true;
    }
  }
  return verb === undefined ? `statement.${first ?? 'other'}` : `query.${verb}`;
}

export interface QueryLogOptions {
  /** Queries at least this slow are logged at warn. */
  readonly slowQueryMs: number;
  /** Every other query is logged at debug. */
  readonly logQueries: boolean;
}

export interface QueryLogger {
  warn(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

/**
 * The slow-query log: operation, duration and SQL text. Parameter values are never logged (they
 * carry emails and password hashes); only their count is.
 */
export function logQuery(log: QueryLogger, event: QueryEvent, options: QueryLogOptions): void {
  const fields = {
    operation: event.operation,
    durationMs: Math.round(event.durationMs * 100) / 100,
    outcome: event.outcome,
    sql: event.sql,
    parameters: `[${event.parameterCount} redacted]`,
  };
  if (event.durationMs >= options.slowQueryMs) log.warn(fields, 'slow query');
  else if (options.logQueries) log.debug(fields, 'query');
}
