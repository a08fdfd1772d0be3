/**
 * Authenticated users as their rows were read, so a request bearing a valid access token need
 * not read the row again. Correct only together with a feed of committed changes (see
 * `UserChangeFeed`): an entry is dropped as soon as its row changes, everything is dropped when
 * the feed loses its connection, and nothing is served while it has none. `ttlMs` bounds an
 * entry's life in any case.
 *
 * A read that began before a change and ends after it must not store what it read: every
 * invalidation advances a generation, and {@link PrincipalCache.store} refuses a value read
 * under an older one.
 *
 * Bounded in entries: when full, the least recently used entry goes (a read counts as a use).
 * The same class keeps the live sessions (`sid` → owner), dropped when a session ends.
 *
 * @example
 * ```ts
 * const cache = new PrincipalCache<User>({ ttlMs: 60_000, maxEntries: 10_000, isLive: () => feed.live });
 * const generation = cache.generation;
 * const user = cache.get(id) ?? (await readUser(id));
 * cache.store(id, user, generation);
 * ```
 */
export class PrincipalCache<T> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #isLive: () => boolean;
  readonly #now: () => number;
  readonly #entries = new Map<string, { readonly value: T; readonly expiresAt: number }>();
  #generation = 0;

  constructor(options: { ttlMs: number; maxEntries: number; isLive: () => boolean; now?: () => number }) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries;
    this.#isLive = options.isLive;
    this.#now = options.now ?? Date.now;
  }

  /** Read this before reading the row; pass it to {@link store}. */
  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The cached value, unless it expired or changes are not being heard right now. */
  get(id: string): T | undefined {
    if (!this.#isLive()) return undefined;
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#entries.delete(id);
    if (entry.expiresAt <= this.#now()) return undefined;
    // Re-inserted last: a Map iterates in insertion order, so the first key is the least recently used.
    this.#entries.set(id, entry);
    return entry.value;
  }

  /** Keeps `value` unless something was invalidated since `generation` was read. */
  store(id: string, value: T, generation: number): void {
    if (generation !== this.#generation || !this.#isLive()) return;
    // The first key is the least recently used (see get).
    if (this.#entries.size >= this.#maxEntries && !this.#entries.has(id)) {
      for (const oldest of this.#entries.keys()) {
        this.#entries.delete(oldest);
        break;
      }
    }
    this.#entries.set(id, { value, expiresAt: this.#now() + this.#ttlMs });
  }

  /** This user's row changed. */
  invalidate(id: string): void {
    this.#generation++;
    this.#entries.delete(id);
  }

  /** Any row may have changed. */
  clear(): void {
    this.#generation++;
    this.#entries.clear();
  }
}
