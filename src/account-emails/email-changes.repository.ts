import type { Kysely, Selectable } from 'kysely';
import type { DB, EmailChanges } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';

export type EmailChangeRow = Selectable<EmailChanges>;

export interface NewEmailChange {
  readonly userId: string;
  /** Already canonical. */
  readonly newEmail: string;
  /** The session that asked, kept signed in when the change takes effect. */
  readonly sessionId: string | null;
  /** Whether the current address must confirm too (false: it was never verified). */
  readonly currentRequired: boolean;
  readonly expiresAt: Date;
}

const insertChange = fixedQuery(
  (db, userId: string, newEmail: string, sessionId: string | null, currentRequired: boolean, expiresAt: Date) =>
    db
      .insertInto('email_changes')
      .values({
        user_id: userId,
        new_email: newEmail,
        session_id: sessionId,
        current_required: currentRequired,
        expires_at: expiresAt,
      })
      .returningAll(),
);
const supersedePending = fixedQuery((db, userId: string, at: Date) =>
  db
    .updateTable('email_changes')
    .set({ superseded_at: at })
    .where('user_id', '=', userId)
    .where('completed_at', 'is', null)
    .where('superseded_at', 'is', null),
);
const lockById = fixedQuery((db, id: string) =>
  db.selectFrom('email_changes').selectAll().where('id', '=', id).forUpdate(),
);
const confirmNew = fixedQuery((db, id: string, at: Date) =>
  db.updateTable('email_changes').set({ new_confirmed_at: at }).where('id', '=', id).returningAll(),
);
const confirmCurrent = fixedQuery((db, id: string, at: Date) =>
  db.updateTable('email_changes').set({ current_confirmed_at: at }).where('id', '=', id).returningAll(),
);
const complete = fixedQuery((db, id: string, at: Date) =>
  db.updateTable('email_changes').set({ completed_at: at }).where('id', '=', id),
);

/**
 * Requests to change a user's email address (api.md v3): one row per request, confirmed by the
 * two account tokens that point at it.
 *
 * @example
 * ```ts
 * const changes = new EmailChangeRepository(trx);
 * await changes.supersedePending(userId, now);
 * const change = await changes.insert({ userId, newEmail, sessionId, currentRequired: true, expiresAt });
 * ```
 */
export class EmailChangeRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(change: NewEmailChange): Promise<EmailChangeRow> {
    return insertChange.takeOne(
      this.#db,
      change.userId,
      change.newEmail,
      change.sessionId,
      change.currentRequired,
      change.expiresAt,
    );
  }

  /** Marks the user's requests that have not taken effect superseded. @returns how many. */
  async supersedePending(userId: string, at: Date): Promise<number> {
    return Number(await supersedePending.affectedRows(this.#db, userId, at));
  }

  /** The request, locked until the transaction ends: its two confirmations run one after the other. */
  async lockById(id: string): Promise<EmailChangeRow | undefined> {
    return lockById.takeFirst(this.#db, id);
  }

  /** Records that the link to one of the two addresses was used. @returns the request after it. */
  async markConfirmed(id: string, side: 'new' | 'current', at: Date): Promise<EmailChangeRow> {
    return (side === 'new' ? confirmNew : confirmCurrent).takeOne(this.#db, id, at);
  }

  async markCompleted(id: string, at: Date): Promise<void> {
    await complete.affectedRows(this.#db, id, at);
  }
}
