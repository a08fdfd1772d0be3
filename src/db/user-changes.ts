import pg from 'pg';

/** The channel the `users_changed` trigger notifies (migration 20261127011500). */
export const USER_CHANGES_CHANNEL = 'users_changed';
/** The payload after a TRUNCATE: every user may have changed. */
const EVERY_USER = '*';

export interface UserChangeHandlers {
  /** A committed change to this user's row (update or delete). */
  readonly onChange: (userId: string) => void;
  /**
   * Anything may have changed: the table was truncated, or the feed lost its connection (changes
   * made meanwhile were not heard) or got it back. Called before `live` changes.
   */
  readonly onReset: () => void;
}

export interface UserChangeFeedOptions {
  readonly url: string;
  readonly applicationName: string;
  /** Waits between reconnection attempts: doubles from `minDelayMs` up to `maxDelayMs`. */
  readonly reconnect?: { readonly minDelayMs: number; readonly maxDelayMs: number };
}

/**
 * Committed changes to user rows, heard on a dedicated connection (`LISTEN users_changed`). It
 * reconnects by itself; while it has no connection `live` is false, and whoever caches user rows
 * must not trust the cache, since changes made meanwhile go unheard.
 *
 * Needs a session of its own: through PgBouncer in transaction mode LISTEN does not work, and
 * the feed must not be used.
 *
 * @example
 * ```ts
 * const feed = new UserChangeFeed({ url, applicationName: 'api' }, { onChange: (id) => cache.drop(id), onReset: () => cache.clear() });
 * await feed.start(); // resolves once listening (or after the first failure, retrying in the background)
 * await feed.close();
 * ```
 */
export class UserChangeFeed {
  readonly #options: UserChangeFeedOptions;
  readonly #handlers: UserChangeHandlers;
  #client: pg.Client | undefined;
  #live = false;
  #closed = false;
  #retryDelayMs: number;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(options: UserChangeFeedOptions, handlers: UserChangeHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#retryDelayMs = this.#reconnect.minDelayMs;
  }

  /** Whether changes are being heard right now. */
  get live(): boolean {
    return this.#live;
  }

  /** Connects and listens; on failure keeps retrying in the background (never throws). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#setLive(false);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  get #reconnect(): { minDelayMs: number; maxDelayMs: number } {
    return this.#options.reconnect ?? { minDelayMs: 100, maxDelayMs: 5000 };
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ connectionString: this.#options.url, application_name: this.#options.applicationName });
    this.#client = client;
    client.on('notification', (message) => {
      if (message.channel !== USER_CHANGES_CHANNEL || message.payload === undefined) return;
      if (message.payload === EVERY_USER) this.#handlers.onReset();
      else this.#handlers.onChange(message.payload);
    });
    client.on('error', () => {
      this.#lost(client);
    });
    client.on('end', () => {
      this.#lost(client);
    });
    try {
      await client.connect();
      await client.query(`listen ${USER_CHANGES_CHANNEL}`);
    } catch {
      this.#lost(client);
      return;
    }
    if (this.#client !== client) return;
    this.#retryDelayMs = this.#reconnect.minDelayMs;
    // Changes made while no one listened were missed: start from nothing.
    this.#setLive(true);
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#setLive(false);
    client.end().catch(() => undefined);
    if (this.#closed) return;
    const delay = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delay * 2, this.#reconnect.maxDelayMs);
    this.#retryTimer = setTimeout(() => {
      void this.#connect();
    }, delay);
    this.#retryTimer.unref();
  }

  #setLive(live: boolean): void {
    this.#handlers.onReset();
    this.#live = live;
  }
}
