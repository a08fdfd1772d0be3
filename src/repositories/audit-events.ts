import type { Kysely, Selectable } from 'kysely';
import type { AuditEvents, DB } from '../../db-types/index.ts';
import { fixedQuery } from '../db/compiled-query.ts';
import { instrumentRepository } from '../db/instrumentation.ts';

export type AuditEventRow = Selectable<AuditEvents>;

export interface NewAuditEvent {
  readonly type: string;
  readonly userId: string | null;
  readonly actorId: string | null;
  readonly sessionId: string | null;
  readonly ipAddress: string | null;
  readonly userAgent: string | null;
  readonly details: Readonly<Record<string, unknown>>;
}

/** Position after the last item of a page, newest first. */
export interface AuditCursor {
  readonly occurredAt: Date;
  readonly id: string;
}

const insertEvent = fixedQuery(
  (
    db,
    type: string,
    userId: string | null,
    actorId: string | null,
    sessionId: string | null,
    ipAddress: string | null,
    userAgent: string | null,
    details: string,
  ) =>
    db
      .insertInto('audit_events')
      .values({
        type,
        user_id: userId,
        actor_id: actorId,
        session_id: sessionId,
        ip_address: ipAddress,
        user_agent: userAgent,
        details,
      })
      .returningAll(),
);
const firstPage = fixedQuery((db, userId: string, limit: number) =>
  db
    .selectFrom('audit_events')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('occurred_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit),
);
const pageAfter = fixedQuery((db, userId: string, occurredAt: Date, id: string, limit: number) =>
  db
    .selectFrom('audit_events')
    .selectAll()
    .where('user_id', '=', userId)
    .where((eb) => eb(eb.refTuple('occurred_at', 'id'), '<', eb.tuple(occurredAt, id)))
    .orderBy('occurred_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit),
);

/**
 * The audit log: append-only (an update is refused by a trigger). Append in the transaction of
 * the change recorded, so the event commits or rolls back with it.
 *
 * @example
 * ```ts
 * await new AuditEventRepository(trx).append({ type: 'user.updated', userId, actorId, sessionId, ipAddress, userAgent, details: {} });
 * const page = await new AuditEventRepository(db).listForUser(userId, 21);
 * ```
 */
export class AuditEventRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async append(event: NewAuditEvent): Promise<AuditEventRow> {
    return insertEvent.takeOne(
      this.#db,
      event.type,
      event.userId,
      event.actorId,
      event.sessionId,
      event.ipAddress,
      event.userAgent,
      JSON.stringify(event.details),
    );
  }

  /** One page of a user's events, newest first (occurred_at, then id), strictly after `cursor`. */
  async listForUser(userId: string, limit: number, cursor?: AuditCursor): Promise<AuditEventRow[]> {
    const { rows } =
      cursor === undefined
        ? await firstPage.execute(this.#db, userId, limit)
        : await pageAfter.execute(this.#db, userId, cursor.occurredAt, cursor.id, limit);
    return rows;
  }
}

instrumentRepository(AuditEventRepository, 'auditEvents');
