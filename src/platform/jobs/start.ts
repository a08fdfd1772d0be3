import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import type { DB } from '../db/database.ts';
import type { AppMetrics } from '../metrics/metrics.ts';
import { MaintenanceJob, maintenanceSettings } from './maintenance.ts';
import { MaintenanceMetrics } from './maintenance-metrics.ts';

/** The maintenance job on its schedule, reporting in the app's /metrics; none when MAINTENANCE_INTERVAL_SECONDS=0. */
export function startMaintenance(
  config: Config,
  db: Kysely<DB>,
  metrics: AppMetrics,
  log: FastifyBaseLogger,
): MaintenanceJob | undefined {
  const { intervalSeconds } = config.maintenance;
  if (intervalSeconds === 0) return undefined;
  const job = new MaintenanceJob({
    db,
    ...maintenanceSettings(config.maintenance),
    intervalMs: intervalSeconds * 1000,
    metrics: new MaintenanceMetrics(metrics.registry),
    log,
  });
  job.start();
  return job;
}
