import { ServiceUnavailableError } from '../errors/index.ts';

/** The slice of a pino logger a worker reports through. */
export interface WorkerLog {
  debug(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/**
 * Reports a failed background pass. The database being unreachable is announced once by the
 * availability watcher (src/platform/db/availability.ts), so a worker retrying through an outage logs it
 * at debug only; anything else is an error, with its stack.
 */
export function reportWorkerFailure(log: WorkerLog | undefined, error: unknown, message: string): void {
  if (error instanceof ServiceUnavailableError) log?.debug({ code: error.code }, `${message}: ${error.message}`);
  else log?.error({ err: error }, message);
}
