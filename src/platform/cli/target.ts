import { loadConfig, loadEnvFile } from '../config.ts';
import { withDatabaseName } from '../db/database-admin.ts';
import { openDatabaseTarget, type DatabaseTarget } from '../db/target.ts';

/**
 * Runs `fn` against the database the application uses (DATABASE_URL or the embedded default),
 * stopping the embedded server afterwards if this command started it.
 *
 * @example
 * ```ts
 * await withTarget(async (target) => readMigrationStatus(target.url));
 * ```
 */
export async function withTarget<T>(fn: (target: DatabaseTarget) => Promise<T>): Promise<T> {
  loadEnvFile();
  const target = await openDatabaseTarget(loadConfig(), (message) => process.stderr.write(`${message}\n`));
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

/** A URL on the target's server that may create and drop scratch databases. */
export function adminUrlOf(target: DatabaseTarget): string {
  return target.embedded?.url ?? withDatabaseName(target.url, 'postgres');
}

/**
 * The URL without its password, fit to print.
 *
 * @example
 * ```ts
 * displayUrl('postgres://app:secret@db:5432/app'); // 'postgres://app@db:5432/app'
 * ```
 */
export function displayUrl(url: string): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

/**
 * One line for an operator: the message, not the stack. A refused connection surfaces from `pg`
 * as an AggregateError with an empty message, so its first inner error speaks for it.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && error.message === '' && error.errors.length > 0) {
    return errorMessage(error.errors[0]);
  }
  if (error instanceof Error) return error.message || ((error as { code?: string }).code ?? error.name);
  return String(error);
}
