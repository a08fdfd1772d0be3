import {
  Kysely,
  PostgresDialect,
  type LogEvent,
  type PostgresCursor,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
} from 'kysely';
import pg from 'pg';
import type { DB } from '../../db-types/index.ts';
import type { DatabaseConfig } from '../config.ts';
import { isConnectionLost, translateDatabaseError } from './errors.ts';

export type { DB } from '../../db-types/index.ts';
/** The root database or a transaction: repositories take either. */
export type Database = Kysely<DB>;

/** The pool settings {@link createPool} reads; a subset of {@link DatabaseConfig}. */
export type PoolConfig = Pick<
  DatabaseConfig,
  'poolMax' | 'connectionTimeoutMs' | 'idleTimeoutMs' | 'statementTimeoutMs' | 'applicationName'
> & { readonly url: string };

export interface CreateDatabaseOptions {
  /** Reuse an existing pool (metrics read its counters); by default one is created from the config. */
  readonly pool?: pg.Pool;
  /** Receives every query with its duration (Kysely's `log` hook): slow-query log and metrics. */
  readonly onQuery?: (event: LogEvent) => void;
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
  const pool = new pg.Pool({
    connectionString: config.url,
    max: config.poolMax,
    connectionTimeoutMillis: config.connectionTimeoutMs,
    idleTimeoutMillis: config.idleTimeoutMs,
    application_name: config.applicationName,
    ...(config.statementTimeoutMs > 0 ? { statement_timeout: config.statementTimeoutMs } : {}),
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
  const pool = options.pool ?? createPool(config);
  return new Kysely<DB>({
    dialect: new PostgresDialect({ pool: translatingPool(pool) }),
    ...(options.onQuery === undefined ? {} : { log: options.onQuery }),
  });
}

const wrappedClients = new WeakMap<pg.PoolClient, PostgresPoolClient>();

/** Decorates the pool so checkout and query failures surface as AppErrors. */
function translatingPool(pool: pg.Pool): PostgresPool {
  return {
    options: pool.options,
    async connect() {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw translateDatabaseError(error);
      }
      let wrapped = wrappedClients.get(client);
      if (wrapped === undefined) {
        wrapped = new TranslatingClient(client);
        wrappedClients.set(client, wrapped);
      }
      return wrapped;
    },
    end: () => pool.end(),
  };
}

/**
 * Translates query failures; cursors are not used by this application.
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
  #lost = false;

  constructor(client: pg.PoolClient) {
    this.#client = client;
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
    return this.#run<R>(sqlOrCursor, parameters);
  }

  release(destroy?: boolean): void {
    this.#client.release(destroy === true || this.#lost);
  }

  async #run<R>(text: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> {
    try {
      const result = await this.#client.query<R & pg.QueryResultRow>(text, [...parameters]);
      // pg types `command` as any string; Kysely only distinguishes the ones in its union.
      return { command: result.command as PostgresQueryResult<R>['command'], rowCount: result.rowCount ?? 0, rows: result.rows };
    } catch (error) {
      if (isConnectionLost(error)) this.#lost = true;
      throw translateDatabaseError(error);
    }
  }
}
