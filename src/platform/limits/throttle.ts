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
  /**
   * The device the attempt came from, when it presented a valid device token for this account
   * (see `DeviceTokens`): such an attempt is throttled for that device only, never by the
   * account-wide slowdown or its address's lockout, which strangers' failures can cause.
   */
  readonly device?: string | undefined;
}

/**
 * The one vocabulary of caller keys every limit uses (flood caps, failure throttling, the hashing
 * queue's shares): `address:` a client address grouped by `clientAddressKey`, `account:` an
 * account as named (hashed, so emails stay out of Redis and no string can forge another key),
 * `user:` a signed-in user's id, `device:` a recognised device.
 */
export const callerKey = {
  address: (address: string): string => `address:${address}`,
  account: (account: string): string => `account:${digest(account)}`,
  user: (userId: string): string => `user:${userId}`,
  device: (device: string): string => `device:${device}`,
} as const;

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
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
  onRefused?(scope: string, reason: 'pair' | 'account' | 'device'): void;
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

  /** @throws {RateLimitError} while the pair (or the device) is locked out or the account is slowed. */
  async assertAllowed(attempt: Attempt): Promise<void> {
    const keys = this.#keys(attempt);
    if (keys.device !== undefined) {
      const { lock } = keys.device;
      const deviceLock = await this.#safely(() => this.#store.read(lock));
      if (deviceLock.ttlMs > 0) this.#refuse(attempt.scope, 'device', deviceLock.ttlMs);
      return;
    }
    const [pairLock, accountPause] = await this.#safely(() =>
      Promise.all([this.#store.read(keys.pairLock), this.#store.read(keys.accountPause)]),
    );
    if (pairLock.ttlMs > 0) this.#refuse(attempt.scope, 'pair', pairLock.ttlMs);
    if (accountPause.ttlMs > 0) this.#refuse(attempt.scope, 'account', accountPause.ttlMs);
  }

  /**
   * Counts one failure for the pair and for the account, locking or slowing them at their
   * thresholds; a recognised device's failure counts for that device only.
   */
  async recordFailure(attempt: Attempt): Promise<void> {
    const policy = this.#policy;
    const keys = this.#keys(attempt);
    if (keys.device !== undefined) {
      const device = keys.device;
      await this.#safely(() => this.#countTowardsLockout(device.failures, device.level, device.lock));
      return;
    }
    const throttled = await this.#safely(async () => {
      const [, account] = await Promise.all([
        this.#countTowardsLockout(keys.pairFailures, keys.pairLevel, keys.pairLock),
        this.#store.increment(keys.accountFailures, policy.failureWindowMs),
      ]);
      const excess = account.count - policy.accountMaxFailures;
      if (excess < 0) return undefined;
      const delay = Math.min(policy.accountMaxDelayMs, policy.accountDelayMs * 2 ** Math.min(excess, 30));
      await this.#store.set(keys.accountPause, account.count, delay);
      return excess === 0 ? { failures: account.count, delaySeconds: Math.ceil(delay / 1000) } : undefined;
    });
    if (throttled !== undefined) await this.#events.onAccountThrottled?.({ ...attempt, ...throttled });
  }

  /** A success: that account's failures from that address (and device) are forgotten; other addresses' stay. */
  async recordSuccess(attempt: Attempt): Promise<void> {
    const keys = this.#keys(attempt);
    const device = keys.device === undefined ? [] : [keys.device.failures, keys.device.level];
    await this.#safely(() => this.#store.delete(keys.pairFailures, keys.pairLevel, ...device));
  }

  /** One failure of a pair or device; at the threshold, a lockout that doubles with each repeat. */
  async #countTowardsLockout(failuresKey: string, levelKey: string, lockKey: string): Promise<void> {
    const policy = this.#policy;
    const failures = await this.#store.increment(failuresKey, policy.failureWindowMs);
    if (failures.count < policy.pairMaxFailures) return;
    const level = await this.#store.increment(levelKey, LOCKOUT_MEMORY_MS);
    const lockout = Math.min(policy.maxLockoutMs, policy.pairLockoutMs * 2 ** Math.min(level.count - 1, 30));
    await this.#store.set(lockKey, level.count, lockout);
    // The next lockout needs a fresh run of failures, and lasts twice as long.
    await this.#store.delete(failuresKey);
  }

  #refuse(scope: string, reason: 'pair' | 'account' | 'device', ttlMs: number): never {
    this.#events.onRefused?.(scope, reason);
    throw new RateLimitError('Too many failed attempts; try again later', {
      retryAfterSeconds: Math.max(1, Math.ceil(ttlMs / 1000)),
    });
  }

  async #safely<T>(work: () => Promise<T>): Promise<T> {
    return unlessStoreFails(work);
  }

  #keys({ scope, account, address, device }: Attempt) {
    const who = callerKey.account(account);
    const pair = `${scope}:${who}:${callerKey.address(address)}`;
    const at = device === undefined ? undefined : `${scope}:${who}:${callerKey.device(device)}`;
    return {
      pairFailures: `throttle:fail:${pair}`,
      pairLevel: `throttle:level:${pair}`,
      pairLock: `throttle:lock:${pair}`,
      accountFailures: `throttle:fail:${scope}:${who}`,
      accountPause: `throttle:pause:${scope}:${who}`,
      device:
        at === undefined
          ? undefined
          : { failures: `throttle:fail:${at}`, level: `throttle:level:${at}`, lock: `throttle:lock:${at}` },
    };
  }
}

/** Runs store work; a store that fails (Redis down, memory at its bound) refuses rather than lets attempts through uncounted. */
async function unlessStoreFails<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new ServiceUnavailableError('Service unavailable', 'RATE_LIMIT_UNAVAILABLE', { cause: error });
  }
}

/** A flood cap: at most `max` requests per window per caller key of kind `per`. */
export interface FloodLimit {
  readonly max: number;
  readonly per: 'address' | 'account' | 'user';
}

/** Told of every request over a flood cap, by limiter name. */
export type FloodEvents = (limiter: string) => void;

/**
 * Flood caps: every request counts (whatever its outcome) in a fixed window per caller key,
 * in the same store as the failure throttle, so counters live until their window ends and are
 * never evicted by other keys (see `MemoryThrottleStore`).
 *
 * @example
 * ```ts
 * const floods = new FloodLimiter(store, { 'login-ip': { max: 300, per: 'address' } }, 60_000);
 * const { allowed, retryAfterSeconds } = await floods.take('login-ip', callerKey.address('10.0.0.1'));
 * ```
 */
export class FloodLimiter<Name extends string = string> {
  readonly #store: ThrottleStore;
  readonly #limits: Readonly<Record<Name, FloodLimit>>;
  readonly #windowMs: number;
  readonly #onLimited: FloodEvents | undefined;

  constructor(
    store: ThrottleStore,
    limits: Readonly<Record<Name, FloodLimit>>,
    windowMs: number,
    onLimited?: FloodEvents,
  ) {
    this.#store = store;
    this.#limits = limits;
    this.#windowMs = windowMs;
    this.#onLimited = onLimited;
  }

  /** The cap `name` declares. */
  limit(name: Name): FloodLimit {
    return this.#limits[name];
  }

  /**
   * Counts one request of `caller` against `name`.
   *
   * @returns whether it is within the cap, and how long until the window ends.
   * @throws {ServiceUnavailableError} `RATE_LIMIT_UNAVAILABLE` when the store cannot count it.
   */
  async take(name: Name, caller: string): Promise<{ allowed: boolean; retryAfterSeconds: number }> {
    const counter = await unlessStoreFails(() => this.#store.increment(`flood:${name}:${caller}`, this.#windowMs));
    const allowed = counter.count <= this.#limits[name].max;
    if (!allowed) this.#onLimited?.(name);
    return { allowed, retryAfterSeconds: Math.max(1, Math.ceil(counter.ttlMs / 1000)) };
  }

  /**
   * Like {@link take}, refusing a request over the cap.
   *
   * @throws {RateLimitError} over the cap, with the time left in the window.
   */
  async enforce(name: Name, caller: string): Promise<void> {
    const { allowed, retryAfterSeconds } = await this.take(name, caller);
    if (!allowed) throw new RateLimitError('Too many requests; try again later', { retryAfterSeconds });
  }
}

/** What counts as a failed attempt by default: a 401, or a verify/reset token that is not valid. */
export function isCredentialFailure(error: unknown): boolean {
  return error instanceof AppError && (error.statusCode === 401 || error.code === 'INVALID_OR_EXPIRED_TOKEN');
}
