import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type ControlledTransaction, type Kysely } from 'kysely';
import {
  Migrator,
  NO_MIGRATIONS,
  type MigrationProvider,
  type MigrationResult,
  type MigrationResultSet,
} from 'kysely/migration';
import { isLockTimeout, lockAdvice, MigrationError, UneditedMigrationError } from './migration-runner/errors.ts';
import { ensureBookkeeping, transactionWithMigrationLock } from './migration-runner/lock.ts';
import {
  downSteps,
  executedInOrder,
  groupByTransactionMode,
  isEmptyFunction,
  pendingSteps,
  type Plan,
  type Step,
} from './migration-runner/plan.ts';
import { StatementRecorder } from './migration-runner/statement-recorder.ts';

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

/** Invalid indexes in the database: what a failed CREATE INDEX CONCURRENTLY leaves. */
export async function invalidIndexes(db: Kysely<unknown>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_index i join pg_class c on c.oid = i.indexrelid
    join pg_namespace n on n.oid = c.relnamespace
    where not i.indisvalid and n.nspname = current_schema() order by c.relname
  `.execute(db);
  return rows.map((row) => row.name);
}
