import { setTimeout as sleep } from 'node:timers/promises';
import {
  sql,
  type ControlledTransaction,
  type Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import {
  Migrator,
  NO_MIGRATIONS,
  type Migration,
  type MigrationInfo,
  type MigrationProvider,
  type MigrationResult,
  type MigrationResultSet,
} from 'kysely/migration';

/** The key of Kysely's own migration lock, so every migrator of this database excludes the others. */
export const MIGRATION_LOCK_ID = 3853314791062309107n;

/** A migration file's exports. `transaction = false` runs it on its own, outside any transaction. */
export interface ProjectMigration extends Migration {
  readonly transaction?: boolean;
}

export interface RunnerOptions {
  /** `lock_timeout` of every migration statement: waiting longer would queue the table's queries behind it. */
  readonly lockTimeoutMs: number;
  /** How many times a transactional group that hit its lock timeout is rolled back and tried again. */
  readonly lockRetries: number;
  /** Pause before the first retry; doubled each time. */
  readonly retryDelayMs: number;
  /**
   * `transaction`: behind PgBouncer in transaction mode, where a session-level SET would stay on a
   * pooled server connection; a non-transactional step then gets the role's own `lock_timeout`.
   */
  readonly poolMode: 'session' | 'transaction';
  /** Told about each retry (the CLI and the server print it). */
  readonly onRetry?: (message: string) => void;
  /** Told about a failed run before it is returned (kysely-ctl prints its own, longer report otherwise). */
  readonly onFailure?: (error: Error) => void;
}

interface Step {
  readonly name: string;
  readonly migration: ProjectMigration;
  readonly direction: 'Up' | 'Down';
}

type Plan = (state: { migrations: readonly MigrationInfo[]; executed: readonly string[] }) => readonly Step[] | Error;

/**
 * A failed migration: which one, the SQL statement that failed (when a statement did), and for a
 * migration that ran outside a transaction, the invalid indexes it left behind and what to do.
 */
export class MigrationError extends Error {
  readonly migration: string | undefined;
  /** The SQL that failed, when a statement (not the migration's own code) failed. */
  readonly statement: string | undefined;
  /** Invalid indexes a failed non-transactional migration left behind (CREATE INDEX CONCURRENTLY). */
  readonly invalidIndexes: readonly string[];

  constructor(
    migration: string | undefined,
    cause: unknown,
    statement?: string,
    details: { direction?: 'Up' | 'Down'; transactional?: boolean; invalidIndexes?: string[] } = {},
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const invalidIndexes = details.invalidIndexes ?? [];
    const what = details.direction === 'Down' ? `Undoing migration ${migration ?? ''}` : `Migration ${migration ?? ''}`;
    const lines = [migration === undefined ? `Migrating failed: ${reason}` : `${what} failed: ${reason}`];
    if (statement !== undefined) lines.push(`  failed statement: ${statement}`);
    if (details.transactional === false)
      lines.push(...nonTransactionalAdvice(invalidIndexes, details.direction ?? 'Up'));
    super(lines.join('\n'), { cause });
    this.name = 'MigrationError';
    this.migration = migration;
    this.statement = statement;
    this.invalidIndexes = invalidIndexes;
  }
}

function nonTransactionalAdvice(invalidIndexes: readonly string[], direction: 'Up' | 'Down'): string[] {
  const lines = [
    `  It runs outside a transaction (transaction = false): what it did before the failure stays, and it is still ${direction === 'Up' ? 'pending' : 'applied'}.`,
  ];
  for (const index of invalidIndexes) {
    lines.push(
      `  It left the invalid index ${index} behind (IF NOT EXISTS would skip it, unusable): DROP INDEX CONCURRENTLY ${index};`,
    );
  }
  lines.push(
    `  Fix the cause, undo what it left, then run \`npm run ${direction === 'Up' ? 'migrate' : 'migrate:rollback'}\` again.`,
  );
  return lines;
}

/** An up() with nothing in it: the `npm run migrate:make` template, never written. */
export class UneditedMigrationError extends Error {
  readonly migration: string;

  constructor(migration: string) {
    super(
      `Migration ${migration} is the unedited template: its up() does nothing. ` +
        `Write up and down in migrations/${migration}.ts (or delete the file), then run \`npm run migrate\` again.`,
    );
    this.name = 'UneditedMigrationError';
    this.migration = migration;
  }
}

/**
 * Kysely's Migrator, with the run done here: consecutive migrations run together in one
 * transaction (all or nothing), and a migration exporting `transaction = false` runs alone, on a
 * connection outside any transaction (CREATE INDEX CONCURRENTLY, ALTER TYPE … ADD VALUE used by a
 * later migration, long backfills in batches). The groups before it are committed when it starts.
 *
 * The lock that excludes other migrators is held for the whole run by a transaction on a
 * connection of its own (`pg_advisory_xact_lock`, Kysely's key): it spans the non-transactional
 * steps too, COMMIT or ROLLBACK (or a lost connection) releases it, and it works through
 * PgBouncer in transaction mode, where a session-level lock could leak. kysely-ctl and the server
 * both use this class, so they exclude each other. Needs two connections from `db`.
 *
 * Every statement runs with a `lock_timeout`; a transactional group that times out waiting for a
 * lock is rolled back (so the queries queued behind it go on) and retried a bounded number of times.
 */
/** How long a migrator waits for another one to finish (an hour, like Kysely's own lock). */
const MIGRATION_LOCK_WAIT_MS = 3_600_000;
const MIGRATION_LOCK_POLL_MS = 100;

/**
 * A transaction that holds the migrators' lock, trying again until it is free. Each try is a
 * transaction of its own, rolled back when the lock is taken: CREATE INDEX CONCURRENTLY in the
 * migrator that holds the lock waits for every transaction that had a snapshot when it looked,
 * to its end, so a waiter that stayed in one transaction (blocked in `pg_advisory_xact_lock`, or
 * polling inside it) stalled it until its lock_timeout whenever a poll was in flight at that
 * moment (npm start racing `npm run user:create`; two `npm run migrate` on a loaded machine).
 * Between tries the waiter is in no transaction at all.
 */
async function transactionWithMigrationLock(db: Kysely<unknown>): Promise<ControlledTransaction<unknown>> {
  const deadline = Date.now() + MIGRATION_LOCK_WAIT_MS;
  for (;;) {
    const holder = await db.startTransaction().execute();
    try {
      const { rows } = await sql<{ locked: boolean }>`
        select pg_try_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_ID)}) as locked`.execute(holder);
      if (rows[0]?.locked === true) return holder;
    } catch (error) {
      await holder
        .rollback()
        .execute()
        .catch(() => undefined);
      throw error;
    }
    await holder.rollback().execute();
    if (Date.now() > deadline) throw new Error('Timed out waiting for another migrator to finish');
    await sleep(MIGRATION_LOCK_POLL_MS);
  }
}

export class SchemaMigrator extends Migrator {
  readonly #db: Kysely<unknown>;
  readonly #options: RunnerOptions;

  constructor(db: Kysely<unknown>, provider: MigrationProvider, options: RunnerOptions) {
    super({ db, provider });
    this.#db = db;
    this.#options = options;
  }

  override async migrateToLatest(): Promise<MigrationResultSet> {
    return this.#run(({ migrations }) => pendingSteps(migrations, Infinity));
  }

  override async migrateUp(): Promise<MigrationResultSet> {
    return this.#run(({ migrations }) => pendingSteps(migrations, 1));
  }

  override async migrateDown(): Promise<MigrationResultSet> {
    return this.#run((state) => downSteps(state, 1));
  }

  override async migrateTo(target: string | typeof NO_MIGRATIONS): Promise<MigrationResultSet> {
    return this.#run((state) => {
      if (typeof target !== 'string') return downSteps(state, Infinity);
      const executedIndex = state.executed.indexOf(target);
      if (executedIndex !== -1) return downSteps(state, state.executed.length - executedIndex - 1);
      const pending = state.migrations.filter((migration) => migration.executedAt === undefined);
      const pendingIndex = pending.findIndex((migration) => migration.name === target);
      if (pendingIndex !== -1) return pendingSteps(state.migrations, pendingIndex + 1);
      return new Error(`migration "${target}" doesn't exist`);
    });
  }

  async #run(plan: Plan): Promise<MigrationResultSet> {
    let holder: ControlledTransaction<unknown>;
    try {
      holder = await transactionWithMigrationLock(this.#db);
    } catch (error) {
      return this.#reported({ error });
    }
    try {
      await ensureBookkeeping(this.#db);
      const migrations = await this.getMigrations();
      const executed = executedInOrder(migrations);
      const steps = plan({ migrations, executed });
      const resultSet = steps instanceof Error ? { error: steps } : await this.#runSteps(steps);
      await holder.commit().execute();
      return this.#reported(resultSet);
    } catch (error) {
      await holder
        .rollback()
        .execute()
        .catch(() => undefined);
      return this.#reported({ error });
    }
  }

  #reported(resultSet: MigrationResultSet): MigrationResultSet {
    const { error } = resultSet;
    if (error !== undefined && this.#options.onFailure !== undefined) {
      this.#options.onFailure(error instanceof Error ? error : new MigrationError(undefined, error));
    }
    return resultSet;
  }

  async #runSteps(steps: readonly Step[]): Promise<MigrationResultSet> {
    const results: MigrationResult[] = steps.map(({ name, direction }) => ({
      migrationName: name,
      direction,
      status: 'NotExecuted',
    }));
    const unedited = steps.find((step) => step.direction === 'Up' && isEmptyFunction(step.migration));
    if (unedited !== undefined) return { error: new UneditedMigrationError(unedited.name), results };

    let start = 0;
    for (const group of groupByTransactionMode(steps)) {
      const indexes = group.steps.map((_, offset) => start + offset);
      const error = group.transactional ? await this.#runInTransaction(group.steps) : await this.#runAlone(group.steps);
      if (error !== undefined) {
        const failed = error.migration === undefined ? undefined : steps.findIndex((s) => s.name === error.migration);
        if (failed !== undefined && failed !== -1) {
          results[failed] = {
            ...results[failed],
            migrationName: error.migration ?? '',
            status: 'Error',
          } as MigrationResult;
        }
        return { error, results };
      }
      for (const index of indexes) results[index] = { ...(results[index] as MigrationResult), status: 'Success' };
      start += group.steps.length;
    }
    return { results };
  }

  /** One transaction for the group; rolled back and retried whole when a lock could not be had in time. */
  async #runInTransaction(steps: readonly Step[]): Promise<MigrationError | undefined> {
    for (let attempt = 0; ; attempt += 1) {
      const recorder = new StatementRecorder();
      let current: Step | undefined;
      try {
        await this.#db.transaction().execute(async (trx) => {
          await sql`select set_config('lock_timeout', ${String(this.#options.lockTimeoutMs)}, true)`.execute(trx);
          for (const step of steps) {
            current = step;
            await runStep(trx.withPlugin(recorder), step);
          }
        });
        return undefined;
      } catch (error) {
        const statement = recorder.failedStatement(this.#db);
        if (isLockTimeout(error) && attempt < this.#options.lockRetries) {
          const delay = this.#options.retryDelayMs * 2 ** attempt;
          this.#options.onRetry?.(
            `Migration ${current?.name ?? ''} could not get a lock within ${this.#options.lockTimeoutMs} ms ` +
              `(${statement ?? 'unknown statement'}); rolled back, retry ${attempt + 1} of ${this.#options.lockRetries} in ${delay} ms`,
          );
          await sleep(delay);
          continue;
        }
        return new MigrationError(current?.name, lockAdvice(error, this.#options), statement, {
          direction: current?.direction,
        });
      }
    }
  }

  /** A migration with `transaction = false`, alone on one connection, in autocommit. */
  async #runAlone(steps: readonly Step[]): Promise<MigrationError | undefined> {
    const [step] = steps;
    if (step === undefined) return undefined;
    const recorder = new StatementRecorder();
    return this.#db.connection().execute(async (connection) => {
      const setsTimeout = this.#options.poolMode === 'session';
      if (setsTimeout) {
        await sql`select set_config('lock_timeout', ${String(this.#options.lockTimeoutMs)}, false)`.execute(connection);
      }
      const invalidBefore = new Set(await invalidIndexes(connection));
      try {
        await runStep(connection.withPlugin(recorder), step);
        return undefined;
      } catch (error) {
        const statement = recorder.failedStatement(this.#db);
        const leftBehind = (await invalidIndexes(connection)).filter((index) => !invalidBefore.has(index));
        return new MigrationError(step.name, lockAdvice(error, this.#options, false), statement, {
          direction: step.direction,
          transactional: false,
          invalidIndexes: leftBehind,
        });
      } finally {
        if (setsTimeout) await sql`reset lock_timeout`.execute(connection).catch(() => undefined);
      }
    });
  }
}

async function runStep(db: Kysely<unknown>, step: Step): Promise<void> {
  if (step.direction === 'Up') {
    await step.migration.up(db);
    const timestamp = new Date().toISOString();
    await sql`insert into kysely_migration (name, timestamp) values (${step.name}, ${timestamp})`.execute(db);
    return;
  }
  if (step.migration.down === undefined) throw new Error(`migration ${step.name} has no down() to undo it`);
  await step.migration.down(db);
  await sql`delete from kysely_migration where name = ${step.name}`.execute(db);
}

function pendingSteps(migrations: readonly MigrationInfo[], count: number): Step[] {
  return migrations
    .filter((migration) => migration.executedAt === undefined)
    .slice(0, count)
    .map(({ name, migration }) => ({ name, migration, direction: 'Up' }));
}

function downSteps(
  state: { migrations: readonly MigrationInfo[]; executed: readonly string[] },
  count: number,
): Step[] {
  return state.executed
    .toReversed()
    .slice(0, count)
    .flatMap((name) => {
      const info = state.migrations.find((migration) => migration.name === name);
      return info === undefined ? [] : [{ name, migration: info.migration, direction: 'Down' as const }];
    });
}

/** Applied migrations, in the order they were applied (Kysely's order: by time, then by name). */
function executedInOrder(migrations: readonly MigrationInfo[]): string[] {
  return migrations
    .flatMap((migration) => (migration.executedAt === undefined ? [] : [migration]))
    .sort(
      (a, b) =>
        (a.executedAt?.getTime() ?? 0) - (b.executedAt?.getTime() ?? 0) ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    )
    .map((migration) => migration.name);
}

function groupByTransactionMode(steps: readonly Step[]): { transactional: boolean; steps: Step[] }[] {
  const groups: { transactional: boolean; steps: Step[] }[] = [];
  for (const step of steps) {
    const transactional = step.migration.transaction !== false;
    const last = groups.at(-1);
    if (transactional && last?.transactional === true) last.steps.push(step);
    else groups.push({ transactional, steps: [step] });
  }
  return groups;
}

/** Kysely's bookkeeping tables, as its Migrator creates them; run under the run's lock, so never raced. */
async function ensureBookkeeping(db: Kysely<unknown>): Promise<void> {
  await sql`create table if not exists kysely_migration (name varchar(255) not null primary key, timestamp varchar(255) not null)`.execute(
    db,
  );
  await sql`create table if not exists kysely_migration_lock (id varchar(255) not null primary key, is_locked integer not null default 0)`.execute(
    db,
  );
  await sql`insert into kysely_migration_lock (id, is_locked) values ('migration_lock', 0) on conflict do nothing`.execute(
    db,
  );
}

/** Invalid indexes in the database: what a failed CREATE INDEX CONCURRENTLY leaves. */
export async function invalidIndexes(db: Kysely<unknown>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_index i join pg_class c on c.oid = i.indexrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not i.indisvalid and n.nspname = current_schema() order by c.relname
  `.execute(db);
  return rows.map((row) => row.name);
}

function isLockTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '55P03';
}

/** A lock timeout says which setting let it go and how to retry; any other error passes unchanged. */
function lockAdvice(error: unknown, options: RunnerOptions, retried = true): unknown {
  if (!isLockTimeout(error) || !(error instanceof Error)) return error;
  const retries = retried ? `${options.lockRetries} retries` : 'not retried outside a transaction';
  const wrapped = new Error(
    `${error.message} (lock_timeout ${options.lockTimeoutMs} ms, ${retries}): ` +
      'a long transaction holds a lock this migration needs. Find it in pg_stat_activity, let it finish, ' +
      'then run the migration again (or raise MIGRATION_LOCK_TIMEOUT_MS / MIGRATION_LOCK_RETRIES).',
    { cause: error },
  );
  return Object.assign(wrapped, { code: '55P03' });
}

/** True when the migration's up() holds nothing but comments and whitespace. */
function isEmptyFunction(migration: ProjectMigration): boolean {
  const source = Function.prototype.toString.call(Reflect.get(migration, 'up'));
  const open = source.indexOf('{');
  const close = source.lastIndexOf('}');
  if (open === -1 || close <= open) return false;
  const body = source
    .slice(open + 1, close)
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  return body.trim() === '';
}

/**
 * Remembers the query in flight, so a failure can name its SQL: Kysely reports a failed query's
 * text only to a log hook, which a Kysely handed to us (kysely-ctl's) may not have.
 */
class StatementRecorder implements KyselyPlugin {
  #inFlight: PluginTransformQueryArgs | undefined;

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.#inFlight = args;
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    this.#inFlight = undefined;
    return args.result;
  }

  failedStatement(db: Kysely<unknown>): string | undefined {
    if (this.#inFlight === undefined) return undefined;
    return db.getExecutor().compileQuery(this.#inFlight.node, this.#inFlight.queryId).sql.replace(/\s+/g, ' ').trim();
  }
}
