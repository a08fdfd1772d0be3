import {
  Kysely,
  PostgresDialect,
  type PostgresCursor,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
  type QueryResult,
} from 'kysely';
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { DB } from '../../db-types/index.ts';
import type { DatabaseConfig, PoolMode } from '../config.ts';
import type { AppError } from '../errors/index.ts';
import { isConnectionLost, translateDatabaseError } from './errors.ts';
import { currentOperation, type QueryEvent } from './instrumentation.ts';
import { applyStatementTimeoutPerTransaction, observeTransactionRetries } from './transactions.ts';

export type { DB } from '../../db-types/index.ts';
/** The root database or a transaction: repositories take either. */
export type Database = Kysely<DB>;

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

export interface CreateDatabaseOptions {
  /** Reuse an existing pool (metrics read its counters); by default one is created from the config. */
  readonly pool?: pg.Pool;
  /**
   * Told of every statement sent, with its duration and the repository operation it ran for:
   * metrics and the slow-query log. Called by the pool wrapper, so queries Kysely executes and
   * fixed queries run directly (see {@link directRunnerOf}) are reported alike.
   */
  readonly onQuery?: (event: QueryEvent) => void;
  /** Told when no connection could be had (pool exhausted, server down): no query ran, so `onQuery` is not. */
  readonly onCheckoutError?: (error: AppError) => void;
  /** Told of every retry of a unit of work opened on this database (see `withTransaction`). */
  readonly onTransactionRetry?: () => void;
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
 * The application's `Kysely<DB>` over a `pg.Pool`. Every error leaving the driver is already an
 * `AppError` (see `translateDatabaseError`), so nothing above `src/db/` sees a raw `pg` error.
 *
 * @example
 * ```ts
 * const db = createDatabase({ url: 'postgres://localhost/app', poolMax: 10, connectionTimeoutMs: 5000,
 *   idleTimeoutMs: 30000, statementTimeoutMs: 10000, applicationName: 'api' });
 * const user = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
 * await db.destroy(); // ends the pool
 * ```
 */
export function createDatabase(config: PoolConfig, options: CreateDatabaseOptions = {}): Kysely<DB> {
  const transactionMode = config.poolMode === 'transaction';
  if (transactionMode && config.preparedStatements === true) {
    throw new Error('Named prepared statements cannot be used in transaction pool mode (PgBouncer transaction mode)');
  }
  const pool = options.pool ?? createPool(config);
  const prepare = !transactionMode && (config.preparedStatements ?? true);
  const translating = new TranslatingPool(pool, prepare, options);
  const db = new RootDatabase(translating);
  const { onTransactionRetry } = options;
  if (onTransactionRetry !== undefined) observeTransactionRetries(db, onTransactionRetry);
  if (transactionMode && config.statementTimeoutMs > 0)
    applyStatementTimeoutPerTransaction(db, config.statementTimeoutMs);
  return db;
}

/**
 * The root `Kysely<DB>`. Kysely ends the pool on `destroy()` only if it has opened a connection
 * itself, and fixed queries may be all that ever ran on this database (see `directRunnerOf`): the
 * pool is ended here in any case.
 */
class RootDatabase extends Kysely<DB> {
  readonly #pool: TranslatingPool;

  constructor(pool: TranslatingPool) {
    super({ dialect: new PostgresDialect({ pool }) });
    this.#pool = pool;
  }

  /** See {@link directRunnerOf}. */
  readonly runDirect: DirectRunner = (sql, parameters) => this.#pool.run(sql, parameters);

  override async destroy(): Promise<void> {
    await super.destroy();
    await this.#pool.end();
  }
}

/** Runs compiled SQL with its parameters on a connection of the pool and gives it back. */
export type DirectRunner = <R>(sql: string, parameters: readonly unknown[]) => Promise<QueryResult<R>>;

/**
 * For a root database made by {@link createDatabase}: a runner for already-compiled SQL that
 * takes the shortest way through the same pool wrapper Kysely uses (same statement names, error
 * translation and `onQuery` reports), without Kysely's executor, connection provider and result
 * plugins. Undefined for a transaction or a derived instance (`withPlugin`, `withSchema`), which
 * must run through Kysely. `fixedQuery` uses it; nothing else needs to.
 */
export function directRunnerOf(db: Kysely<DB>): DirectRunner | undefined {
  return db instanceof RootDatabase ? db.runDirect : undefined;
}

type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Error };
type Callback<T> = (outcome: Outcome<T>) => void;

/**
 * Decorates the pool so checkout and query failures surface as AppErrors, and queries are
 * reported. Kysely checks connections out with `connect()`; `run()` is the direct way for
 * compiled SQL. Both go through the same {@link TranslatingClient} of each connection; `run()`
 * stays on pg's callbacks with a single promise for the caller, as `pg.Pool#query` does.
 */
class TranslatingPool implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #prepare: boolean;
  readonly #hooks: Pick<CreateDatabaseOptions, 'onCheckoutError' | 'onQuery'>;
  // Per wrapper: two databases over one pg.Pool keep their own hooks.
  readonly #clients = new WeakMap<pg.PoolClient, TranslatingClient>();
  #ended: Promise<void> | undefined;

  constructor(pool: pg.Pool, prepare: boolean, hooks: Pick<CreateDatabaseOptions, 'onCheckoutError' | 'onQuery'>) {
    this.#pool = pool;
    this.#prepare = prepare;
    this.#hooks = hooks;
  }

  get options(): pg.PoolConfig {
    return this.#pool.options;
  }

  connect(): Promise<PostgresPoolClient> {
    return new Promise((resolve, reject) => {
      this.#checkout((outcome) => {
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.error);
      });
    });
  }

  /** One statement on a pooled connection, given back when it is done (see `directRunnerOf`). */
  run<R>(sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
    // Read now: pg-pool calls back in the context of whoever gave the connection back.
    const operation = currentOperation();
    return new Promise((resolve, reject) => {
      this.#checkout((checkout) => {
        if (!checkout.ok) {
          reject(checkout.error);
          return;
        }
        const client = checkout.value;
        client.send<R>(sql, parameters, operation, (outcome) => {
          client.release();
          if (!outcome.ok) {
            reject(outcome.error);
            return;
          }
          // The shape Kysely's PostgresConnection gives.
          const { command, rowCount, rows } = outcome.value;
          const changes = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
          resolve({ rows, numAffectedRows: changes ? BigInt(rowCount) : undefined });
        });
      });
    });
  }

  /** Idempotent: Kysely's destroy() and RootDatabase's may both end it. */
  end(): Promise<void> {
    return (this.#ended ??= this.#pool.end());
  }

  #checkout(callback: Callback<TranslatingClient>): void {
    this.#pool.connect((error, client) => {
      if (error !== undefined || client === undefined) {
        const appError = translateDatabaseError(error);
        this.#hooks.onCheckoutError?.(appError);
        callback({ ok: false, error: appError });
        return;
      }
      let wrapped = this.#clients.get(client);
      if (wrapped === undefined) {
        wrapped = new TranslatingClient(client, this.#prepare, this.#hooks.onQuery);
        this.#clients.set(client, wrapped);
      }
      callback({ ok: true, value: wrapped });
    });
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
  readonly #prepare: boolean;
  readonly #onQuery: ((event: QueryEvent) => void) | undefined;
  /** Statements this connection has prepared; capped so ad-hoc SQL cannot grow it without bound. */
  readonly #prepared = new Set<string>();
  #lost = false;

  constructor(client: pg.PoolClient, prepare: boolean, onQuery: ((event: QueryEvent) => void) | undefined) {
    this.#client = client;
    this.#prepare = prepare;
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
    return new Promise((resolve, reject) => {
      this.send<R>(sqlOrCursor, parameters, currentOperation(), (outcome) => {
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.error);
      });
    });
  }

  release(destroy?: boolean): void {
    this.#client.release(destroy === true || this.#lost);
  }

  /**
   * Sends one statement for `operation` (the caller's label: pg calls back outside the caller's
   * async context); `callback` gets the result, or the failure as an AppError.
   */
  send<R>(
    text: string,
    parameters: readonly unknown[],
    operation: string,
    callback: Callback<PostgresQueryResult<R>>,
  ): void {
    const started = performance.now();
    const name = this.#statementName(text, parameters.length);
    // pg only reads the values (it maps them while binding); typed mutable, they need no copy.
    const values = parameters as unknown[];
    const config = name === undefined ? { text, values } : { name, text, values };
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
        callback({
          ok: false,
          error: failure ?? (hookError instanceof Error ? hookError : new Error(String(hookError))),
        });
        return;
      }
      if (failure !== undefined) callback({ ok: false, error: failure });
      // pg types `command` as any string; Kysely only distinguishes the ones in its union.
      else
        callback({
          ok: true,
          value: {
            command: result.command as PostgresQueryResult<R>['command'],
            rowCount: result.rowCount ?? 0,
            rows: result.rows,
          },
        });
    });
  }

  #statementName(text: string, parameterCount: number): string | undefined {
    // Statements without parameters are transaction control and one-offs: not worth a name.
    if (!this.#prepare || parameterCount === 0) return undefined;
    const name = statementNameOf(text);
    if (this.#prepared.has(name)) return name;
    if (this.#prepared.size >= MAX_PREPARED_PER_CONNECTION) return undefined;
    this.#prepared.add(name);
    return name;
  }
}

const MAX_PREPARED_PER_CONNECTION = 256;
const MAX_NAMES_CACHED = 1024;
const statementNames = new Map<string, string>();

/** A name derived from the SQL text, so the same query gets the same name on every connection. */
function statementNameOf(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `q_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;
    if (statementNames.size >= MAX_NAMES_CACHED) statementNames.clear();
    statementNames.set(text, name);
  }
  return name;
}

/**
 * After DDL changes a table's columns, a prepared `select *` fails with "cached plan must not
 * change result type" on that connection until it is replaced; the connection is retired.
 */
function isStalePreparedStatement(error: unknown): boolean {
  return (error as { code?: unknown }).code === '0A000';
}
