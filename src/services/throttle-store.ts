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
 * Counters in this process's memory: right for one instance (N instances would each count a
 * share). Expired entries are dropped when read and swept once a minute.
 */
export class MemoryThrottleStore implements ThrottleStore {
  readonly #entries = new Map<string, { count: number; expiresAt: number }>();
  readonly #now: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#sweeper = setInterval(() => {
      this.#sweep();
    }, 60_000);
    this.#sweeper.unref();
  }

  async increment(key: string, ttlMs: number): Promise<Counter> {
    const now = this.#now();
    const entry = this.#live(key, now);
    if (entry === undefined) {
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
    this.#entries.set(key, { count, expiresAt: this.#now() + ttlMs });
  }

  async delete(...keys: string[]): Promise<void> {
    for (const key of keys) this.#entries.delete(key);
  }

  /** Stops the sweeper (the app's onClose). */
  close(): void {
    clearInterval(this.#sweeper);
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
