import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RateLimitError, ServiceUnavailableError } from '../errors/index.ts';
import { clientAddress, clientAddressKey } from '../services/client-address.ts';
import { canonicalEmail } from '../services/credentials.ts';
import type { Attempt } from '../services/throttle.ts';

/**
 * Limits for routes that check a password or a token. Two layers (README, "Security model"):
 *
 * - a flood cap per client address, counting every request (`flood(...)`, a preHandler), sized
 *   for many users behind one NAT;
 * - failure throttling per account and client address (`app.throttle.guard(attemptOf(...), run)`
 *   around the check itself), which locks out a guessing pair quickly and never the owner.
 *
 * @example
 * ```ts
 * const { flood } = credentialLimits(app, { windowMs: config.rateLimitWindowMs });
 * app.post('/auth/password/reset', { preHandler: flood('reset', config.credentialRateLimit) }, async (request) =>
 *   app.throttle.guard(attemptOf(request, 'reset', tokenAccount(request.body.token)), () => reset(request.body)),
 * );
 * ```
 */
export function credentialLimits(
  app: FastifyInstance,
  options: { readonly windowMs: number; readonly onLimited?: ((limiter: string) => void) | undefined },
) {
  return {
    /** preHandler: at most `max` requests per window per `key` (the client address by default). */
    flood: (name: string, max: number, key: (request: FastifyRequest) => string = addressOf) => {
      // Checked by hand (createRateLimit) rather than with app.rateLimit(), which marks a request as
      // checked after its first limiter and silently skips any later one.
      const check = app.createRateLimit({
        max,
        timeWindow: options.windowMs,
        keyGenerator: (request) => `${name}:${key(request)}`,
      });
      return async (request: FastifyRequest) => {
        const result = await check(request).catch((error: unknown) => {
          // The shared store (Redis) failed: refuse rather than let attempts through uncounted.
          throw new ServiceUnavailableError('Service unavailable', 'RATE_LIMIT_UNAVAILABLE', { cause: error });
        });
        // isAllowed is true only for allow-listed keys; a counted request is refused once it exceeds max.
        if (!result.isAllowed && result.isExceeded) {
          options.onLimited?.(name);
          throw new RateLimitError('Too many requests; try again later', {
            retryAfterSeconds: Math.max(1, result.ttlInSeconds),
          });
        }
      };
    },
  };
}

/** The client's address as a throttling key: IPv6 by /64, IPv4-mapped as IPv4, one spelling. */
export function addressOf(request: FastifyRequest): string {
  return clientAddressKey(clientAddress(request));
}

/**
 * The account an email names, for throttling: its canonical form, or (for input that is not an
 * address) a bounded lower-case spelling, so unknown and malformed accounts count like real ones.
 */
export function emailAccount(email: unknown): string {
  if (typeof email !== 'string') return '';
  try {
    return canonicalEmail(email);
  } catch {
    return email.trim().toLowerCase().slice(0, 320);
  }
}

/** One attempt of `scope` on `account` from the request's client address. */
export function attemptOf(request: FastifyRequest, scope: string, account: string): Attempt {
  return { scope, account, address: addressOf(request) };
}
