import { inspect } from 'node:util';
import { loadConfig } from '../config.ts';
import { describeConnectionFailure } from '../db/connection-failure.ts';
import { errorMessage } from './target.ts';

export interface FailureContext {
  /** `LOG_LEVEL`: at `debug` or `trace` the error is printed whole, with its stack and causes. */
  readonly logLevel?: string | undefined;
  /** The database the command was talking to, and where its URL came from (`DATABASE_URL`). */
  readonly database?: { readonly url: string; readonly source: string } | undefined;
}

/**
 * Writes why `command` failed to stderr for an operator: one line (which server could not be
 * reached and what to check, when that is what failed), no stack unless `LOG_LEVEL=debug`.
 *
 * @example
 * ```ts
 * reportFailure('npm start', error, { logLevel: config.logLevel, database: { url, source: 'DATABASE_URL' } });
 * ```
 */
export function reportFailure(command: string, error: unknown, context: FailureContext = {}): void {
  const connection =
    context.database === undefined
      ? undefined
      : describeConnectionFailure(error, context.database.url, context.database.source);
  const line = connection ?? errorMessage(error);
  const debug = context.logLevel === 'debug' || context.logLevel === 'trace';
  process.stderr.write(`${command} failed: ${line}\n`);
  if (debug) process.stderr.write(`${inspect(error, { depth: 6 })}\n`);
}

/**
 * The database a command works on, for {@link reportFailure}: `DATABASE_URL` when set (the
 * embedded server reports its own failures).
 */
export function databaseOf(url: string | undefined): FailureContext['database'] {
  return url === undefined ? undefined : { url, source: 'DATABASE_URL' };
}

/**
 * The context of an operator command, from the environment: its `LOG_LEVEL` and `DATABASE_URL`
 * (none when the environment is invalid: that failure reports itself).
 */
export function commandContext(): FailureContext {
  try {
    const config = loadConfig();
    return { logLevel: config.logLevel, database: databaseOf(config.database.url) };
  } catch {
    return {};
  }
}

/**
 * For frameworks that print errors their own way (kysely-ctl): a connection failure is reported
 * as {@link reportFailure} does and the process exits 1; anything else (and everything at
 * `LOG_LEVEL=debug`) is thrown on.
 */
export function exitOnConnectionFailure(command: string, error: unknown, context: FailureContext): never {
  const debug = context.logLevel === 'debug' || context.logLevel === 'trace';
  if (context.database !== undefined && !debug) {
    const line = describeConnectionFailure(error, context.database.url, context.database.source);
    if (line !== undefined) {
      process.stderr.write(`${command} failed: ${line}\n`);
      process.exit(1);
    }
  }
  throw error;
}
