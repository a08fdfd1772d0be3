import { sql, type Kysely, type Selectable } from 'kysely';
import type { DB, Sessions } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';

export type SessionRow = Selectable<Sessions>;

/** Why a session ended; the database's `sessions_end_reason_check` lists the values. */
export type SessionEndReason = NonNullable<SessionRow['end_reason']>;

/** The columns an access token's `aal` and `amr` come from. */
export type SessionAssurance = Pick<SessionRow, 'aal' | 'amr'>;

export interface NewSession {
  readonly id: string;
  readonly userId: string;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly userAgent: string | null;
  readonly ipAddress: string | null;
}

const insertSession = fixedQuery(
  (
    db,
    id: string,
    userId: string,
    createdAt: Date,
    expiresAt: Date,
    userAgent: string | null,
    ipAddress: string | null,
  ) =>
    db
      .insertInto('sessions')
      .values({
        id,
        user_id: userId,
        created_at: createdAt,
        last_used_at: createdAt,
        expires_at: expiresAt,
        user_agent: userAgent,
        ip_address: ipAddress,
      })
      .returningAll(),
);
const liveOfUser = fixedQuery((db, userId: string, now: Date) =>
  db
    .selectFrom('sessions')
    .selectAll()
    .where('user_id', '=', userId)
    .where('ended_at', 'is', null)
    .where('expires_at', '>', now)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc'),
);
const userAgentOf = fixedQuery((db, id: string) => db.selectFrom('sessions').select('user_agent').where('id', '=', id));
const touch = fixedQuery((db, id: string, at: Date) =>
  db.updateTable('sessions').set({ last_used_at: at }).where('id', '=', id).returning(['aal', 'amr']),
);
const assuranceOf = fixedQuery((db, id: string) =>
  db.selectFrom('sessions').select(['aal', 'amr']).where('id', '=', id),
);
const liveAssuranceOf = fixedQuery((db, id: string, userId: string, now: Date) =>
  db
    .selectFrom('sessions')
    .select(['aal', 'amr', 'created_at'])
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .where('ended_at', 'is', null)
    .where('expires_at', '>', now),
);
const endOne = fixedQuery((db, id: string, userId: string, at: Date, reason: SessionEndReason) =>
  db
    .updateTable('sessions')
    .set({ ended_at: at, end_reason: reason })
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .where('ended_at', 'is', null),
);
const endAllOfUser = fixedQuery((db, userId: string, at: Date, reason: SessionEndReason) =>
  db
    .updateTable('sessions')
    .set({ ended_at: at, end_reason: reason })
    .where('user_id', '=', userId)
    .where('ended_at', 'is', null)
    .returning('id'),
);
const endOthersOfUser = fixedQuery((db, userId: string, keep: string, at: Date, reason: SessionEndReason) =>
  db
    .updateTable('sessions')
    .set({ ended_at: at, end_reason: reason })
    .where('user_id', '=', userId)
    .where('id', '<>', keep)
    .where('ended_at', 'is', null)
    .returning('id'),
);

/**
 * Sessions: one row per login (a refresh-token family, whose `family_id` is the session id).
 * Ending one sets `ended_at`; a trigger announces it to every instance (`session:<id>` on the
 * `users_changed` channel). Ended and expired sessions are deleted by the maintenance job
 * (PRUNE_RULES).
 *
 * @example
 * ```ts
 * const sessions = new SessionRepository(trx);
 * await sessions.insert({ id: sid, userId, createdAt: now, expiresAt, userAgent, ipAddress });
 * const ended = await sessions.endAllOfUser(userId, now, 'user_disabled'); // ids of the sessions ended
 * ```
 */
export class SessionRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(session: NewSession): Promise<SessionRow> {
    const { id, userId, createdAt, expiresAt, userAgent, ipAddress } = session;
    return insertSession.takeOne(this.#db, id, userId, createdAt, expiresAt, userAgent, ipAddress);
  }

  /** The user's sessions that have neither ended nor expired at `now`, newest first. */
  async listLive(userId: string, now: Date): Promise<SessionRow[]> {
    return (await liveOfUser.execute(this.#db, userId, now)).rows;
  }

  /**
   * The user agent the session was opened with (truncated as stored); null when it had none,
   * undefined when there is no such session.
   */
  async userAgentOf(id: string): Promise<string | null | undefined> {
    const row = (await userAgentOf.execute(this.#db, id)).rows[0];
    return row === undefined ? undefined : row.user_agent;
  }

  /** Records a refresh: `last_used_at` moves. @returns what its sign-in proved, or undefined when it does not exist. */
  async touch(id: string, at: Date): Promise<SessionAssurance | undefined> {
    return touch.takeFirst(this.#db, id, at);
  }

  /** Sets what a new session's sign-in proved, when it was not a password alone (a passkey: `{aal2, [hwk]}`). */
  async setAssurance(id: string, aal: 'aal1' | 'aal2', amr: readonly string[]): Promise<void> {
    await this.#db
      .updateTable('sessions')
      .set({ aal, amr: [...amr] })
      .where('id', '=', id)
      .execute();
  }

  /**
   * Raises a live session of this user to `aal2`, adding `method` to its `amr` (step-up, a first
   * factor verified). @returns its assurance and expiry now, or undefined when it is not live.
   */
  async raiseAssurance(
    id: string,
    userId: string,
    method: string,
    now: Date,
  ): Promise<(SessionAssurance & { expires_at: Date }) | undefined> {
    return this.#db
      .updateTable('sessions')
      .set((eb) => ({
        aal: 'aal2',
        amr: sql<
          string[]
        >`case when ${method} = any(${eb.ref('amr')}) then ${eb.ref('amr')} else array_append(${eb.ref('amr')}, ${method}::text) end`,
      }))
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .where('ended_at', 'is', null)
      .where('expires_at', '>', now)
      .returning(['aal', 'amr', 'expires_at'])
      .executeTakeFirst();
  }

  /** What the session's sign-in proved (`aal`, `amr`), or undefined when it does not exist. */
  async assurance(id: string): Promise<SessionAssurance | undefined> {
    return assuranceOf.takeFirst(this.#db, id);
  }

  /**
   * What a live session of this user proved, and when it was opened; undefined when it ended,
   * expired or is not theirs.
   */
  async liveAssurance(
    id: string,
    userId: string,
    now: Date,
  ): Promise<(SessionAssurance & { created_at: Date }) | undefined> {
    return liveAssuranceOf.takeFirst(this.#db, id, userId, now);
  }

  /** Ends one live session of this user. @returns whether it was live (and the user's). */
  async end(id: string, userId: string, at: Date, reason: SessionEndReason): Promise<boolean> {
    return (await endOne.affectedRows(this.#db, id, userId, at, reason)) > 0n;
  }

  /** Ends every live session of a user. @returns the ids of the sessions it ended. */
  async endAllOfUser(userId: string, at: Date, reason: SessionEndReason): Promise<string[]> {
    return (await endAllOfUser.execute(this.#db, userId, at, reason)).rows.map((row) => row.id);
  }

  /** Ends every live session of a user but `keep`. @returns the ids of the sessions it ended. */
  async endOthersOfUser(userId: string, keep: string, at: Date, reason: SessionEndReason): Promise<string[]> {
    return (await endOthersOfUser.execute(this.#db, userId, keep, at, reason)).rows.map((row) => row.id);
  }
}
