import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig, PoolMode } from '../config/database.ts';
import type { AppError } from '../errors/index.ts';
import { isConnectionLost, translateDatabaseError } from './errors.ts';
import { currentOperation, type QueryEvent } from './instrumentation.ts';
import { isStalePreparedStatement, PreparedStatements } from './prepared-statements.ts';

/** The pool settings {@link createPool} reads; a subset of {@link DatabaseConfig}. */
export type PoolConfig = Pick<
  DatabaseConfig,
  'poolMax' | 'connectionTimeoutMs' | 'idleTimeoutMs' | 'statementTimeoutMs' | 'applicationName'
> & {
  readonly url: string;
  /**
   * Send parameterised queries as named prepared statements (default true in session mode):
   * PostgreSQL parses and plans each distinct query once per connection instead of on every
   * execution. Always off in transaction mode, where the next transaction may run on a server
   * connection that never saw the PREPARE.
   */
  readonly preparedStatements?: boolean;
  /**
   * `session` (default): the connection is ours for its lifetime, so `statement_timeout` is a
   * startup parameter. `transaction` (PgBouncer in transaction mode): nothing may rely on session
   * state. PgBouncer refuses startup parameters it does not track (`statement_timeout` among
   * them), so the timeout is applied with SET LOCAL at the start of every transaction opened by
   * `withTransaction`; single statements outside a transaction get the server's default for the
   * role (set it with `ALTER ROLE … SET statement_timeout`, see docs/scale-out.md).
   */
  readonly poolMode?: PoolMode;
};

/** What the pool wrapper reports: every statement sent, and checkouts that failed. */
export interface PoolHooks {
  readonly onQuery?: ((event: QueryEvent) => void) | undefined;
  readonly onCheckoutError?: ((error: AppError) => void) | undefined;
}

/**
 * A `pg.Pool` sized and timed from the config. Idle-client errors (a restarted server, a
 * terminated backend) are absorbed here: the pool drops that client and the next checkout connects anew.
 *
 * @example
 * ```ts
 * const pool = createPool({ url, poolMax: 10, connectionTimeoutMs: 5000, idleTimeoutMs: 30000,
 *   statementTimeoutMs: 10000, applicationName: 'api' });
 * ```
 */
export function createPool(config: PoolConfig): pg.Pool {
  const sessionTimeout = config.statementTimeoutMs > 0 && (config.poolMode ?? 'session') === 'session';
  const pool = new pg.Pool({
    connectionString: config.url,
    max: config.poolMax,
    connectionTimeoutMillis: config.connectionTimeoutMs,
    idleTimeoutMillis: config.idleTimeoutMs,
    // PgBouncer tracks application_name itself, so it is a valid startup parameter in both modes.
    application_name: config.applicationName,
    ...(sessionTimeout ? { statement_timeout: config.statementTimeoutMs } : {}),
  });
  pool.on('error', () => {
    // An idle client lost its connection; pg-pool has already removed it.
  });
  return pool;
}

/**
 * A small `pg.Pool` for a one-off job (a migration run, a status read, a scratch database), with
 * the same idle-client absorption as {@link createPool}: a backend the server ends while the pool is
 * idle or closing (a restart, `drop database … with (force)` racing `pool.end()`, which resolves
 * before its sockets close) must not become an uncaught `error` event that kills the process.
 */
export function shortLivedPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => {
    // pg-pool has already removed the client; the next query, if any, reports the failure.
  });
  return pool;
}

/**
 * Decorates the pool Kysely checks connections out of, so checkout and query failures surface
 * as AppErrors and every query is reported (see {@link TranslatingClient}).
 */
export class TranslatingPool implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #prepare: boolean;
  readonly #hooks: PoolHooks;
  // Per wrapper: two databases over one pg.Pool keep their own hooks.
  readonly #clients = new WeakMap<pg.PoolClient, TranslatingClient>();
  #ended: Promise<void> | undefined;

  constructor(pool: pg.Pool, prepare: boolean, hooks: PoolHooks) {
    this.#pool = pool;
    this.#prepare = prepare;
    this.#hooks = hooks;
  }

  get options(): pg.PoolConfig {
    return this.#pool.options;
  }

  async connect(): Promise<PostgresPoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      const appError = translateDatabaseError(error);
      this.#hooks.onCheckoutError?.(appError);
      throw appError;
    }
    let wrapped = this.#clients.get(client);
    if (wrapped === undefined) {
      wrapped = new TranslatingClient(client, new PreparedStatements(this.#prepare), this.#hooks.onQuery);
      this.#clients.set(client, wrapped);
    }
    return wrapped;
  }

  /** Idempotent: Kysely's destroy() and the database's may both end it. */
  end(): Promise<void> {
    return (this.#ended ??= this.#pool.end());
  }
}

/**
 * Translates query failures and reports every query to `onQuery`; cursors are not used by this
 * application.
 *
 * It also owns the client's health while the client is checked out. pg-pool listens for a
 * client's `error` events only while the client is idle, and an `error` event nobody listens to
 * crashes the process: a backend terminated between two queries of a transaction (or the socket
 * closing just after a fatal error) would take the whole server down. And a client whose query
 * failed with a fatal error is destroyed on release, instead of going back to the pool to fail
 * the next checkout before its socket has finished closing.
 */
class TranslatingClient implements PostgresPoolClient {
  readonly #client: pg.PoolClient;
  readonly #statements: PreparedStatements;
  readonly #onQuery: ((event: QueryEvent) => void) | undefined;
  #lost = false;

  constructor(
    client: pg.PoolClient,
    statements: PreparedStatements,
    onQuery: ((event: QueryEvent) => void) | undefined,
  ) {
    this.#client = client;
    this.#statements = statements;
    this.#onQuery = onQuery;
    client.on('error', () => {
      this.#lost = true;
    });
  }

  /** `processID` is undocumented in `pg`; Kysely uses it to cancel queries. */
  get processID(): number | undefined {
    return (this.#client as { processID?: number }).processID;
  }

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    sqlOrCursor: string | PostgresCursor<R>,
    parameters: ReadonlyArray<unknown> = [],
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof sqlOrCursor !== 'string') throw new TypeError('Cursor queries are not supported');
    return this.#send<R>(sqlOrCursor, parameters, currentOperation(sqlOrCursor));
  }

  release(destroy?: boolean): void {
    this.#client.release(destroy === true || this.#lost);
  }

  /** Sends one statement for `operation` (read by the caller: pg calls back outside its async context). */
  #send<R>(text: string, parameters: readonly unknown[], operation: string): Promise<PostgresQueryResult<R>> {
    const started = performance.now();
    const name = this.#statements.nameFor(text, parameters.length);
    // pg only reads the values (it maps them while binding); typed mutable, they need no copy.
    const values = parameters as unknown[];
    const config = name === undefined ? { text, values } : { name, text, values };
    return new Promise((resolve, reject) => {
      // pg's types say `Error`; on success it passes null.
      this.#client.query<R & pg.QueryResultRow>(config, (error: Error | null | undefined, result) => {
        let failure: AppError | undefined;
        if (error !== null && error !== undefined) {
          if (isConnectionLost(error) || isStalePreparedStatement(error)) this.#lost = true;
          failure = translateDatabaseError(error);
        }
        try {
          this.#onQuery?.({
            operation,
            durationMs: performance.now() - started,
            outcome: failure?.code ?? 'ok',
            sql: text,
            parameterCount: parameters.length,
          });
        } catch (hookError) {
          // Thrown into pg's socket handler it would take the process down; the query's caller gets it.
          reject(failure ?? (hookError instanceof Error ? hookError : new Error(String(hookError))));
          return;
        }
        if (failure !== undefined) reject(failure);
        // pg types `command` as any string; Kysely only distinguishes the ones in its union.
        else
          resolve({
            command: result.command as PostgresQueryResult<R>['command'],
            rowCount: result.rowCount ?? 0,
            rows: result.rows,
          });
      });
    });
  }
}
