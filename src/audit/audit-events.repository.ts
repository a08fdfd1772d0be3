import { sql, type Kysely, type Selectable } from 'kysely';
import type { AuditEvents, DB } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';

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
// work does not depend on which; and for none when the account has one of this type from the
// last `seconds`, so repeating the request cannot grow the log faster than one event per window.
const insertForEmail = fixedQuery(
  (
    db,
    id: string,
    type: string,
    email: string,
    ipAddress: string | null,
    userAgent: string | null,
    details: string,
    seconds: number,
  ) =>
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
          .where((eb) => eb(eb.fn('lower', ['email']), '=', email))
          .where((eb) =>
            eb.not(
              eb.exists(
                eb
                  .selectFrom('audit_events as recent')
                  .select(sql`1`.as('one'))
                  .whereRef('recent.user_id', '=', 'users.id')
                  .where('recent.occurred_at', '>', sql<Date>`now() - make_interval(secs => ${seconds})`)
                  .where('recent.type', '=', type),
              ),
            ),
          ),
      ),
);
// How many events of one type one actor recorded about one user within the last `seconds`, and
// when the oldest of them leaves that window: a per-user cap counted from the log itself.
const recentByActor = fixedQuery((db, userId: string, actorId: string, type: string, seconds: number) =>
  db
    .selectFrom('audit_events')
    .select([
      sql<string>`count(*)`.as('count'),
      sql<
        number | null
      >`ceil(extract(epoch from (min(occurred_at) + make_interval(secs => ${seconds}) - now())))::float8`.as(
        'retry_after',
      ),
    ])
    .where('user_id', '=', userId)
    // As a row comparison, which only the (user_id, occurred_at) index serves: the user's few
    // events, rather than everyone's of the last day through the occurred_at index.
    .where((eb) =>
      eb(
        eb.refTuple('user_id', 'occurred_at'),
        '>',
        eb.tuple(userId, sql<Date>`now() - make_interval(secs => ${seconds})`),
      ),
    )
    .where('actor_id', '=', actorId)
    .where('type', '=', type),
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
   * Appends an event for the account whose canonical email is `email`, if there is one and it
   * has no event of this type from the last `onceWithinSeconds`; nothing otherwise.
   *
   * @returns whether an event was appended.
   */
  async appendForEmail(
    email: string,
    event: Omit<NewAuditEvent, 'userId' | 'actorId' | 'sessionId'>,
    onceWithinSeconds: number,
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
        onceWithinSeconds,
      )) > 0n
    );
  }

  /**
   * How many `type` events `actorId` recorded about `userId` in the last `seconds` (by the
   * database's clock), and in how many seconds the oldest of them leaves that window (null when
   * there is none).
   */
  async countRecent(
    userId: string,
    actorId: string,
    type: string,
    seconds: number,
  ): Promise<{ count: number; retryAfterSeconds: number | null }> {
    const row = await recentByActor.takeOne(this.#db, userId, actorId, type, seconds);
    return { count: Number(row.count), retryAfterSeconds: row.retry_after };
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
