import type { EnvReader } from './reader.ts';

/** The maintenance job that deletes rows no longer needed (src/platform/jobs/maintenance.ts). */
export interface MaintenanceConfig {
  /** Seconds between runs in each server process; 0: the server runs none (use `npm run db:prune`). */
  readonly intervalSeconds: number;
  /** Rows deleted per statement: each batch is one short transaction. */
  readonly batchSize: number;
  /** Pause between batches, so pruning a backlog leaves the database to the requests. */
  readonly pauseMs: number;
  /**
   * At most this share (percent) of a run is spent deleting: after a batch that took t ms the job
   * pauses at least t × (100 / share − 1) ms, so slower batches (a loaded server) mean longer pauses.
   */
  readonly maxBusyPercent: number;
  /** Expired and revoked refresh tokens are kept this long before they are deleted. */
  readonly refreshTokenGraceSeconds: number;
  /** Audit events older than this many days are deleted. */
  readonly auditRetentionDays: number;
  /** Outbox messages that are done (sent, skipped, given up) and older than this many days are deleted. */
  readonly emailOutboxRetentionDays: number;
}

export function readMaintenanceConfig(reader: EnvReader): MaintenanceConfig {
  return {
    intervalSeconds: reader.integer('MAINTENANCE_INTERVAL_SECONDS', 3600, 0, 7 * 86_400),
    batchSize: reader.integer('MAINTENANCE_BATCH_SIZE', 1000, 1, 100_000),
    pauseMs: reader.integer('MAINTENANCE_PAUSE_MS', 50, 0, 60_000),
    maxBusyPercent: reader.integer('MAINTENANCE_MAX_BUSY_PERCENT', 10, 1, 100),
    refreshTokenGraceSeconds: reader.integer('REFRESH_TOKEN_GRACE_SECONDS', 7 * 86_400, 0, 365 * 86_400),
    auditRetentionDays: reader.integer('AUDIT_RETENTION_DAYS', 365, 1, 36_500),
    emailOutboxRetentionDays: reader.integer('EMAIL_OUTBOX_RETENTION_DAYS', 30, 1, 36_500),
  };
}
