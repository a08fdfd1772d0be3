import { parseArgs } from 'node:util';
import { loadConfig, loadEnvFile, type Config } from '../../src/platform/config.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { collectDatabaseStats, type DatabaseStats } from '../db-admin/stats.ts';
import { openDatabaseTarget } from '../../src/platform/db/target.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { displayUrl, errorMessage } from '../../src/platform/cli/target.ts';

const USAGE = `Usage: npm run db:stats -- [--limit N] [--json]
A one-shot summary of the database the server uses (DATABASE_URL or the embedded one): the server
and its connection slots, the pool settings, the application's connections as PostgreSQL sees
them, the slowest statements (when pg_stat_statements is loaded) and the tables. Reads only
statistics views, so it is safe on a production database.
  --limit N   how many of the slowest statements to show (default 10)
  --json      print the figures as JSON instead of text`;

/** Idle in a transaction longer than this holds locks and a connection for nothing: worth a line. */
const IDLE_IN_TRANSACTION_NOTE_MS = 10_000;

/**
 * npm run db:stats — the state of the database for a person at a terminal.
 *
 * @example
 * ```sh
 * npm run db:stats
 * DATABASE_URL=postgres://app@db/app npm run db:stats -- --limit 5 --json
 * ```
 */
async function main(): Promise<number> {
  let values: { limit?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        limit: { type: 'string', default: '10' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    process.stderr.write(`--limit must be an integer from 1 to 1000\n${USAGE}\n`);
    return 2;
  }

  loadEnvFile();
  const config = loadConfig();
  const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
  const db = createDatabase({
    ...config.database,
    url: target.url,
    poolMax: 1,
    applicationName: `${config.database.applicationName} db:stats`,
  });
  try {
    const stats = await collectDatabaseStats(db, {
      applicationName: config.database.applicationName,
      statementLimit: limit,
    });
    if (values.json === true) {
      process.stdout.write(
        `${JSON.stringify({ url: displayUrl(target.url), pool: poolSettings(config), ...stats }, null, 2)}\n`,
      );
    } else {
      const startedHere = target.embedded?.owned === true;
      process.stdout.write(`${report(stats, config, displayUrl(target.url), startedHere).join('\n')}\n`);
    }
    return 0;
  } catch (error) {
    reportFailure('db:stats', error, commandContext());
    return 1;
  } finally {
    await db.destroy();
    await target.close();
  }
}

function poolSettings(config: Config) {
  const { poolMax, connectionTimeoutMs, idleTimeoutMs, statementTimeoutMs, applicationName, slowQueryMs } =
    config.database;
  return { poolMax, connectionTimeoutMs, idleTimeoutMs, statementTimeoutMs, applicationName, slowQueryMs };
}

function report(stats: DatabaseStats, config: Config, url: string, startedHere: boolean): string[] {
  const { server, application, statements, tables } = stats;
  const pool = poolSettings(config);
  const freeSlots = server.maxConnections - server.reservedConnections;
  const migrations =
    server.pendingMigrations.length === 0
      ? 'migrations up to date'
      : `${server.pendingMigrations.length} migration(s) PENDING: ${server.pendingMigrations.join(', ')}`;
  const lines = [
    `Database ${url}`,
    `  PostgreSQL ${server.version}, up ${duration(Date.now() - server.startedAt.getTime())}; ${migrations}`,
    `  size ${bytes(server.databaseBytes)} · cache hit ${server.cacheHitRatio === null ? 'n/a' : percent(server.cacheHitRatio)} · deadlocks ${server.deadlocks}`,
    `  server connections ${server.connections} of ${server.maxConnections} (${server.reservedConnections} reserved for superusers)`,
    '',
    'Pool settings (this environment)',
    `  DB_POOL_MAX ${pool.poolMax} · connection timeout ${pool.connectionTimeoutMs} ms · idle timeout ${pool.idleTimeoutMs} ms · ` +
      `statement timeout ${pool.statementTimeoutMs === 0 ? 'off' : `${pool.statementTimeoutMs} ms`} · slow-query log from ${pool.slowQueryMs} ms`,
    `  at most ${Math.floor(freeSlots / pool.poolMax)} instance(s) with full pools fit in the server's ${freeSlots} connection slots`,
    '',
    `Connections of ${application.applicationName} (pg_stat_activity, every instance)`,
  ];

  if (application.connections.length === 0) {
    lines.push(
      startedHere
        ? '  none: the embedded server was started for this command, so the application is not running'
        : '  none',
    );
  } else {
    const states = Object.entries(application.byState).map(([state, count]) => `${count} ${state}`);
    lines.push(`  ${application.connections.length} connection(s): ${states.join(', ')}`);
    lines.push(
      ...table(
        ['PID', 'STATE', 'FOR', 'IN TRANSACTION', 'WAITING ON', 'CLIENT', 'STATEMENT (current or last)'],
        application.connections.map((c) => [
          String(c.pid),
          c.state,
          c.stateMs === null ? '' : duration(c.stateMs),
          c.transactionMs === null ? '' : duration(c.transactionMs),
          c.waitEvent ?? '',
          c.clientAddress ?? 'local',
          c.query,
        ]),
      ),
    );
    const stuck = application.connections.filter(
      (c) => c.state.startsWith('idle in transaction') && (c.transactionMs ?? 0) > IDLE_IN_TRANSACTION_NOTE_MS,
    );
    if (stuck.length > 0) {
      lines.push(
        `  ! ${stuck.length} connection(s) idle in a transaction for over ${IDLE_IN_TRANSACTION_NOTE_MS / 1000} s: they hold locks and a pool slot`,
      );
    }
    const locked = application.connections.filter((c) => c.waitEvent?.startsWith('Lock:') === true);
    if (locked.length > 0) lines.push(`  ! ${locked.length} connection(s) waiting for a lock`);
  }

  lines.push('');
  if (statements.available) {
    lines.push('Slowest statements (pg_stat_statements, this database, by mean time)');
    lines.push(
      ...(statements.statements.length === 0
        ? ['  none recorded yet']
        : table(
            ['MEAN', 'MAX', 'CALLS', 'TOTAL', 'ROWS', 'STATEMENT'],
            statements.statements.map((s) => [
              duration(s.meanMs),
              duration(s.maxMs),
              String(s.calls),
              duration(s.totalMs),
              String(s.rows),
              s.query,
            ]),
          )),
    );
  } else {
    lines.push('Slowest statements: not available');
    lines.push(`  ${statements.reason}`);
    lines.push(
      '  The slow-query log (SLOW_QUERY_MS) and db_query_duration_seconds on /metrics time every query of the app.',
    );
  }

  lines.push('', 'Tables (row counts are PostgreSQL estimates)');
  lines.push(
    ...(tables.length === 0
      ? ['  none']
      : table(
          ['TABLE', 'ROWS', 'DEAD', 'SIZE', 'SEQ SCANS', 'INDEX SCANS', 'LAST VACUUM', 'LAST ANALYZE'],
          tables.map((t) => [
            t.name,
            String(t.rowEstimate),
            String(t.deadRows),
            bytes(t.totalBytes),
            String(t.sequentialScans),
            String(t.indexScans),
            t.lastVacuum === null ? 'never' : `${duration(Date.now() - t.lastVacuum.getTime())} ago`,
            t.lastAnalyze === null ? 'never' : `${duration(Date.now() - t.lastAnalyze.getTime())} ago`,
          ]),
        )),
  );
  return lines;
}

/** Left-aligned columns, two spaces apart, indented by two; the last column is not padded. */
function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const format = (cells: readonly string[]) =>
    `  ${cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')}`.trimEnd();
  return [format(header), ...rows.map(format)];
}

function bytes(value: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return `${unit === 0 ? scaled : scaled.toFixed(1)} ${units[unit] ?? 'B'}`;
}

function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}

/** `0.04 ms`, `2.5 ms`, `12 ms`, `3.2 s`, `4 min 10 s`, `2 h 5 min`, `3 d 4 h`. */
function duration(ms: number): string {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

process.exitCode = await main();
