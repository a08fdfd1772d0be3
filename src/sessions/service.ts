import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { NotFoundError } from '../platform/errors/index.ts';
import { RefreshTokenRepository } from './refresh-tokens.repository.ts';
import { SessionRepository, type SessionEndReason, type SessionRow } from './sessions.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import type { AuditLog, RequestContext } from '../audit/service.ts';
import type { PrincipalCache } from './principal-cache.ts';

/** A session as its owner sees it in the listing. */
export interface PublicSession {
  readonly id: string;
  readonly createdAt: Date;
  readonly lastUsedAt: Date;
  readonly expiresAt: Date;
  readonly userAgent: string | null;
  readonly ipAddress: string | null;
  readonly current: boolean;
}

/** What the live-session cache keeps per `sid`: whose it is, and until when it can live. */
export interface LiveSession {
  readonly userId: string;
  readonly expiresAt: number;
}

export interface SessionEvents {
  /** Sessions ended, by reason (metrics count them). */
  onSessionsEnded?(reason: SessionEndReason, count: number): void;
}

export interface SessionServiceDeps {
  readonly db: Kysely<DB>;
  readonly clock: () => Date;
  readonly audit: AuditLog;
  /**
   * Live sessions as last read, dropped when the database announces their end (see
   * `UserChangeFeed`); without it every authenticated request reads its session's row.
   */
  readonly cache?: PrincipalCache<LiveSession> | undefined;
  readonly events?: SessionEvents | undefined;
}

/**
 * A user's sessions: listing them, ending them, and telling whether an access token's session
 * is still live.
 *
 * @example
 * ```ts
 * const sessions = new SessionService({ db, clock: () => new Date(), audit: new AuditLog(db) });
 * await sessions.list(userId, currentSid);
 * const ended = await withTransaction(db, (trx) => sessions.endAllInTransaction(trx, userId, 'user_disabled', context));
 * sessions.countEnded(ended, 'user_disabled');
 * ```
 */
export class SessionService {
  readonly #deps: SessionServiceDeps;

  constructor(deps: SessionServiceDeps) {
    this.#deps = deps;
  }

  /** The user's live sessions, newest first; `current` marks the one asking. */
  async list(userId: string, currentSid: string): Promise<PublicSession[]> {
    const rows = await new SessionRepository(this.#deps.db).listLive(userId, this.#deps.clock());
    return rows.map((row) => toPublicSession(row, currentSid));
  }

  /**
   * Whether `sid` is a live session of `userId`, as far as the cache knows: undefined when it
   * does not (not cached, or the change feed is not heard); then read the session and
   * {@link learn} what was read.
   */
  cachedLiveness(sid: string, userId: string): boolean | undefined {
    const cached = this.#deps.cache?.get(sid);
    if (cached === undefined) return undefined;
    return cached.userId === userId && cached.expiresAt > this.#deps.clock().getTime();
  }

  /** Read this before reading a session; pass it to {@link learn}. */
  get generation(): number {
    return this.#deps.cache?.generation ?? 0;
  }

  /**
   * Whether the session read for `userId` (undefined: none of theirs) is live now; a live one is
   * cached, unless an end was heard since `generation` was read.
   */
  learn(
    sid: string,
    userId: string,
    session: { readonly expiresAt: Date; readonly endedAt: Date | null } | undefined,
    generation: number,
  ): boolean {
    if (session === undefined || session.endedAt !== null) return false;
    const expiresAt = session.expiresAt.getTime();
    if (expiresAt <= this.#deps.clock().getTime()) return false;
    this.#deps.cache?.store(sid, { userId, expiresAt }, generation);
    return true;
  }

  /**
   * Ends one of the caller's sessions (DELETE /auth/sessions/:id).
   *
   * @throws {NotFoundError} when it is not a live session of theirs: another user's session is
   * indistinguishable from one that does not exist.
   */
  async endOne(userId: string, sid: string, context: RequestContext): Promise<void> {
    const ended = await withTransaction(this.#deps.db, async (trx) => {
      await new UserRepository(trx).lockForUpdate(userId);
      return this.endInTransaction(trx, userId, sid, 'revoked', context);
    });
    if (!ended) throw new NotFoundError('Session not found');
    this.countEnded([sid], 'revoked');
  }

  /** Ends every session of the caller but the current one (DELETE /auth/sessions). */
  async endOthers(userId: string, currentSid: string, context: RequestContext): Promise<void> {
    const ended = await withTransaction(this.#deps.db, async (trx) => {
      await new UserRepository(trx).lockForUpdate(userId);
      return this.endAllInTransaction(trx, userId, 'revoked_others', context, currentSid);
    });
    this.countEnded(ended, 'revoked_others');
  }

  /**
   * Ends one live session of a user in the caller's transaction (its refresh tokens are revoked,
   * a `session.ended` event is recorded). The caller must {@link countEnded} it once committed.
   *
   * @returns whether it was a live session of this user.
   */
  async endInTransaction(
    trx: Kysely<DB>,
    userId: string,
    sid: string,
    reason: SessionEndReason,
    context: RequestContext,
  ): Promise<boolean> {
    const now = this.#deps.clock();
    if (!(await new SessionRepository(trx).end(sid, userId, now, reason))) return false;
    await new RefreshTokenRepository(trx).revokeFamily(sid, now);
    await this.#deps.audit.record(trx, 'session.ended', userId, context, { sessionId: sid, reason });
    return true;
  }

  /**
   * Ends every live session of a user (but `keep`, when given) in the caller's transaction,
   * recording one `session.ended` event each. The caller must {@link countEnded} the ids it returns
   * once the transaction committed.
   */
  async endAllInTransaction(
    trx: Kysely<DB>,
    userId: string,
    reason: SessionEndReason,
    context: RequestContext,
    keep?: string,
  ): Promise<string[]> {
    const repository = new SessionRepository(trx);
    const now = this.#deps.clock();
    const tokens = new RefreshTokenRepository(trx);
    let ended: string[];
    // Every token of the user but the kept session's, including any of a family that has no
    // session row (opened by a release before sessions existed, while a deploy rolled).
    if (keep === undefined) {
      ended = await repository.endAllOfUser(userId, now, reason);
      await tokens.revokeAllForUser(userId, now);
    } else {
      ended = await repository.endOthersOfUser(userId, keep, now, reason);
      await tokens.revokeAllForUserExcept(userId, keep, now);
    }
    for (const sessionId of ended) {
      await this.#deps.audit.record(trx, 'session.ended', userId, context, { sessionId, reason });
    }
    return ended;
  }

  /** Counts committed ends for the metrics (the caches hear of them from the change feed). */
  countEnded(sessionIds: readonly string[], reason: SessionEndReason): void {
    if (sessionIds.length > 0) this.#deps.events?.onSessionsEnded?.(reason, sessionIds.length);
  }
}

function toPublicSession(row: SessionRow, currentSid: string): PublicSession {
  return {
    id: row.id,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    userAgent: row.user_agent,
    ipAddress: row.ip_address,
    current: row.id === currentSid,
  };
}
