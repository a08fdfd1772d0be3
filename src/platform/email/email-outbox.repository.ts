import type { Kysely, Selectable } from 'kysely';
import type { DB, EmailOutbox } from '../../../db-types/index.ts';
import { fixedQuery } from '../db/compiled-query.ts';

export type OutboxRow = Selectable<EmailOutbox>;
export type OutboxState = OutboxRow['state'];

/** Template-specific values the message is rendered from; may hold a token until it is sent. */
export type OutboxData = Record<string, string>;

export interface NewOutboxMessage {
  /** The account the message is about; its deletion deletes the message. */
  readonly userId: string | null;
  readonly recipient: string;
  readonly template: string;
  readonly data: OutboxData;
}

/** A message as the dispatcher holds it after claiming it. */
export interface ClaimedMessage {
  readonly id: string;
  readonly userId: string | null;
  readonly recipient: string;
  readonly template: string;
  readonly data: OutboxData;
  /** Including the one just claimed. */
  readonly attempts: number;
  readonly createdAt: Date;
}

export interface OutboxStats {
  /** Messages waiting to be sent (pending or being sent). */
  readonly depth: number;
  /** When the oldest of them was queued; null when there is none. */
  readonly oldestCreatedAt: Date | null;
}

const insertMessage = fixedQuery((db, userId: string | null, recipient: string, template: string, data: string) =>
  db.insertInto('email_outbox').values({ user_id: userId, recipient, template, data }).returning('id'),
);
// A message to an address, for the active account that owns it (user_id null when none does):
// the same statement, and the same write, whoever owns the address.
const insertForAddress = fixedQuery((db, email: string, template: string, data: string) =>
  db
    .insertInto('email_outbox')
    .values((eb) => ({
      user_id: eb
        .selectFrom('users')
        .select('id')
        .where((inner) => inner(inner.fn('lower', ['email']), '=', email))
        .where('status', '=', 'active'),
      recipient: email,
      template,
      data,
    }))
    .returning(['id', 'user_id']),
);
const deleteUnowned = fixedQuery((db, id: string) =>
  db.deleteFrom('email_outbox').where('id', '=', id).where('user_id', 'is', null),
);
const queuedSince = fixedQuery((db, userId: string, template: string, since: Date) =>
  db
    .selectFrom('email_outbox')
    .select('id')
    .where('user_id', '=', userId)
    .where('template', '=', template)
    .where('created_at', '>=', since)
    .limit(1),
);
const setSent = fixedQuery((db, id: string, claimedBy: string, at: Date) =>
  db
    .updateTable('email_outbox')
    .set({ state: 'sent', sent_at: at, data: null, claimed_at: null, claimed_by: null, last_error: null })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('claimed_by', '=', claimedBy),
);
const setSkipped = fixedQuery((db, id: string, claimedBy: string, at: Date, reason: string) =>
  db
    .updateTable('email_outbox')
    .set({ state: 'skipped', sent_at: at, data: null, claimed_at: null, claimed_by: null, last_error: reason })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('claimed_by', '=', claimedBy),
);
const setRetry = fixedQuery((db, id: string, claimedBy: string, nextAttemptAt: Date, error: string) =>
  db
    .updateTable('email_outbox')
    .set({ state: 'pending', next_attempt_at: nextAttemptAt, last_error: error, claimed_at: null, claimed_by: null })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('claimed_by', '=', claimedBy),
);
const setFailed = fixedQuery((db, id: string, claimedBy: string, error: string) =>
  db
    .updateTable('email_outbox')
    .set({ state: 'failed', data: null, last_error: error, claimed_at: null, claimed_by: null })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('claimed_by', '=', claimedBy),
);
const releaseClaim = fixedQuery((db, id: string, claimedBy: string, at: Date) =>
  db
    .updateTable('email_outbox')
    .set((eb) => ({
      state: 'pending',
      next_attempt_at: at,
      claimed_at: null,
      claimed_by: null,
      // The attempt never happened.
      attempts: eb('attempts', '-', 1),
    }))
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('claimed_by', '=', claimedBy),
);

/**
 * The email outbox. Messages are inserted in the transaction of the change that needs them and
 * claimed by dispatchers with `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers (several
 * instances) never claim one message twice. Every state change after a claim is conditional on
 * still holding the claim.
 *
 * @example
 * ```ts
 * await new EmailOutboxRepository(trx).enqueue({ userId, recipient, template: 'email_verification', data: { token } });
 * const batch = await new EmailOutboxRepository(db).claimDue({ limit: 5, now, leaseMs: 60_000, claimedBy: 'host:123' });
 * ```
 */
export class EmailOutboxRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** @returns the new message's id. */
  async enqueue(message: NewOutboxMessage): Promise<string> {
    const row = await insertMessage.takeOne(
      this.#db,
      message.userId,
      message.recipient,
      message.template,
      JSON.stringify(message.data),
    );
    return row.id;
  }

  /** Whether a message of this template about this user was queued at `since` or later. */
  async queuedSince(userId: string, template: string, since: Date): Promise<boolean> {
    return (await queuedSince.takeFirst(this.#db, userId, template, since)) !== undefined;
  }

  /**
   * Queues a message to `email` for the active account that owns it; `userId` is null when no
   * active account does. The statement and its write are the same either way: a request that
   * must not tell whether an account exists (a password-reset request) queues through this and
   * then {@link discardUnowned}, in one transaction.
   */
  async enqueueForAddress(
    email: string,
    template: string,
    data: Record<string, string> = {},
  ): Promise<{ id: string; userId: string | null }> {
    const row = await insertForAddress.takeOne(this.#db, email.toLowerCase(), template, JSON.stringify(data));
    return { id: row.id, userId: row.user_id };
  }

  /**
   * Deletes the message `id` if it belongs to no account (see {@link enqueueForAddress}), in the
   * transaction that queued it, so it is never seen and never stored: a transaction that wrote
   * nothing would commit measurably faster than one that queued a message.
   *
   * @returns whether it was deleted.
   */
  async discardUnowned(id: string): Promise<boolean> {
    return (await deleteUnowned.affectedRows(this.#db, id)) > 0n;
  }

  /**
   * Claims up to `limit` messages that are due, and messages whose claim is older than `leaseMs`
   * (their dispatcher died between claiming and finishing): one statement, so the rows are
   * locked, skipped by every concurrent claim, and marked `sending` atomically.
   */
  async claimDue(options: {
    readonly limit: number;
    readonly now: Date;
    readonly leaseMs: number;
    readonly claimedBy: string;
  }): Promise<ClaimedMessage[]> {
    const { limit, now, leaseMs, claimedBy } = options;
    const leaseExpired = new Date(now.getTime() - leaseMs);
    const rows = await this.#db
      .updateTable('email_outbox')
      .set((eb) => ({ state: 'sending', claimed_at: now, claimed_by: claimedBy, attempts: eb('attempts', '+', 1) }))
      .where('id', 'in', (eb) =>
        eb
          .selectFrom('email_outbox')
          .select('id')
          .where((w) =>
            w.or([
              w.and([w('state', '=', 'pending'), w('next_attempt_at', '<=', now)]),
              w.and([w('state', '=', 'sending'), w('claimed_at', '<', leaseExpired)]),
            ]),
          )
          .orderBy('next_attempt_at')
          .limit(limit)
          .forUpdate()
          .skipLocked(),
      )
      .returning(['id', 'user_id', 'recipient', 'template', 'data', 'attempts', 'created_at'])
      .execute();
    return rows.map((row) => ({
      id: row.id,
      userId: row.user_id,
      recipient: row.recipient,
      template: row.template,
      data: toData(row.data),
      attempts: row.attempts,
      createdAt: row.created_at,
    }));
  }

  /** Sent: the token-bearing data is dropped. @returns false when the claim was lost (lease expired). */
  async markSent(id: string, claimedBy: string, at: Date): Promise<boolean> {
    return (await setSent.affectedRows(this.#db, id, claimedBy, at)) > 0n;
  }

  /** Not sent on purpose (the account no longer qualifies); the data is dropped. */
  async markSkipped(id: string, claimedBy: string, at: Date, reason: string): Promise<boolean> {
    return (await setSkipped.affectedRows(this.#db, id, claimedBy, at, reason)) > 0n;
  }

  /** Back to pending, due again at `nextAttemptAt`. */
  async scheduleRetry(id: string, claimedBy: string, nextAttemptAt: Date, error: string): Promise<boolean> {
    return (await setRetry.affectedRows(this.#db, id, claimedBy, nextAttemptAt, error)) > 0n;
  }

  /** Given up: the data is dropped, the last error kept. */
  async markFailed(id: string, claimedBy: string, error: string): Promise<boolean> {
    return (await setFailed.affectedRows(this.#db, id, claimedBy, error)) > 0n;
  }

  /** Hands a claimed message back untried (shutdown), due at once for any dispatcher. */
  async release(id: string, claimedBy: string, at: Date): Promise<boolean> {
    return (await releaseClaim.affectedRows(this.#db, id, claimedBy, at)) > 0n;
  }

  /** How many messages wait, and since when the oldest does. */
  async stats(): Promise<OutboxStats> {
    const row = await this.#db
      .selectFrom('email_outbox')
      .select((eb) => [eb.fn.countAll<string>().as('depth'), eb.fn.min<Date | null>('created_at').as('oldest')])
      // Spelled as an OR, not `in`, so each arm can read its partial index (due, sending) rather
      // than the whole table, which is mostly sent messages.
      .where((eb) => eb.or([eb('state', '=', 'pending'), eb('state', '=', 'sending')]))
      .executeTakeFirstOrThrow();
    return { depth: Number(row.depth), oldestCreatedAt: row.oldest };
  }
}

function toData(value: unknown): OutboxData {
  if (typeof value !== 'object' || value === null) return {};
  const data: OutboxData = {};
  for (const [key, item] of Object.entries(value)) if (typeof item === 'string') data[key] = item;
  return data;
}
