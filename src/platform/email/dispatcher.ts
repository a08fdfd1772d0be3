import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Kysely } from 'kysely';
import type { DispatcherConfig } from '../config/email.ts';
import type { DB } from '../db/database.ts';
import { EmailOutboxRepository, type ClaimedMessage, type OutboxStats } from './email-outbox.repository.ts';
import type { OutgoingEmail } from './render.ts';
import type { EmailTransport } from './transports.ts';
import { reportWorkerFailure } from '../jobs/failures.ts';

/** Told of every outcome (metrics count them). */
export interface DispatcherEvents {
  onSent?(template: string): void;
  /** A send failed and will be retried. */
  onRetry?(template: string): void;
  /** Attempts exhausted: the message is marked failed. */
  onFailed?(template: string): void;
  /** Not sent on purpose (already verified, or the account was disabled since it was queued). */
  onSkipped?(template: string): void;
  /** Claimed but handed back untried: the dispatcher was stopping before the send began. */
  onReleased?(template: string): void;
  /** The outbox as measured after each pass. */
  onStats?(stats: OutboxStats): void;
}

export interface DispatcherLog {
  debug(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface DispatcherDeps {
  readonly db: Kysely<DB>;
  readonly transport: EmailTransport;
  /** Renders a claimed message; undefined: do not send it (skipped). */
  readonly compose: (message: ClaimedMessage) => Promise<OutgoingEmail | undefined>;
  readonly config: DispatcherConfig;
  readonly log: DispatcherLog;
  readonly events?: DispatcherEvents | undefined;
  readonly clock?: () => Date;
  /** Names this dispatcher's claims; unique per process by default. */
  readonly instanceId?: string;
}

/**
 * Sends the email outbox, in every instance.
 *
 * Each pass claims a small batch of due messages (`FOR UPDATE SKIP LOCKED`, so dispatchers of
 * several instances never claim one message twice) and sends them concurrently, each bounded by
 * the send timeout. A failed send is retried with exponential backoff and jitter, up to
 * `maxAttempts`; then the message is marked failed (a metric and one warn line, never its data).
 * A sent message loses its token-bearing data.
 *
 * Delivery is at least once across a crash: a message claimed by a process that dies before
 * recording the outcome is claimed again once its lease (`claimLeaseMs`) runs out. Without a
 * crash (or a database failure right after the send) each message is sent once.
 *
 * On {@link stop}, sends in flight finish and messages claimed but not yet handed to the
 * transport are released for any dispatcher to send at once (see `EmailOutboxRepository.release`).
 *
 * It wakes every `pollIntervalMs`, at once after a full batch, and when {@link wake} is called
 * (this instance queued an email). Polling rather than LISTEN/NOTIFY: it needs no session of its
 * own (works behind PgBouncer in transaction mode), a missed notification cannot strand a
 * message, retries become due by time anyway, and the poll is one indexed query on a small
 * partial index.
 *
 * @example
 * ```ts
 * const dispatcher = new OutboxDispatcher({ db, transport, compose: (m) => composer.compose(m), config, log });
 * dispatcher.start();
 * // … on shutdown: in-flight sends finish, nothing new is claimed.
 * await dispatcher.stop();
 * ```
 */
export class OutboxDispatcher {
  readonly #deps: DispatcherDeps;
  readonly #outbox: EmailOutboxRepository;
  readonly #clock: () => Date;
  readonly #instanceId: string;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wakeUp: (() => void) | undefined;
  #woken = false;

  constructor(deps: DispatcherDeps) {
    this.#deps = deps;
    this.#outbox = new EmailOutboxRepository(deps.db);
    this.#clock = deps.clock ?? (() => new Date());
    this.#instanceId = deps.instanceId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  /** Starts the loop; a second call does nothing. */
  start(): void {
    if (this.#running !== undefined) return;
    this.#stopping = false;
    this.#running = this.#loop();
  }

  /** Runs the next pass now instead of at the next poll. */
  wake(): void {
    this.#woken = true;
    this.#wakeUp?.();
  }

  /**
   * Claims nothing more. A message already handed to the transport is finished (within the send
   * timeout) and recorded; one claimed but not yet handed over is released: back to pending, due
   * at once for any dispatcher, its attempt not counted. Resolves when the last is recorded.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeUp?.();
    await this.#running;
    this.#running = undefined;
  }

  /**
   * One pass: claims a batch and sends it.
   *
   * @returns how many messages were claimed.
   */
  async runOnce(): Promise<number> {
    const batch = await this.#outbox.claimDue({
      limit: this.#deps.config.batchSize,
      now: this.#clock(),
      leaseMs: this.#deps.config.claimLeaseMs,
      claimedBy: this.#instanceId,
    });
    await Promise.all(batch.map((message) => this.#deliver(message)));
    this.#deps.events?.onStats?.(await this.#outbox.stats());
    return batch.length;
  }

  async #loop(): Promise<void> {
    while (!this.#isStopping()) {
      let claimed = 0;
      try {
        claimed = await this.runOnce();
      } catch (error) {
        // The database is down or failing: the next poll tries again.
        reportWorkerFailure(this.#deps.log, error, 'email outbox pass failed');
      }
      if (this.#isStopping()) break;
      if (claimed < this.#deps.config.batchSize) await this.#sleep(this.#deps.config.pollIntervalMs);
    }
  }

  /** A method, not the field: the field changes while the loop awaits, which narrowing cannot see. */
  #isStopping(): boolean {
    return this.#stopping;
  }

  #sleep(ms: number): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeUp = () => {
        this.#woken = false;
        this.#wakeUp = undefined;
        done();
      };
    });
  }

  async #deliver(message: ClaimedMessage): Promise<void> {
    const claimedBy = this.#instanceId;
    let outcome: 'sent' | 'skipped' | 'released';
    try {
      outcome = await withTimeout(this.#send(message), this.#deps.config.sendTimeoutMs);
    } catch (error) {
      await this.#failed(message, error);
      return;
    }
    const now = this.#clock();
    if (outcome === 'released') {
      // Another instance (or this one after a restart) sends it without waiting for the lease.
      await this.#outbox.release(message.id, claimedBy, now);
      this.#deps.events?.onReleased?.(message.template);
      this.#deps.log.debug({ messageId: message.id, template: message.template }, 'email released on shutdown');
      return;
    }
    if (outcome === 'skipped') {
      await this.#outbox.markSkipped(message.id, claimedBy, now, 'no longer applies');
      this.#deps.events?.onSkipped?.(message.template);
      return;
    }
    // Should this write fail (database down), the claim expires and the message goes again:
    // the at-least-once case.
    await this.#outbox.markSent(message.id, claimedBy, now);
    this.#deps.events?.onSent?.(message.template);
  }

  async #send(message: ClaimedMessage): Promise<'sent' | 'skipped' | 'released'> {
    // Stopping: what has not reached the transport yet is handed back rather than started. Once
    // the transport has it, the send is finished: released then, it could go out twice.
    if (this.#isStopping()) return 'released';
    const email = await this.#deps.compose(message);
    if (email === undefined) return 'skipped';
    if (this.#isStopping()) return 'released';
    await this.#deps.transport.send(email);
    return 'sent';
  }

  async #failed(message: ClaimedMessage, error: unknown): Promise<void> {
    const reason = describe(error);
    const { maxAttempts } = this.#deps.config;
    if (message.attempts >= maxAttempts) {
      await this.#outbox.markFailed(message.id, this.#instanceId, reason);
      this.#deps.events?.onFailed?.(message.template);
      // The message's data (its token) is never logged; the id finds the row.
      this.#deps.log.warn(
        { messageId: message.id, template: message.template, attempts: message.attempts, reason },
        'email given up after its last attempt',
      );
      return;
    }
    const nextAttemptAt = new Date(this.#clock().getTime() + this.retryDelayMs(message.attempts));
    await this.#outbox.scheduleRetry(message.id, this.#instanceId, nextAttemptAt, reason);
    this.#deps.events?.onRetry?.(message.template);
  }

  /**
   * The wait after failed attempt number `attempt`: `retryBaseMs` doubled per attempt, capped at
   * `retryMaxMs`, then jittered to between half and all of that, so messages that failed together
   * (an SMTP outage) do not all come back at the same moment.
   */
  retryDelayMs(attempt: number): number {
    const { retryBaseMs, retryMaxMs } = this.#deps.config;
    const ceiling = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }
}

class SendTimeoutError extends Error {
  constructor(ms: number) {
    super(`send did not finish within ${ms} ms`);
    this.name = 'SendTimeoutError';
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new SendTimeoutError(ms));
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A short reason for the row and the log: the error's message (SMTP replies name no secrets), bounded. */
function describe(error: unknown): string {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return message.slice(0, 500);
}
