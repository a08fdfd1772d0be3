import type { RunnerOptions } from '../migration-runner.ts';

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

/** PostgreSQL's lock_not_available: a statement waited longer than its `lock_timeout`. */
export function isLockTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '55P03';
}

/** A lock timeout says which setting let it go and how to retry; any other error passes unchanged. */
export function lockAdvice(error: unknown, options: RunnerOptions, retried = true): unknown {
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
