import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { CommitBarrier } from './database.ts';

/** The channel the `users_changed` trigger notifies (migration 20261127011500). */
export const USER_CHANGES_CHANNEL = 'users_changed';
/** The payload after a TRUNCATE: every user may have changed. */
const EVERY_USER = '*';
/** Payloads a feed sends itself to prove it hears notifications; every feed ignores the others'. */
const PROBE_PREFIX = 'probe:';
/** A session ended (migration 20261201120000): `session:<id>`. */
const SESSION_PREFIX = 'session:';

export interface UserChangeHandlers {
  /** A committed change to this user's row (update or delete). */
  readonly onChange: (userId: string) => void;
  /** A session ended (logout, revocation, reuse, password change, disabled or deleted user). */
  readonly onSessionEnded?: (sessionId: string) => void;
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
  /** How long the feed waits to hear its own probe notification before it counts as failed (2 s). */
  readonly probeTimeoutMs?: number;
  /**
   * Once live, the feed notifies itself every third of this (1 s by default); a heartbeat unheard
   * for this long means the connection went silent (a stalled backend, a dead network path that
   * TCP has not noticed yet): the feed stops being live and reconnects.
   */
  readonly heartbeatTimeoutMs?: number;
}

/**
 * Committed changes to user rows, heard on a dedicated connection (`LISTEN users_changed`). It
 * reconnects by itself; while it has no connection `live` is false, and whoever caches user rows
 * must not trust the cache, since changes made meanwhile go unheard.
 *
 * Once live it keeps proving it: a heartbeat notification it sends itself must be heard within
 * `heartbeatTimeoutMs`, or the feed counts as down (a backend that stopped reading says nothing
 * on its socket; without this the caches would be trusted for as long as their entries live).
 *
 * It goes live only after hearing a probe notification it sent itself, so a connection that
 * cannot receive notifications (PgBouncer in transaction mode: LISTEN succeeds on a server
 * connection this client does not keep) is never trusted; it keeps retrying instead.
 *
 * @example
 * ```ts
 * const feed = new UserChangeFeed({ url, applicationName: 'api' }, { onChange: (id) => cache.drop(id), onReset: () => cache.clear() });
 * await feed.start(); // resolves once listening (or after the first failure, retrying in the background)
 * await feed.close();
 * ```
 */
export class UserChangeFeed implements CommitBarrier {
  readonly #options: UserChangeFeedOptions;
  readonly #handlers: UserChangeHandlers;
  #client: pg.Client | undefined;
  #live = false;
  #closed = false;
  #retryDelayMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  /** Sends the heartbeats; kept open across them, replaced when it fails. */
  #sender: pg.Client | undefined;
  #beating = false;
  #lastHeardAt = 0;
  /** Commits of this instance waiting to hear their own notification (see {@link expect}). */
  readonly #waiting = new Map<string, PromiseWithResolvers<undefined>>();
  readonly #instance = randomUUID();
  #commits = 0;

  constructor(options: UserChangeFeedOptions, handlers: UserChangeHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#retryDelayMs = this.#reconnect.minDelayMs;
  }

  /** Whether changes are being heard right now. */
  get live(): boolean {
    return this.#live;
  }

  /** A payload for a commit to send with its changes, or undefined while not live. */
  expect(): string | undefined {
    if (!this.#live) return undefined;
    // Every feed ignores payloads with the probe prefix but those it is waiting for.
    const token = `${PROBE_PREFIX}${this.#instance}:${++this.#commits}`;
    this.#waiting.set(token, Promise.withResolvers<undefined>());
    return token;
  }

  /**
   * Resolves once the notification `token` came back: every change committed with it was heard
   * first (a transaction's notifications arrive together, in order). Not heard within the heartbeat
   * timeout, the connection counts as lost: the caches are reset and not trusted until it is back.
   */
  async heard(token: string): Promise<void> {
    const heard = this.#waiting.get(token);
    if (heard === undefined) return;
    try {
      await withTimeout(heard.promise, this.#options.heartbeatTimeoutMs ?? 3000);
    } catch {
      if (this.#client !== undefined) this.#lost(this.#client);
    } finally {
      this.#waiting.delete(token);
    }
  }

  cancel(token: string): void {
    this.#waiting.delete(token);
  }

  /** Connects and listens; on failure keeps retrying in the background (never throws). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#heartbeatTimer);
    this.#setLive(false);
    const client = this.#client;
    this.#client = undefined;
    const sender = this.#sender;
    this.#sender = undefined;
    await Promise.all([client?.end().catch(() => undefined), sender?.end().catch(() => undefined)]);
  }

  get #reconnect(): { minDelayMs: number; maxDelayMs: number } {
    return this.#options.reconnect ?? { minDelayMs: 100, maxDelayMs: 5000 };
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#options.url,
      application_name: this.#options.applicationName,
    });
    this.#client = client;
    const probe = `${PROBE_PREFIX}${randomUUID()}`;
    const heartbeat = `${probe}:heartbeat`;
    const heard = Promise.withResolvers<undefined>();
    // Until this connection has proven it hears everything (its probe came back), what it hears
    // is not acted on: through a pooler a stray notification may reach it, and going live resets
    // the caches anyway, so nothing heard before then could matter.
    let trusted = false;
    client.on('notification', (message) => {
      const { channel, payload } = message;
      if (channel !== USER_CHANGES_CHANNEL || payload === undefined) return;
      if (payload === heartbeat) this.#lastHeardAt = performance.now();
      else if (payload === probe) heard.resolve(undefined);
      else if (this.#waiting.has(payload)) this.#waiting.get(payload)?.resolve(undefined);
      else if (payload.startsWith(PROBE_PREFIX) || !trusted) return;
      else if (payload === EVERY_USER) this.#handlers.onReset();
      else if (payload.startsWith(SESSION_PREFIX))
        this.#handlers.onSessionEnded?.(payload.slice(SESSION_PREFIX.length));
      else this.#handlers.onChange(payload);
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
      // Live only once a notification sent from another session has been heard: through a pooler
      // in transaction mode LISTEN succeeds, on a server connection this client does not keep,
      // and nothing ever arrives.
      await this.#sendProbe(probe);
      await withTimeout(heard.promise, this.#options.probeTimeoutMs ?? 2000);
    } catch {
      this.#lost(client);
      return;
    }
    if (this.#client !== client) return;
    this.#retryDelayMs = this.#reconnect.minDelayMs;
    trusted = true;
    // Changes made while no one listened were missed: start from nothing.
    this.#setLive(true);
    this.#startHeartbeat(client, heartbeat);
  }

  #startHeartbeat(client: pg.Client, payload: string): void {
    const timeoutMs = this.#options.heartbeatTimeoutMs ?? 3000;
    this.#lastHeardAt = performance.now();
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(
      () => {
        if (this.#client !== client) return;
        if (performance.now() - this.#lastHeardAt > timeoutMs) {
          this.#lost(client);
          return;
        }
        void this.#beat(payload);
      },
      Math.max(100, Math.floor(timeoutMs / 3)),
    );
    this.#heartbeatTimer.unref();
  }

  /** One heartbeat; a failed sender is dropped and a new one opened on the next beat. */
  async #beat(payload: string): Promise<void> {
    if (this.#beating) return;
    this.#beating = true;
    let sender = this.#sender;
    try {
      if (sender === undefined) {
        sender = new pg.Client({
          connectionString: this.#options.url,
          application_name: this.#options.applicationName,
        });
        sender.on('error', () => undefined);
        this.#sender = sender;
        await sender.connect();
      }
      await sender.query('select pg_notify($1, $2)', [USER_CHANGES_CHANNEL, payload]);
    } catch {
      if (this.#sender === sender) this.#sender = undefined;
      await sender?.end().catch(() => undefined);
    } finally {
      this.#beating = false;
    }
  }

  async #sendProbe(payload: string): Promise<void> {
    const sender = new pg.Client({
      connectionString: this.#options.url,
      application_name: this.#options.applicationName,
    });
    sender.on('error', () => undefined);
    try {
      await sender.connect();
      await sender.query('select pg_notify($1, $2)', [USER_CHANGES_CHANNEL, payload]);
    } finally {
      await sender.end().catch(() => undefined);
    }
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    clearInterval(this.#heartbeatTimer);
    // A heartbeat stuck on a stalled server would block every later one: start over with a new sender.
    this.#sender?.end().catch(() => undefined);
    this.#sender = undefined;
    this.#beating = false;
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
    // Nothing is trusted now: a commit waiting for its notification need not wait any longer.
    for (const waiting of this.#waiting.values()) waiting.resolve(undefined);
  }
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no notification heard within ${ms} ms`));
    }, ms);
    // A probe still waiting must not keep a process that is shutting down alive.
    timer.unref();
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
