import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import { RateLimitError, ServiceUnavailableError } from '../platform/errors/index.ts';

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
 * once; the first one is the caller the queue is fair between (the client address); a `device:`
 * key (a recognised device) puts the hash in the lane served first (see {@link FairLimiter}).
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
   * Whether `password` matches `hash`. An empty hash (an account without a password), a malformed
   * one or one with extreme parameters is false after the dummy work: never argon2 at the stored
   * parameters, and never faster than a wrong password, so timing tells no such account apart.
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
      return this.verifyDummy(password, callers);
    }
    return this.argon2Verify(hash, password, callers);
  }

  /**
   * Spends the same work as a real verification and returns false: used for unknown emails so
   * they cannot be told apart from wrong passwords by timing.
   */
  async verifyDummy(password: string, callers: HashCallers = []): Promise<false> {
    this.#dummyHash ??= this.hash(randomBytes(16).toString('base64url'));
    await this.argon2Verify(await this.#dummyHash, password, callers);
    return false;
  }

  /** One argon2 verification in a slot of the hasher: what every password check costs. */
  protected argon2Verify(hash: string, password: string, callers: HashCallers): Promise<boolean> {
    return this.#limiter.run(() => argon2.verify(hash, password).catch(() => false), callers);
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
 * Tasks of a recognised device (a `device:` key among their callers: a login that sent back a
 * valid device token for its account) have a lane of their own, served first, round-robin too:
 * strangers, who cannot hold the account's device tokens, do not stand between the owner and a
 * slot however many addresses they use.
 *
 * When the queue is full, a newcomer takes the place of the newest task of the caller with the
 * most waiting in the other lane (a recognised device: any caller's), provided that caller has
 * more waiting than the newcomer's; that task is refused (`OVERLOADED`). Refusals go to whoever
 * fills the queue, not to whoever comes next.
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
  /**
   * Waiting tasks per caller, recognised devices' lane first; each Map's order is its round-robin
   * order (a served caller moves to the end).
   */
  readonly #lanes = { devices: new Map<string, Waiter[]>(), others: new Map<string, Waiter[]>() };
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

  /**
   * Whether a task of `caller` (of a recognised device when `device`) started now would be
   * refused: it could neither run, queue nor take another's place.
   */
  full(caller = '', device = false): boolean {
    return (
      this.#running >= this.#limit && this.#waiting >= this.#queueLimit && this.#victim(caller, device) === undefined
    );
  }

  async run<T>(task: () => Promise<T>, callers: HashCallers = []): Promise<T> {
    if (callers.some((key) => (this.#held.get(key) ?? 0) >= this.#callerShare)) {
      throw new RateLimitError('Too many password checks in progress for this caller; try again later', {
        retryAfterSeconds: 1,
      });
    }
    const caller = callers[0] ?? '';
    const device = callers.some((key) => key.startsWith('device:'));
    if (this.full(caller, device)) throw overloaded();
    for (const key of callers) this.#held.set(key, (this.#held.get(key) ?? 0) + 1);
    try {
      if (this.#running >= this.#limit) await this.#wait(caller, device);
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

  #wait(caller: string, device: boolean): Promise<void> {
    if (this.#waiting >= this.#queueLimit) {
      // full() found a caller with more waiting than this one: its newest task gives way.
      const victim = this.#victim(caller, device);
      const pushedOut = victim?.queue.pop();
      if (victim !== undefined && victim.queue.length === 0) victim.lane.delete(victim.caller);
      if (pushedOut === undefined) return Promise.reject(overloaded());
      this.#waiting--;
      pushedOut.refuse(overloaded());
    }
    const lane = device ? this.#lanes.devices : this.#lanes.others;
    return new Promise<void>((grant, refuse) => {
      const queue = lane.get(caller);
      if (queue === undefined) lane.set(caller, [{ grant, refuse }]);
      else queue.push({ grant, refuse });
      this.#waiting++;
    });
  }

  /**
   * Whose newest waiting task a newcomer of `caller` may take the place of: the caller with the
   * most waiting among unrecognised devices, if it has more than the newcomer there (a recognised
   * device's newcomer: any such caller), else among recognised devices likewise.
   */
  #victim(
    caller: string,
    device: boolean,
  ): { lane: Map<string, Waiter[]>; caller: string; queue: Waiter[] } | undefined {
    const heaviest = (lane: Map<string, Waiter[]>, above: number) => {
      let found: { lane: Map<string, Waiter[]>; caller: string; queue: Waiter[] } | undefined;
      // Of callers with as many waiting, the one served last in the round gives way.
      for (const [key, queue] of lane) {
        if (queue.length > above && queue.length >= (found?.queue.length ?? 0)) found = { lane, caller: key, queue };
      }
      return found;
    };
    const { devices, others } = this.#lanes;
    if (device) return heaviest(others, 0) ?? heaviest(devices, devices.get(caller)?.length ?? 0);
    return heaviest(others, others.get(caller)?.length ?? 0);
  }

  /** The next waiter in round-robin order, recognised devices first; its caller moves to the back of its lane. */
  #next(): Waiter | undefined {
    const lane = this.#lanes.devices.size > 0 ? this.#lanes.devices : this.#lanes.others;
    const first = lane.entries().next();
    if (first.done === true) return undefined;
    const [caller, queue] = first.value;
    const waiter = queue.shift();
    lane.delete(caller);
    if (queue.length > 0) lane.set(caller, queue);
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
