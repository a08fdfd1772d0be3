import { sql, type Kysely, type Selectable } from 'kysely';
import type { AuditEvents, DB } from '../../db-types/index.ts';
import { fixedQuery } from '../db/compiled-query.ts';
import { instrumentRepository } from '../db/instrumentation.ts';

export type AuditEventRow = Selectable<AuditEvents>;

export interface NewAuditEvent {
  /** Time-ordered (UUID v7), so events of one millisecond keep the order they were written in. */
  readonly id: string;
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
    id: string,
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
        id,
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
// The event of a request naming an account by its email (a password-reset request): recorded for
// the account that owns the address, and for none when no account does, in one statement whose
// work does not depend on which.
const insertForEmail = fixedQuery(
  (db, id: string, type: string, email: string, ipAddress: string | null, userAgent: string | null, details: string) =>
    db
      .insertInto('audit_events')
      .columns(['id', 'type', 'user_id', 'ip_address', 'user_agent', 'details'])
      .expression(
        db
          .selectFrom('users')
          .select([
            sql<string>`${id}::uuid`.as('id'),
            sql<string>`${type}::text`.as('type'),
            'id',
            sql<string | null>`${ipAddress}::text`.as('ip_address'),
            sql<string | null>`${userAgent}::text`.as('user_agent'),
            sql<string>`${details}::jsonb`.as('details'),
          ])
          .where((eb) => eb(eb.fn('lower', ['email']), '=', email)),
      ),
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
 * await new AuditEventRepository(trx).append({ id: uuidv7(), type: 'user.updated', userId, actorId, sessionId, ipAddress, userAgent, details: {} });
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
      event.id,
      event.type,
      event.userId,
      event.actorId,
      event.sessionId,
      event.ipAddress,
      event.userAgent,
      JSON.stringify(event.details),
    );
  }

  /**
   * Appends an event for the account whose canonical email is `email`, if there is one; nothing
   * otherwise. @returns whether an event was appended.
   */
  async appendForEmail(
    email: string,
    event: Omit<NewAuditEvent, 'userId' | 'actorId' | 'sessionId'>,
  ): Promise<boolean> {
    const { id, type, ipAddress, userAgent, details } = event;
    return (
      (await insertForEmail.affectedRows(
        this.#db,
        id,
        type,
        email.toLowerCase(),
        ipAddress,
        userAgent,
        JSON.stringify(details),
      )) > 0n
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
