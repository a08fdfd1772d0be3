import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import { RateLimitError, ServiceUnavailableError } from '../errors/index.ts';

/** argon2id parameters; the defaults are OWASP's minimum (m=19 MiB, t=2, p=1). */
export interface Argon2Params {
  readonly memoryCost: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

export const OWASP_ARGON2ID: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/**
 * Stored hashes whose cost exceeds these are refused unverified: a planted hash with
 * m=4 GiB or t=1000 would otherwise turn one login into a denial of service.
 */
const MAX_STORED = { memoryCost: 262_144, timeCost: 16, parallelism: 8 } as const;

export interface PasswordHasherOptions {
  readonly params?: Argon2Params;
  /** Hashes computed at once; argon2 runs on libuv's threadpool (4 threads), shared with fs and dns. */
  readonly concurrency: number;
  /** Hash requests allowed to wait; beyond that callers get 503 instead of an unbounded pile-up. */
  readonly queueLimit: number;
  /**
   * Slots plus queue places one caller (see {@link HashCallers}) may hold at once; beyond that it
   * gets 429, so one caller cannot fill the queue and starve everyone else. Default: no limit.
   */
  readonly callerShare?: number;
}

/**
 * Who a hash is for: caller keys (`callerKey` in services/throttle.ts) such as the client address
 * and the account. Each key may hold at most the hasher's `callerShare` of slots and queue at
 * once; the first one is the caller the queue is fair between (the client address).
 */
export type HashCallers = readonly string[];

/**
 * argon2id hashing with bounded concurrency.
 *
 * @example
 * ```ts
 * const hasher = new PasswordHasher({ concurrency: 2, queueLimit: 64 });
 * const hash = await hasher.hash('correct horse battery staple');
 * await hasher.verify(hash, 'correct horse battery staple'); // true
 * ```
 */
export class PasswordHasher {
  readonly #params: Argon2Params;
  readonly #limiter: FairLimiter;
  #dummyHash: Promise<string> | undefined;

  constructor(options: PasswordHasherOptions) {
    this.#params = options.params ?? OWASP_ARGON2ID;
    this.#limiter = new FairLimiter(options.concurrency, options.queueLimit, options.callerShare);
  }

  /** Hashes waiting for a free slot (a metrics gauge). */
  get queueDepth(): number {
    return this.#limiter.waiting;
  }

  /**
   * Refuses at once, before any other work, a request that could not get a hashing slot now:
   * under overload a login is turned away without querying the database first. The hash or
   * verification that follows is still limited on its own.
   *
   * @throws {ServiceUnavailableError} `OVERLOADED` when every slot is busy and the queue is full
   * of no more tasks of any other caller than of `caller` (see {@link FairLimiter}).
   */
  assertCapacity(caller?: string): void {
    if (this.#limiter.full(caller)) throw overloaded();
  }

  /** @throws {RateLimitError} when one of `callers` already holds its share of the hasher. */
  async hash(password: string, callers: HashCallers = []): Promise<string> {
    return this.#limiter.run(() => argon2.hash(password, { type: argon2.argon2id, ...this.#params }), callers);
  }

  /**
   * Whether `password` matches `hash`. Malformed hashes and hashes with extreme parameters are
   * refused (false) without running argon2 on them.
   *
   * @throws {RateLimitError} when one of `callers` already holds its share of the hasher.
   */
  async verify(hash: string, password: string, callers: HashCallers = []): Promise<boolean> {
    const params = parseParams(hash);
    if (
      params === undefined ||
      params.memoryCost > MAX_STORED.memoryCost ||
      params.timeCost > MAX_STORED.timeCost ||
      params.parallelism > MAX_STORED.parallelism
    ) {
      return false;
    }
    return this.#limiter.run(() => argon2.verify(hash, password).catch(() => false), callers);
  }

  /**
   * Spends the same work as a real verification and returns false: used for unknown emails so
   * they cannot be told apart from wrong passwords by timing.
   */
  async verifyDummy(password: string, callers: HashCallers = []): Promise<false> {
    this.#dummyHash ??= this.hash(randomBytes(16).toString('base64url'));
    await this.verify(await this.#dummyHash, password, callers);
    return false;
  }

  /** Whether a hash was made with other parameters than the current ones (upgrade on login). */
  needsRehash(hash: string): boolean {
    return argon2.needsRehash(hash, { ...this.#params });
  }
}

function parseParams(hash: string): Argon2Params | undefined {
  // PHC string: $argon2id$v=19$m=19456,p=1,t=2$salt$hash (parameter order varies between libraries)
  const params = /^\$argon2(?:id|i|d)\$v=\d+\$([a-z0-9=,]+)\$/.exec(hash)?.[1];
  if (params === undefined) return undefined;
  const values = new Map(params.split(',').map((pair) => pair.split('=') as [string, string]));
  const memoryCost = Number(values.get('m'));
  const timeCost = Number(values.get('t'));
  const parallelism = Number(values.get('p'));
  if (![memoryCost, timeCost, parallelism].every((n) => Number.isSafeInteger(n) && n > 0)) return undefined;
  return { memoryCost, timeCost, parallelism };
}

function overloaded(): ServiceUnavailableError {
  return new ServiceUnavailableError('Too many password operations in progress', 'OVERLOADED');
}

/** A task waiting for a slot: started by `grant`, refused by `refuse` (pushed out of a full queue). */
interface Waiter {
  readonly grant: () => void;
  readonly refuse: (error: Error) => void;
}

/**
 * Runs at most `limit` tasks at once; up to `queueLimit` more wait, the rest are refused. Each
 * caller key holds at most `callerShare` running or waiting tasks.
 *
 * Waiting tasks are queued per caller (the first of a task's callers: its client address) and
 * served round-robin between callers, one task each in turn, so a caller with one task waits
 * behind at most one task of each other caller rather than behind everything queued before it.
 * When the queue is full, a task whose caller has fewer waiting tasks than the caller with the
 * most takes the place of that caller's newest one, which is refused (`OVERLOADED`): refusals go
 * to whoever fills the queue, not to whoever comes next.
 *
 * @example
 * ```ts
 * const limiter = new FairLimiter(2, 64);
 * await limiter.run(() => argon2.hash(password), ['address:10.0.0.1', 'account:…']);
 * ```
 */
export class FairLimiter {
  readonly #limit: number;
  readonly #queueLimit: number;
  readonly #callerShare: number;
  /** Waiting tasks per caller; the Map's order is the round-robin order (a served caller moves to the end). */
  readonly #queues = new Map<string, Waiter[]>();
  readonly #held = new Map<string, number>();
  #waiting = 0;
  #running = 0;

  constructor(limit: number, queueLimit: number, callerShare = Number.POSITIVE_INFINITY) {
    this.#limit = limit;
    this.#queueLimit = queueLimit;
    this.#callerShare = callerShare;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /** Whether a task of `caller` started now would be refused (it could neither run, queue nor push another out). */
  full(caller = ''): boolean {
    return this.#running >= this.#limit && this.#waiting >= this.#queueLimit && this.#heaviest(caller) === undefined;
  }

  async run<T>(task: () => Promise<T>, callers: HashCallers = []): Promise<T> {
    if (callers.some((key) => (this.#held.get(key) ?? 0) >= this.#callerShare)) {
      throw new RateLimitError('Too many password checks in progress for this caller; try again later', {
        retryAfterSeconds: 1,
      });
    }
    const caller = callers[0] ?? '';
    if (this.full(caller)) throw overloaded();
    for (const key of callers) this.#held.set(key, (this.#held.get(key) ?? 0) + 1);
    try {
      if (this.#running >= this.#limit) await this.#wait(caller);
      else this.#running++;
      return await this.#runHeld(task);
    } finally {
      for (const key of callers) {
        const held = (this.#held.get(key) ?? 1) - 1;
        if (held <= 0) this.#held.delete(key);
        else this.#held.set(key, held);
      }
    }
  }

  #wait(caller: string): Promise<void> {
    if (this.#waiting >= this.#queueLimit) {
      // full() said some caller has more waiting than this one: its newest task gives way.
      const heaviest = this.#heaviest(caller);
      const pushedOut = heaviest === undefined ? undefined : this.#queues.get(heaviest)?.pop();
      if (heaviest !== undefined && this.#queues.get(heaviest)?.length === 0) this.#queues.delete(heaviest);
      if (pushedOut === undefined) return Promise.reject(overloaded());
      this.#waiting--;
      pushedOut.refuse(overloaded());
    }
    return new Promise<void>((grant, refuse) => {
      const queue = this.#queues.get(caller);
      if (queue === undefined) this.#queues.set(caller, [{ grant, refuse }]);
      else queue.push({ grant, refuse });
      this.#waiting++;
    });
  }

  /** The caller with the most waiting tasks, if it has more than `caller`; undefined otherwise. */
  #heaviest(caller: string): string | undefined {
    let heaviest: string | undefined;
    let most = this.#queues.get(caller)?.length ?? 0;
    for (const [key, queue] of this.#queues) {
      if (queue.length > most) {
        heaviest = key;
        most = queue.length;
      }
    }
    return heaviest;
  }

  /** The next waiter in round-robin order, its caller moved to the back of the round. */
  #next(): Waiter | undefined {
    const first = this.#queues.entries().next();
    if (first.done === true) return undefined;
    const [caller, queue] = first.value;
    const waiter = queue.shift();
    this.#queues.delete(caller);
    if (queue.length > 0) this.#queues.set(caller, queue);
    if (waiter !== undefined) this.#waiting--;
    return waiter;
  }

  async #runHeld<T>(task: () => Promise<T>): Promise<T> {
    try {
      return await task();
    } finally {
      const next = this.#next();
      // The slot passes straight to the next waiter, so #running stays as it is.
      if (next === undefined) this.#running--;
      else next.grant();
    }
  }
}
