import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { MaintenanceConfig } from '../config/maintenance.ts';
import type { DB } from '../db/database.ts';
import { withAdvisoryLock } from '../db/advisory-lock.ts';
import { PRUNE_RULES, PruneRepository, type PruneRule, type RetentionPolicy } from './prune.repository.ts';
import { reportWorkerFailure } from './failures.ts';
import type { MaintenanceMetrics } from './maintenance-metrics.ts';

/** The advisory lock that keeps maintenance to one instance at a time, whatever runs it. */
export const MAINTENANCE_LOCK = 'pg-fastify-backend:maintenance';

export interface MaintenanceOptions {
  readonly db: Kysely<DB>;
  readonly policy: RetentionPolicy;
  /** Rows per delete statement. */
  readonly batchSize: number;
  /** Pause between two batches (throttle). */
  readonly pauseMs: number;
  /**
   * The most of a run's time (percent) spent in batches: after a batch that took t ms the pause is
   * at least t × (100 / maxBusyPercent − 1) ms. 100 (the default here) leaves only `pauseMs`.
   */
  readonly maxBusyPercent?: number;
  /** Monotonic milliseconds, for a batch's duration (tests replace it; `performance.now` by default). */
  readonly clock?: () => number;
  /** Waits between batches (tests record it; a timer by default). */
  readonly sleep?: (ms: number) => Promise<unknown>;
  /** Between the end of one run and the start of the next; only used by {@link MaintenanceJob.start}. */
  readonly intervalMs?: number;
  readonly metrics?: MaintenanceMetrics;
  /** Told of every run's outcome and of failures (the app's logger in the server). */
  readonly log?: MaintenanceLog;
  readonly now?: () => Date;
  /** The rules to apply; every rule by default (tests narrow it). */
  readonly rules?: readonly PruneRule[];
}

export interface MaintenanceLog {
  debug(details: object, message: string): void;
  info(details: object, message: string): void;
  error(details: object, message: string): void;
}

/** The job's settings from the configuration (MAINTENANCE_* and the retention variables). */
export function maintenanceSettings(
  config: MaintenanceConfig,
): Pick<MaintenanceOptions, 'policy' | 'batchSize' | 'pauseMs' | 'maxBusyPercent'> {
  const { batchSize, pauseMs, maxBusyPercent, refreshTokenGraceSeconds, auditRetentionDays, emailOutboxRetentionDays } =
    config;
  return {
    policy: { refreshTokenGraceSeconds, auditRetentionDays, emailOutboxRetentionDays },
    batchSize,
    pauseMs,
    maxBusyPercent,
  };
}

/** What one run did: `skipped` when another instance held the lock. */
export type MaintenanceReport =
  | { readonly outcome: 'skipped' }
  | {
      readonly outcome: 'ok' | 'stopped';
      /** Rows deleted per rule name. */
      readonly pruned: Readonly<Record<string, number>>;
      readonly batches: number;
      readonly durationMs: number;
    };

/**
 * Deletes what the application no longer needs (expired and revoked refresh tokens past their
 * grace period, …: see PRUNE_RULES) in bounded batches, one short statement each with a pause in
 * between, so a large backlog never holds locks for long or crowds out requests. The pause grows
 * with the batch's own duration (`maxBusyPercent`): when the server is loaded and batches slow
 * down, the job backs off in proportion instead of taking a fixed share of it. Only one instance
 * works at a time (a PostgreSQL advisory lock); the others skip their turn.
 *
 * @example
 * ```ts
 * const job = new MaintenanceJob({ db, policy, batchSize: 1000, pauseMs: 50, maxBusyPercent: 10, intervalMs: 3_600_000 });
 * job.start();            // first run soon, then every interval
 * await job.stop();       // at shutdown: ends the current run after its batch
 * await job.runOnce();    // or once, as `npm run db:prune` does
 * ```
 */
export class MaintenanceJob {
  readonly #options: MaintenanceOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopping = false;
  /** Aborted by stop(): a long pause (a slow batch buys one) must not hold up shutdown. */
  #wake = new AbortController();

  constructor(options: MaintenanceOptions) {
    this.#options = options;
  }

  /**
   * Runs the job every `intervalMs` (the first run after a short delay, so start-up is not slowed),
   * until {@link stop}. Failures are logged and counted; the next run comes as planned.
   */
  start(firstRunDelayMs = 1000): void {
    const intervalMs = this.#options.intervalMs;
    if (intervalMs === undefined || intervalMs <= 0)
      throw new Error('MaintenanceJob.start needs an intervalMs above 0');
    this.#stopping = false;
    this.#wake = new AbortController();
    const schedule = (delay: number) => {
      this.#timer = setTimeout(() => {
        this.#running = this.runOnce()
          .catch((error: unknown) => {
            reportWorkerFailure(this.#options.log, error, 'maintenance run failed');
          })
          .finally(() => {
            this.#running = undefined;
            if (!this.#stopping) schedule(intervalMs);
          });
      }, delay);
      // A pending run never keeps the process alive.
      this.#timer.unref();
    };
    schedule(firstRunDelayMs);
  }

  /** Cancels the next run and waits for the current one, which ends after its current batch. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake.abort();
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * One run over every rule, under the advisory lock.
   *
   * @throws the database's error when a batch fails (counted as an `error` run).
   */
  async runOnce(): Promise<MaintenanceReport> {
    const { db, metrics } = this.#options;
    const started = performance.now();
    try {
      const outcome = await withAdvisoryLock(db, MAINTENANCE_LOCK, (connection) => this.#prune(connection));
      if (!outcome.acquired) {
        metrics?.runs.inc({ outcome: 'skipped' });
        this.#options.log?.info({}, 'maintenance skipped: another instance holds the lock');
        return { outcome: 'skipped' };
      }
      const durationMs = performance.now() - started;
      const report = { ...outcome.value, durationMs };
      // A run cut short by stop() did not complete: the alert should not take it for one.
      if (report.outcome === 'ok') {
        metrics?.runs.inc({ outcome: 'ok' });
        metrics?.lastRunTimestamp.set(Date.now() / 1000);
        metrics?.lastRunDuration.set(durationMs / 1000);
      }
      this.#options.log?.info(report, 'maintenance run finished');
      return report;
    } catch (error) {
      metrics?.runs.inc({ outcome: 'error' });
      throw error;
    }
  }

  async #prune(connection: Kysely<DB>): Promise<Omit<Extract<MaintenanceReport, { batches: number }>, 'durationMs'>> {
    const { policy, batchSize, pauseMs, metrics } = this.#options;
    const clock = this.#options.clock ?? (() => performance.now());
    const { signal } = this.#wake;
    const pause =
      this.#options.sleep ??
      ((ms: number) =>
        sleep(ms, undefined, { signal }).catch(() => {
          // Woken by stop(): the loop sees #stopping and ends the run.
        }));
    const idlePerBusy = 100 / (this.#options.maxBusyPercent ?? 100) - 1;
    const now = (this.#options.now ?? (() => new Date()))();
    const repository = new PruneRepository(connection);
    const pruned: Record<string, number> = {};
    let batches = 0;
    for (const rule of this.#options.rules ?? PRUNE_RULES) {
      const before = rule.cutoff(now, policy);
      let total = 0;
      for (;;) {
        pruned[rule.name] = total;
        if (this.#stopping) return { outcome: 'stopped', pruned, batches };
        const batchStarted = clock();
        const deleted = await repository.pruneBatch(rule, before, batchSize);
        const batchMs = clock() - batchStarted;
        batches++;
        total += deleted;
        pruned[rule.name] = total;
        metrics?.prunedRows.inc({ table: rule.table, rule: rule.name }, deleted);
        // A short batch means this rule has nothing more to delete (skipped locked rows wait for the next run).
        if (deleted < batchSize) break;
        const pauseFor = Math.max(pauseMs, batchMs * idlePerBusy);
        if (pauseFor > 0) await pause(pauseFor);
      }
    }
    return { outcome: 'ok', pruned, batches };
  }
}
