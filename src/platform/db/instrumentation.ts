import { AsyncLocalStorage } from 'node:async_hooks';

/** The repository operation a query runs for, e.g. `users.findByEmail`. */
const operationContext = new AsyncLocalStorage<string>();

/** One executed query, labelled for metrics and the slow-query log; never its parameters. */
export interface QueryEvent {
  /** `repository.method`, or `unlabelled` for queries outside a repository. */
  readonly operation: string;
  readonly durationMs: number;
  /** `ok`, or the error code of the AppError it failed with (a bounded set). */
  readonly outcome: string;
  readonly sql: string;
  readonly parameterCount: number;
}

/**
 * Labels every query a repository method runs with `prefix.method`, so metrics can say which
 * operation was slow without ever using SQL text as a label. One call per repository class.
 *
 * @example
 * ```ts
 * export class UserRepository { async findById(id: string) { … } }
 * instrumentRepository(UserRepository, 'users'); // queries of findById are labelled users.findById
 * ```
 */
export function instrumentRepository(target: { prototype: object }, prefix: string): void {
  const prototype = target.prototype as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(prototype)) {
    const method = prototype[name];
    if (name === 'constructor' || typeof method !== 'function') continue;
    const operation = `${prefix}.${name}`;
    Object.defineProperty(prototype, name, {
      configurable: true,
      writable: true,
      value: function (this: unknown, ...args: unknown[]): unknown {
        return operationContext.run(operation, (): unknown => Reflect.apply(method, this, args));
      },
    });
  }
}

/**
 * Runs `fn` with its queries labelled `operation` (for queries outside repositories: health checks).
 */
export function withOperation<T>(operation: string, fn: () => T): T {
  return operationContext.run(operation, fn);
}

/** The operation the current query runs for (see {@link instrumentRepository}). */
export function currentOperation(): string {
  return operationContext.getStore() ?? 'unlabelled';
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
