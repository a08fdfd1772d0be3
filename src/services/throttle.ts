import { createHash } from 'node:crypto';
import { AppError, RateLimitError, ServiceUnavailableError } from '../errors/index.ts';
import type { ThrottleStore } from './throttle-store.ts';

/**
 * How failed attempts are throttled (api.md, "Login throttling"). Only failures count; a success
 * clears the failures of that account from that client.
 */
export interface ThrottlePolicy {
  /** Failures of one account from one client address before that pair is locked out. */
  readonly pairMaxFailures: number;
  /** The first lockout of a pair; each further one within a day doubles it, up to `maxLockoutMs`. */
  readonly pairLockoutMs: number;
  readonly maxLockoutMs: number;
  /** Failures of one account from all addresses, within `failureWindowMs`, before it is slowed. */
  readonly accountMaxFailures: number;
  readonly failureWindowMs: number;
  /** The pause between attempts on a slowed account: doubles with every further failure, up to the max. */
  readonly accountDelayMs: number;
  readonly accountMaxDelayMs: number;
}

export const DEFAULT_THROTTLE_POLICY: ThrottlePolicy = {
  pairMaxFailures: 5,
  pairLockoutMs: 60_000,
  maxLockoutMs: 3_600_000,
  accountMaxFailures: 20,
  failureWindowMs: 15 * 60_000,
  accountDelayMs: 1_000,
  accountMaxDelayMs: 60_000,
};

/** One attempt: what it is (`login`, `password-change`, …), on which account, from where. */
export interface Attempt {
  /** Counters of different scopes never mix: a wrong reset token does not lock out logins. */
  readonly scope: string;
  /** The account the attempt names (canonical email, user id, token hash…); any string. */
  readonly account: string;
  /** The client's address key (`clientAddressKey`). */
  readonly address: string;
}

/** A throttled account, for its owner's audit log (`login.throttled`) and the logs. */
export interface AccountThrottledEvent extends Attempt {
  /** Failures from all addresses within the window, when the slowdown began. */
  readonly failures: number;
  readonly delaySeconds: number;
}

export interface ThrottleEvents {
  /** Once per slowdown episode of an account (the failure that crossed the threshold). */
  onAccountThrottled?(event: AccountThrottledEvent): void | Promise<void>;
  /** Every attempt refused with 429, by why. */
  onRefused?(scope: string, reason: 'pair' | 'account'): void;
}

/** Repeated lockouts of one pair are remembered this long, so the delay keeps growing. */
const LOCKOUT_MEMORY_MS = 24 * 3_600_000;

/**
 * Failure-counting throttle for every route that checks a secret. Unknown and existing accounts
 * are counted alike (the caller passes the account as named, before any lookup), so a 429 tells
 * nothing about whether an account exists.
 *
 * @example
 * ```ts
 * const throttle = new CredentialThrottle(new MemoryThrottleStore());
 * const attempt = { scope: 'login', account: email, address: clientAddressKey(request.ip) };
 * const tokens = await throttle.guard(attempt, () => auth.login(email, password));
 * ```
 */
export class CredentialThrottle {
  readonly #store: ThrottleStore;
  readonly #policy: ThrottlePolicy;
  readonly #events: ThrottleEvents;

  constructor(store: ThrottleStore, policy: ThrottlePolicy = DEFAULT_THROTTLE_POLICY, events: ThrottleEvents = {}) {
    this.#store = store;
    this.#policy = policy;
    this.#events = events;
  }

  /**
   * Runs `attempt` unless it is throttled; a failure (by `isFailure`: a 401, or an unknown/used
   * email token by default) is counted, a success clears the pair's failures.
   *
   * @throws {RateLimitError} with `retryAfterSeconds` while the pair is locked out or the account slowed.
   * @throws {ServiceUnavailableError} `RATE_LIMIT_UNAVAILABLE` when the shared store does not answer.
   */
  async guard<T>(attempt: Attempt, run: () => Promise<T>, isFailure = isCredentialFailure): Promise<T> {
    await this.assertAllowed(attempt);
    let result: T;
    try {
      result = await run();
    } catch (error) {
      if (isFailure(error)) await this.recordFailure(attempt);
      throw error;
    }
    await this.recordSuccess(attempt);
    return result;
  }

  /** @throws {RateLimitError} while the pair is locked out or the account is slowed. */
  async assertAllowed(attempt: Attempt): Promise<void> {
    const keys = this.#keys(attempt);
    const [pairLock, accountPause] = await this.#safely(() =>
      Promise.all([this.#store.read(keys.pairLock), this.#store.read(keys.accountPause)]),
    );
    if (pairLock.ttlMs > 0) this.#refuse(attempt.scope, 'pair', pairLock.ttlMs);
    if (accountPause.ttlMs > 0) this.#refuse(attempt.scope, 'account', accountPause.ttlMs);
  }

  /** Counts one failure for the pair and for the account; locks or slows them at their thresholds. */
  async recordFailure(attempt: Attempt): Promise<void> {
    const policy = this.#policy;
    const keys = this.#keys(attempt);
    const throttled = await this.#safely(async () => {
      const [pair, account] = await Promise.all([
        this.#store.increment(keys.pairFailures, policy.failureWindowMs),
        this.#store.increment(keys.accountFailures, policy.failureWindowMs),
      ]);
      if (pair.count >= policy.pairMaxFailures) {
        const level = await this.#store.increment(keys.pairLevel, LOCKOUT_MEMORY_MS);
        const lockout = Math.min(policy.maxLockoutMs, policy.pairLockoutMs * 2 ** Math.min(level.count - 1, 30));
        await this.#store.set(keys.pairLock, level.count, lockout);
        // The next lockout needs a fresh run of failures, and lasts twice as long.
        await this.#store.delete(keys.pairFailures);
      }
      const excess = account.count - policy.accountMaxFailures;
      if (excess < 0) return undefined;
      const delay = Math.min(policy.accountMaxDelayMs, policy.accountDelayMs * 2 ** Math.min(excess, 30));
      await this.#store.set(keys.accountPause, account.count, delay);
      return excess === 0 ? { failures: account.count, delaySeconds: Math.ceil(delay / 1000) } : undefined;
    });
    if (throttled !== undefined) await this.#events.onAccountThrottled?.({ ...attempt, ...throttled });
  }

  /** A success: that account's failures from that address are forgotten (other addresses' stay). */
  async recordSuccess(attempt: Attempt): Promise<void> {
    const keys = this.#keys(attempt);
    await this.#safely(() => this.#store.delete(keys.pairFailures, keys.pairLevel));
  }

  #refuse(scope: string, reason: 'pair' | 'account', ttlMs: number): never {
    this.#events.onRefused?.(scope, reason);
    throw new RateLimitError('Too many failed attempts; try again later', {
      retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)),
    });
  }

  async #safely<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      // The shared store failed: refuse rather than let attempts through uncounted.
      throw new ServiceUnavailableError('Service unavailable', 'RATE_LIMIT_UNAVAILABLE', { cause: error });
    }
  }

  #keys({ scope, account, address }: Attempt) {
    // Hashed: emails stay out of Redis, and no account string can forge another key.
    const who = createHash('sha256').update(account).digest('base64url').slice(0, 22);
    const pair = `${scope}:${who}:${address}`;
    return {
      pairFailures: `throttle:fail:${pair}`,
      pairLevel: `throttle:level:${pair}`,
      pairLock: `throttle:lock:${pair}`,
      accountFailures: `throttle:fail:${scope}:${who}`,
      accountPause: `throttle:pause:${scope}:${who}`,
    };
  }
}

/** What counts as a failed attempt by default: a 401, or a verify/reset token that is not valid. */
export function isCredentialFailure(error: unknown): boolean {
  return error instanceof AppError && (error.statusCode === 401 || error.code === 'INVALID_OR_EXPIRED_TOKEN');
}
