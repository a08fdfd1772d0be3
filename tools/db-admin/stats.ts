import { sql, type Kysely } from 'kysely';
import type { DB } from '../../src/platform/db/database.ts';
import { pendingMigrations } from '../../src/platform/db/migrator.ts';

/** The server as a whole: what it is, how big this database is, how full its connection slots are. */
export interface ServerStats {
  readonly version: string;
  readonly database: string;
  readonly databaseBytes: number;
  readonly startedAt: Date;
  readonly maxConnections: number;
  /** Slots only superusers may take (`superuser_reserved_connections` and `reserved_connections`). */
  readonly reservedConnections: number;
  /** Client backends connected to any database of the server. */
  readonly connections: number;
  /** Share of block reads of this database served from shared buffers; null before any read. */
  readonly cacheHitRatio: number | null;
  readonly deadlocks: number;
  readonly pendingMigrations: readonly string[];
}

export interface ApplicationConnection {
  readonly pid: number;
  /** `active`, `idle`, `idle in transaction`, … */
  readonly state: string;
  /** What an active connection waits for, e.g. `Lock:transactionid`; null when it runs or is idle. */
  readonly waitEvent: string | null;
  /** How long it has been in this state: running its statement, idle, idle in its transaction. */
  readonly stateMs: number | null;
  /** How long the open transaction has been open; null outside a transaction. */
  readonly transactionMs: number | null;
  readonly clientAddress: string | null;
  /** The statement, on one line, shortened; parameters appear as $1, $2, never their values. */
  readonly query: string;
}

export interface ApplicationConnections {
  readonly applicationName: string;
  readonly connections: readonly ApplicationConnection[];
  /** Connections by state, e.g. `{ idle: 4, active: 1 }`. */
  readonly byState: Readonly<Record<string, number>>;
}

export interface SlowStatement {
  readonly query: string;
  readonly calls: number;
  readonly meanMs: number;
  readonly maxMs: number;
  readonly totalMs: number;
  readonly rows: number;
}

export type StatementStats =
  | { readonly available: true; readonly statements: readonly SlowStatement[] }
  | { readonly available: false; readonly reason: string };

export interface TableStats {
  readonly name: string;
  /** pg_stat's estimate (`n_live_tup`): no table is scanned to count. */
  readonly rowEstimate: number;
  readonly deadRows: number;
  /** Table, indexes and TOAST. */
  readonly totalBytes: number;
  readonly sequentialScans: number;
  readonly indexScans: number;
  readonly lastVacuum: Date | null;
  readonly lastAnalyze: Date | null;
}

export interface DatabaseStats {
  readonly server: ServerStats;
  readonly application: ApplicationConnections;
  readonly statements: StatementStats;
  readonly tables: readonly TableStats[];
}

export interface DatabaseStatsOptions {
  /** Whose connections to list: the application's `DB_APPLICATION_NAME`. */
  readonly applicationName: string;
  /** How many of the slowest statements to return (default 10). */
  readonly statementLimit?: number;
  /** Statements are cut to this many characters (default 160). */
  readonly queryWidth?: number;
}

/**
 * A one-shot look at the database for a person at a terminal (`npm run db:stats`): the server and
 * its connection slots, the application's connections as PostgreSQL sees them (`pg_stat_activity`
 * by `application_name`, across every instance's pool), the slowest statements when
 * `pg_stat_statements` is loaded, and the size and health of each table. Only reads statistics
 * views: safe on a production database. The caller's own connection is left out of the list.
 *
 * @example
 * ```ts
 * const stats = await collectDatabaseStats(db, { applicationName: 'pg-fastify-backend' });
 * stats.application.byState; // { idle: 9, active: 1 }
 * if (!stats.statements.available) console.log(stats.statements.reason);
 * ```
 */
export async function collectDatabaseStats(db: Kysely<DB>, options: DatabaseStatsOptions): Promise<DatabaseStats> {
  const width = options.queryWidth ?? 160;
  return {
    server: await serverStats(db),
    application: await applicationConnections(db, options.applicationName, width),
    statements: await slowestStatements(db, options.statementLimit ?? 10, width),
    tables: await tableStats(db),
  };
}

async function serverStats(db: Kysely<DB>): Promise<ServerStats> {
  const { rows } = await sql<{
    version: string;
    database: string;
    database_bytes: number;
    started_at: Date;
    max_connections: number;
    reserved_connections: number;
    connections: number;
    cache_hit_ratio: number | null;
    deadlocks: number;
  }>`
    select current_setting('server_version') as version,
           current_database() as database,
           pg_database_size(current_database())::float8 as database_bytes,
           pg_postmaster_start_time() as started_at,
           current_setting('max_connections')::int as max_connections,
           (select coalesce(sum(setting::int), 0)::int from pg_settings
             where name in ('superuser_reserved_connections', 'reserved_connections')) as reserved_connections,
           (select count(*)::int from pg_stat_activity where backend_type = 'client backend') as connections,
           (select case when blks_hit + blks_read = 0 then null else blks_hit::float8 / (blks_hit + blks_read) end
              from pg_stat_database where datname = current_database()) as cache_hit_ratio,
           (select deadlocks::float8 from pg_stat_database where datname = current_database()) as deadlocks
  `.execute(db);
  const row = rows[0];
  if (row === undefined) throw new Error('the server returned no settings');
  return {
    version: row.version,
    database: row.database,
    databaseBytes: row.database_bytes,
    startedAt: row.started_at,
    maxConnections: row.max_connections,
    reservedConnections: row.reserved_connections,
    connections: row.connections,
    cacheHitRatio: row.cache_hit_ratio,
    deadlocks: row.deadlocks,
    pendingMigrations: await pendingMigrations(db),
  };
}

async function applicationConnections(
  db: Kysely<DB>,
  applicationName: string,
  width: number,
): Promise<ApplicationConnections> {
  const { rows } = await sql<{
    pid: number;
    state: string | null;
    wait_event: string | null;
    state_ms: number | null;
    transaction_ms: number | null;
    client_address: string | null;
    query: string;
  }>`
    select pid,
           state,
           case when state = 'active' and wait_event_type is not null then wait_event_type || ':' || wait_event end as wait_event,
           (extract(epoch from clock_timestamp() - state_change) * 1000)::float8 as state_ms,
           (extract(epoch from clock_timestamp() - xact_start) * 1000)::float8 as transaction_ms,
           host(client_addr) as client_address,
           query
      from pg_stat_activity
     where application_name = ${applicationName}
       and datname = current_database()
       and pid <> pg_backend_pid()
     order by state = 'active' desc, query_start asc nulls last
  `.execute(db);
  const connections = rows.map((row) => ({
    pid: row.pid,
    state: row.state ?? 'unknown',
    waitEvent: row.wait_event,
    stateMs: row.state_ms,
    transactionMs: row.transaction_ms,
    clientAddress: row.client_address,
    query: oneLine(row.query, width),
  }));
  const byState: Record<string, number> = {};
  for (const { state } of connections) byState[state] = (byState[state] ?? 0) + 1;
  return { applicationName, connections, byState };
}

async function slowestStatements(db: Kysely<DB>, limit: number, width: number): Promise<StatementStats> {
  const { rows: setup } = await sql<{ installed: boolean; preloaded: string }>`
    select exists (select 1 from pg_extension where extname = 'pg_stat_statements') as installed,
           current_setting('shared_preload_libraries') as preloaded
  `.execute(db);
  const installed = setup[0]?.installed === true;
  const preloaded = (setup[0]?.preloaded ?? '').split(',').some((library) => library.trim() === 'pg_stat_statements');
  if (!preloaded) {
    return {
      available: false,
      reason:
        'pg_stat_statements is not loaded: add it to shared_preload_libraries (postgresql.conf), restart PostgreSQL, then run `create extension pg_stat_statements` in this database.',
    };
  }
  if (!installed) {
    return {
      available: false,
      reason:
        'pg_stat_statements is loaded but not installed here: run `create extension pg_stat_statements` in this database.',
    };
  }
  try {
    // Monitoring and migration tooling (this command included) read the catalogs; the application
    // never does, so statements naming them are left out.
    const { rows } = await sql<{
      query: string;
      calls: number;
      mean_ms: number;
      max_ms: number;
      total_ms: number;
      rows: number;
    }>`
      select query, calls::float8 as calls, mean_exec_time as mean_ms, max_exec_time as max_ms,
             total_exec_time as total_ms, rows::float8 as rows
        from pg_stat_statements
       where dbid = (select oid from pg_database where datname = current_database())
         and query !~* 'pg_(catalog|stat|settings|extension)'
       order by mean_exec_time desc
       limit ${limit}
    `.execute(db);
    return {
      available: true,
      statements: rows.map((row) => ({
        query: oneLine(row.query, width),
        calls: row.calls,
        meanMs: row.mean_ms,
        maxMs: row.max_ms,
        totalMs: row.total_ms,
        rows: row.rows,
      })),
    };
  } catch (error) {
    // No privilege on the view (it needs pg_read_all_stats for other roles' statements), or a
    // version older than PostgreSQL 13 (different column names).
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    return { available: false, reason: `pg_stat_statements could not be read: ${cause}` };
  }
}

async function tableStats(db: Kysely<DB>): Promise<TableStats[]> {
  const { rows } = await sql<{
    name: string;
    row_estimate: number;
    dead_rows: number;
    total_bytes: number;
    seq_scans: number;
    idx_scans: number;
    last_vacuum: Date | null;
    last_analyze: Date | null;
  }>`
    select case when schemaname = current_schema() then relname else schemaname || '.' || relname end as name,
           n_live_tup::float8 as row_estimate,
           n_dead_tup::float8 as dead_rows,
           pg_total_relation_size(relid)::float8 as total_bytes,
           coalesce(seq_scan, 0)::float8 as seq_scans,
           coalesce(idx_scan, 0)::float8 as idx_scans,
           greatest(last_vacuum, last_autovacuum) as last_vacuum,
           greatest(last_analyze, last_autoanalyze) as last_analyze
      from pg_stat_user_tables
     order by pg_total_relation_size(relid) desc, relname
  `.execute(db);
  return rows.map((row) => ({
    name: row.name,
    rowEstimate: row.row_estimate,
    deadRows: row.dead_rows,
    totalBytes: row.total_bytes,
    sequentialScans: row.seq_scans,
    indexScans: row.idx_scans,
    lastVacuum: row.last_vacuum,
    lastAnalyze: row.last_analyze,
  }));
}

function oneLine(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}
