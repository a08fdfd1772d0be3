import type { Redis } from 'ioredis';

/** A counter as the store holds it: its value and the milliseconds it has left (0 when absent). */
export interface Counter {
  readonly count: number;
  readonly ttlMs: number;
}

/**
 * Where throttling counters live: Redis when several instances must agree, this process's
 * memory otherwise. Every key expires on its own; nothing needs cleaning up.
 */
export interface ThrottleStore {
  /** Adds one; a key that did not exist starts at 1 and expires `ttlMs` from now. */
  increment(key: string, ttlMs: number): Promise<Counter>;
  /** The counter, or `{ count: 0, ttlMs: 0 }` when it does not exist (or expired). */
  read(key: string): Promise<Counter>;
  /** Sets a counter to `count`, expiring `ttlMs` from now. */
  set(key: string, count: number, ttlMs: number): Promise<void>;
  delete(...keys: string[]): Promise<void>;
}

const ABSENT: Counter = { count: 0, ttlMs: 0 };

/**
 * The in-memory counters are at their bound: a new key is refused rather than making room by
 * forgetting another (which would reset someone's failures or lockout).
 */
export class CounterStoreFullError extends Error {
  constructor(maxKeys: number) {
    super(`throttle counters are at their bound of ${maxKeys} keys; new callers are refused until some expire`);
    this.name = 'CounterStoreFullError';
  }
}

export interface MemoryThrottleStoreOptions {
  /**
   * Live keys held at most. Nothing is ever evicted before its window ends: at the bound, a new
   * key is refused ({@link CounterStoreFullError}, a 503) while existing keys go on counting.
   */
  readonly maxKeys: number;
  readonly now?: () => number;
  /** Told (at most once a minute) that new keys are being refused. */
  readonly onFull?: (maxKeys: number) => void;
}

/** Default bound of the in-memory counters (THROTTLE_MEMORY_MAX_KEYS); README "Security model" gives its memory. */
export const DEFAULT_MEMORY_MAX_KEYS = 200_000;

/**
 * Counters in this process's memory: right for one instance (N instances would each count a
 * share). Expired entries are dropped when read, swept once a minute, and swept at once (at most
 * once a second) when the bound is reached; a live key is never dropped before it expires.
 */
export class MemoryThrottleStore implements ThrottleStore {
  readonly #entries = new Map<string, { count: number; expiresAt: number }>();
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #onFull: ((maxKeys: number) => void) | undefined;
  readonly #sweeper: NodeJS.Timeout;
  #lastSweep = 0;
  #lastReported = Number.NEGATIVE_INFINITY;

  constructor(options: MemoryThrottleStoreOptions = { maxKeys: DEFAULT_MEMORY_MAX_KEYS }) {
    this.#now = options.now ?? Date.now;
    this.#maxKeys = options.maxKeys;
    this.#onFull = options.onFull;
    this.#sweeper = setInterval(() => {
      this.#sweep();
    }, 60_000);
    this.#sweeper.unref();
  }

  /** Live and not yet swept keys. */
  get size(): number {
    return this.#entries.size;
  }

  async increment(key: string, ttlMs: number): Promise<Counter> {
    const now = this.#now();
    const entry = this.#live(key, now);
    if (entry === undefined) {
      this.#admit(now);
      this.#entries.set(key, { count: 1, expiresAt: now + ttlMs });
      return { count: 1, ttlMs };
    }
    entry.count++;
    return { count: entry.count, ttlMs: entry.expiresAt - now };
  }

  async read(key: string): Promise<Counter> {
    const now = this.#now();
    const entry = this.#live(key, now);
    return entry === undefined ? ABSENT : { count: entry.count, ttlMs: entry.expiresAt - now };
  }

  async set(key: string, count: number, ttlMs: number): Promise<void> {
    const now = this.#now();
    if (this.#live(key, now) === undefined) this.#admit(now);
    this.#entries.set(key, { count, expiresAt: now + ttlMs });
  }

  async delete(...keys: string[]): Promise<void> {
    for (const key of keys) this.#entries.delete(key);
  }

  /** Stops the sweeper (the app's onClose). */
  close(): void {
    clearInterval(this.#sweeper);
  }

  /** Room for one more key, or the refusal: never by dropping a live key. */
  #admit(now: number): void {
    if (this.#entries.size < this.#maxKeys) return;
    // A sweep walks every key: under a flood of new keys, once a second is enough.
    if (now - this.#lastSweep >= 1000) this.#sweep();
    if (this.#entries.size < this.#maxKeys) return;
    if (now - this.#lastReported >= 60_000) {
      this.#lastReported = now;
      this.#onFull?.(this.#maxKeys);
    }
    throw new CounterStoreFullError(this.#maxKeys);
  }

  #live(key: string, now: number) {
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #sweep(): void {
    const now = this.#now();
    this.#lastSweep = now;
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
  }
}

// INCR and the first expiry in one step, so a crash between them cannot leave a key that never expires.
const INCREMENT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
`;
const READ = `
local count = redis.call('GET', KEYS[1])
if not count then return {0, 0} end
return {tonumber(count), redis.call('PTTL', KEYS[1])}
`;

/** Counters in Redis under `prefix`, shared by every instance that uses the same Redis and prefix. */
export class RedisThrottleStore implements ThrottleStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async increment(key: string, ttlMs: number): Promise<Counter> {
    return counter(await this.#redis.eval(INCREMENT, 1, this.#prefix + key, String(Math.max(1, Math.ceil(ttlMs)))));
  }

  async read(key: string): Promise<Counter> {
    return counter(await this.#redis.eval(READ, 1, this.#prefix + key));
  }

  async set(key: string, count: number, ttlMs: number): Promise<void> {
    await this.#redis.set(this.#prefix + key, String(count), 'PX', Math.max(1, Math.ceil(ttlMs)));
  }

  async delete(...keys: string[]): Promise<void> {
    if (keys.length > 0) await this.#redis.del(...keys.map((key) => this.#prefix + key));
  }
}

function counter(reply: unknown): Counter {
  const [count, ttl] = Array.isArray(reply) ? (reply as unknown[]) : [];
  const value = Number(count);
  // PTTL is -1 for a key without expiry and -2 for none: neither should happen; both mean "no time left".
  return { count: Number.isFinite(value) ? value : 0, ttlMs: Math.max(0, Number(ttl) || 0) };
}
