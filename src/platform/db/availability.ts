import type { AppError } from '../errors/index.ts';
import { describeConnectionFailure } from './connection-failure.ts';
import type { QueryEvent } from './instrumentation.ts';

export interface AvailabilityLogger {
  error(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

export interface AvailabilityHooks {
  readonly onQuery: (event: QueryEvent) => void;
  readonly onCheckoutError: (error: AppError) => void;
}

/**
 * Tells the log once when the server loses its database and once when it is back, instead of
 * a stack per failing request. Wraps `createDatabase`'s hooks: a connection that cannot be had
 * (or dies mid-query) means lost; the next query that succeeds means back.
 *
 * @example
 * ```ts
 * const db = createDatabase(config, { pool, ...watchAvailability(hooks, () => app.log, url, 'DATABASE_URL') });
 * ```
 */
export function watchAvailability(
  hooks: Partial<AvailabilityHooks>,
  logger: () => AvailabilityLogger | undefined,
  url: string,
  source: string,
  options: { readonly quietUntilReached?: boolean } = {},
): AvailabilityHooks {
  let lostSince: number | undefined;
  // A server's start-up reports a database it never reached itself, in one line.
  let reached = options.quietUntilReached !== true;
  const lost = (error: unknown) => {
    if (lostSince !== undefined || !reached) return;
    lostSince = Date.now();
    const reason = describeConnectionFailure(error, url, source) ?? (error instanceof Error ? error.message : '');
    logger()?.error({ reason }, 'lost the database: requests needing it answer 503 until it is back');
  };
  return {
    onQuery: (event) => {
      hooks.onQuery?.(event);
      if (event.outcome === 'ok') reached = true;
      if (event.outcome === 'DATABASE_UNAVAILABLE') lost(undefined);
      else if (event.outcome === 'ok' && lostSince !== undefined) {
        logger()?.info({ downMs: Date.now() - lostSince }, 'the database is back');
        lostSince = undefined;
      }
    },
    onCheckoutError: (error) => {
      hooks.onCheckoutError?.(error);
      if (error.code === 'DATABASE_UNAVAILABLE') lost(error);
    },
  };
}
