import { createHmac } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError } from '../platform/errors/index.ts';
import { AuditEventRepository } from '../audit/audit-events.repository.ts';
import { RefreshTokenRepository, type RefreshTokenRow } from '../sessions/refresh-tokens.repository.ts';
import { SessionRepository } from '../sessions/sessions.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { recordAuditEvent, USER_AGENT_MAX, type RequestContext } from '../audit/service.ts';
import { hashRefreshToken, PASSWORD_ONLY, type Assurance, type AssuranceLevel } from '../keys/tokens.ts';
import type { AuthServiceDeps, TokenPair } from './service.ts';
import { issueTokenPair } from './token-pair.ts';

/** What a presented refresh token came to, decided in one transaction and answered after it. */
type RefreshOutcome =
  | { readonly kind: 'rotated'; readonly user: UserRow; readonly sid: string; readonly assurance: Assurance }
  | {
      readonly kind: 'reissued';
      readonly user: UserRow;
      readonly sid: string;
      readonly refreshToken: string;
      readonly assurance: Assurance;
    }
  | { readonly kind: 'reused'; readonly sid: string | undefined; readonly replay: 'same' | 'other' | undefined }
  | { readonly kind: 'expired' }
  | { readonly kind: 'rejected' };

/**
 * Rotates a refresh token: the presented one stops working and its successor, of the same
 * family (same session, same absolute expiry), is returned. Presented again within the reuse
 * interval, it gets that same successor back with a fresh access token (a lost response, a
 * client racing itself); later, or once the successor was used in turn, it is a sign of theft:
 * the session ends (`refresh.reused` in the audit log) and the call fails.
 *
 * The successor is HMAC(key, presented token): recomputable from the token the client holds,
 * never stored (only its hash is), so answering a retry needs no recoverable copy of any token.
 */
export async function refresh(deps: AuthServiceDeps, presented: string, context: RequestContext): Promise<TokenPair> {
  const now = deps.clock();
  const next = successorOf(deps.refreshSuccessorKeys[0], presented);
  const outcome = await withTransaction(deps.db, (trx) => decide(deps, trx, presented, next, now, context));
  switch (outcome.kind) {
    case 'rotated':
      deps.events?.onRefresh?.('rotated');
      return issueTokenPair(deps.signer, outcome.user, outcome.sid, next, outcome.assurance);
    case 'reissued':
      deps.events?.onReuseInterval?.('same');
      deps.events?.onRefresh?.('reissued');
      return issueTokenPair(deps.signer, outcome.user, outcome.sid, outcome.refreshToken, outcome.assurance);
    case 'reused':
      if (outcome.sid !== undefined) deps.sessions.countEnded([outcome.sid], 'refresh_reused');
      if (outcome.replay === 'other') deps.events?.onReuseInterval?.('other');
      deps.events?.onRefresh?.('reused');
      throw new AuthenticationError('Refresh token was already used; its session has been revoked', 'INVALID_TOKEN');
    case 'expired':
      deps.events?.onRefresh?.('rejected');
      throw new AuthenticationError('Refresh token has expired', 'TOKEN_EXPIRED');
    case 'rejected':
      deps.events?.onRefresh?.('rejected');
      throw new AuthenticationError('Invalid refresh token', 'INVALID_TOKEN');
  }
}

/** In the refresh's transaction: rotate a live token, answer a replay, or end a reused token's session. */
async function decide(
  deps: AuthServiceDeps,
  trx: Kysely<DB>,
  presented: string,
  next: string,
  now: Date,
  context: RequestContext,
): Promise<RefreshOutcome> {
  const locked = await lockedToken(trx, presented, now);
  if (locked === undefined || locked.token.revoked_at !== null) return { kind: 'rejected' };
  if (locked.user === undefined) return { kind: 'expired' };
  const { token, user } = locked;
  // A disabled account's tokens were revoked with its sessions; this is the belt to those braces.
  if (user.status !== 'active') return { kind: 'rejected' };
  // The user's row lock makes this the only unit of work on the user's sessions right now, so
  // what is read here is not changing under us: a token already rotated was rotated before.
  if (token.rotated_at === null && (await new RefreshTokenRepository(trx).markRotated(token.id, now))) {
    return rotate(trx, token, user, next, now);
  }
  let replay: 'same' | 'other' | undefined;
  if (token.rotated_at !== null && withinReuseInterval(deps, token.rotated_at, now)) {
    // Only the session's own client gets the successor: another user agent holding a token
    // rotated a moment ago is treated as reuse (the tabs of one browser share its agent).
    replay = (await sameClient(trx, token.family_id, context)) ? 'same' : 'other';
    const reissued =
      replay === 'same'
        ? await liveSuccessor(deps, trx, token.family_id, token.rotated_at, user, presented, context)
        : undefined;
    if (reissued !== undefined) return reissued;
  }
  return endReusedSession(deps, trx, token.family_id, user, replay, now, context);
}

/** The successor of the presented token, of the same family and expiry; the session is touched. */
async function rotate(
  trx: Kysely<DB>,
  token: RefreshTokenRow,
  user: UserRow,
  next: string,
  now: Date,
): Promise<RefreshOutcome> {
  const sid = token.family_id;
  await new RefreshTokenRepository(trx).insert({
    userId: token.user_id,
    familyId: sid,
    tokenHash: hashRefreshToken(next),
    expiresAt: token.expires_at,
  });
  const sessions = new SessionRepository(trx);
  // A family opened by a release before sessions existed (while a deploy rolled) gets its session now.
  let assurance = await sessions.touch(sid, now);
  if (assurance === undefined) {
    await sessions.insert({
      id: sid,
      userId: token.user_id,
      createdAt: token.created_at,
      expiresAt: token.expires_at,
      userAgent: null,
      ipAddress: null,
    });
    assurance = await sessions.touch(sid, now);
  }
  return { kind: 'rotated', user, sid, assurance: assuranceOf(assurance) };
}

/**
 * The successor the presented token was rotated into, if it is still the family's live token
 * (derived with the current key or, during a key rotation, a previous one).
 */
async function liveSuccessor(
  deps: AuthServiceDeps,
  trx: Kysely<DB>,
  sid: string,
  rotatedAt: Date,
  user: UserRow,
  presented: string,
  context: RequestContext,
): Promise<RefreshOutcome | undefined> {
  for (const key of deps.refreshSuccessorKeys) {
    const successor = await new RefreshTokenRepository(trx).findByHash(hashRefreshToken(successorOf(key, presented)));
    if (successor === undefined) continue;
    if (successor.revoked_at !== null || successor.rotated_at !== null) return undefined;
    await recordReplay(
      trx,
      user.id,
      { ...context, sessionId: sid, actorId: user.id },
      deps.refreshReuseIntervalSeconds,
      {
        sessionId: sid,
        rotatedAt: rotatedAt.toISOString(),
      },
    );
    const assurance = assuranceOf(await new SessionRepository(trx).assurance(sid));
    return { kind: 'reissued', user, sid, refreshToken: successorOf(key, presented), assurance };
  }
  return undefined;
}

/** A rotated token presented again: a sign of theft, so its family is revoked and its session ends. */
async function endReusedSession(
  deps: AuthServiceDeps,
  trx: Kysely<DB>,
  sid: string,
  user: UserRow,
  replay: 'same' | 'other' | undefined,
  now: Date,
  context: RequestContext,
): Promise<RefreshOutcome> {
  // Committed with the transaction; the error is raised after it, outside.
  const userContext = { ...context, sessionId: sid };
  await recordAuditEvent(trx, 'refresh.reused', user.id, userContext, {
    sessionId: sid,
    ...(replay === 'other' ? { withinReuseInterval: true, reason: 'other_client' } : {}),
  });
  await new RefreshTokenRepository(trx).revokeFamily(sid, now);
  const ended = await deps.sessions.endInTransaction(trx, user.id, sid, 'refresh_reused', userContext);
  return { kind: 'reused', sid: ended ? sid : undefined, replay };
}

/** Ends the session of a live refresh token (on every device it was rotated to). */
export async function logout(deps: AuthServiceDeps, presented: string, context: RequestContext): Promise<void> {
  const now = deps.clock();
  const outcome = await withTransaction(deps.db, async (trx) => {
    const token = (await lockedToken(trx, presented, now))?.token;
    if (token === undefined || token.revoked_at !== null || token.expires_at.getTime() <= now.getTime()) {
      return { kind: 'invalid', sid: undefined, reason: 'logout' } as const;
    }
    const sid = token.family_id;
    const userContext = { ...context, sessionId: sid, actorId: token.user_id };
    // A rotated token still ends its session (it may be the thief's), but is not a valid logout.
    const reason = token.rotated_at === null ? 'logout' : 'refresh_reused';
    const ended = await deps.sessions.endInTransaction(trx, token.user_id, sid, reason, userContext);
    await new RefreshTokenRepository(trx).revokeFamily(sid, now);
    return { kind: token.rotated_at === null ? 'done' : 'invalid', sid: ended ? sid : undefined, reason } as const;
  });
  if (outcome.sid !== undefined) deps.sessions.countEnded([outcome.sid], outcome.reason);
  if (outcome.kind === 'invalid') throw new AuthenticationError('Invalid refresh token', 'INVALID_TOKEN');
}

/**
 * Records `refresh.reuse_interval` for a replay answered with the successor, at most once per
 * user per reuse interval: a client replaying its token in a loop cannot grow the audit log (the
 * metric counts every replay).
 */
async function recordReplay(
  trx: Kysely<DB>,
  userId: string,
  context: RequestContext,
  intervalSeconds: number,
  details: Readonly<Record<string, unknown>>,
): Promise<void> {
  const recent = await new AuditEventRepository(trx).countRecent(
    userId,
    userId,
    'refresh.reuse_interval',
    intervalSeconds,
  );
  if (recent.count === 0) await recordAuditEvent(trx, 'refresh.reuse_interval', userId, context, details);
}

/**
 * Whether the request comes from the client the session was opened by, as far as the user
 * agent tells (the stored one is truncated; compared the same way). A session opened without
 * one matches only requests without one.
 */
async function sameClient(trx: Kysely<DB>, sid: string, context: RequestContext): Promise<boolean> {
  const opened = await new SessionRepository(trx).userAgentOf(sid);
  if (opened === undefined) return false;
  return opened === (context.userAgent?.slice(0, USER_AGENT_MAX) ?? null);
}

function withinReuseInterval(deps: AuthServiceDeps, rotatedAt: Date, now: Date): boolean {
  const intervalMs = deps.refreshReuseIntervalSeconds * 1000;
  return intervalMs > 0 && now.getTime() - rotatedAt.getTime() <= intervalMs;
}

/** A session row's assurance as token claims; a row the constraint allows only these levels in. */
function assuranceOf(row: { aal: string; amr: string[] } | undefined): Assurance {
  if (row === undefined) return PASSWORD_ONLY;
  const aal: AssuranceLevel = row.aal === 'aal2' ? 'aal2' : 'aal1';
  return { aal, amr: row.amr };
}

/** The successor refresh token of `presented`: the same for the same token, on every instance. */
function successorOf(key: string, presented: string): string {
  return createHmac('sha256', key).update(presented).digest('base64url');
}

/**
 * The refresh token `presented` stands for, read after locking its user's row, so the state
 * seen is the one left by whichever unit of work on that user's sessions committed last.
 */
async function lockedToken(
  trx: Kysely<DB>,
  presented: string,
  now: Date,
): Promise<{ token: RefreshTokenRow; user: UserRow } | { token: RefreshTokenRow; user: undefined } | undefined> {
  const tokens = new RefreshTokenRepository(trx);
  const tokenHash = hashRefreshToken(presented);
  const seen = await tokens.findByHash(tokenHash);
  if (seen === undefined) return undefined;
  // Revoked and expired are final: such a token is refused without locking its user's row, so
  // presenting it again and again cannot queue every other request on that user behind a lock.
  if (seen.revoked_at !== null || seen.expires_at.getTime() <= now.getTime()) return { token: seen, user: undefined };
  const user = await new UserRepository(trx).lockForUpdate(seen.user_id);
  // Read again: a statement after the lock sees everything committed before it was granted.
  const token = user === undefined ? undefined : await tokens.findByHash(tokenHash);
  return token === undefined || user === undefined ? undefined : { token, user };
}
