import { Counter, Gauge, type Registry } from '@prometheus-io/client';
import { PRUNE_RULES } from './prune.repository.ts';

/**
 * What the maintenance job reports at /metrics: rows pruned per table and rule, when the last
 * completed run ended and how long it took, and runs by outcome. The `MaintenanceNotRunning` alert
 * (monitoring/alerts.yml) fires when no instance has completed a run for a day.
 */
export class MaintenanceMetrics {
  readonly prunedRows: Counter<'table' | 'rule'>;
  readonly runs: Counter<'outcome'>;
  readonly lastRunTimestamp: Gauge;
  readonly lastRunDuration: Gauge;

  constructor(registry: Registry) {
    this.prunedRows = new Counter({
      name: 'maintenance_pruned_rows_total',
      help: 'Rows deleted by the maintenance job, by table and rule',
      labelNames: ['table', 'rule'] as const,
      registers: [registry],
    });
    this.runs = new Counter({
      name: 'maintenance_runs_total',
      help: 'Maintenance runs by outcome: ok, skipped (another instance holds the lock) or error',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    this.lastRunTimestamp = new Gauge({
      name: 'maintenance_last_run_timestamp_seconds',
      help: 'When the last completed maintenance run of this instance ended (Unix time)',
      registers: [registry],
    });
    this.lastRunDuration = new Gauge({
      name: 'maintenance_last_run_duration_seconds',
      help: 'How long the last completed maintenance run of this instance took',
      registers: [registry],
    });
    for (const rule of PRUNE_RULES) this.prunedRows.inc({ table: rule.table, rule: rule.name }, 0);
    for (const outcome of ['ok', 'skipped', 'error']) this.runs.inc({ outcome }, 0);
  }
}
