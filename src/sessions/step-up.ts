import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { AuthenticationError, AuthorizationError } from '../platform/errors/index.ts';
import type { UserRow } from '../users/users.repository.ts';
import { SessionRepository } from './sessions.repository.ts';

/**
 * The step-up rule (`aal2` once the account has a second factor) checked again when a ceremony
 * completes, on `user` as read under its row lock and session `sid` as stored: a TOTP enrolment,
 * passkey challenge or link flow begun at `aal1` before the account's first factor existed does
 * not complete afterwards (it would add a factor, or an identity, behind the owner's back).
 *
 * @returns the code to refuse with (INVALID_TOKEN: the session ended; MFA_REQUIRED: the account
 *   has a factor and the session is not `aal2`), or undefined when the ceremony may complete.
 */
export async function stepUpRefusal(
  trx: Kysely<DB>,
  user: UserRow,
  sid: string | null | undefined,
  now: Date,
): Promise<'INVALID_TOKEN' | 'MFA_REQUIRED' | undefined> {
  const session =
    sid === null || sid === undefined ? undefined : await new SessionRepository(trx).liveAssurance(sid, user.id, now);
  if (session === undefined) return 'INVALID_TOKEN';
  if (user.mfa_enabled && session.aal !== 'aal2') return 'MFA_REQUIRED';
  return undefined;
}

/**
 * {@link stepUpRefusal} for a request: throws what it names.
 *
 * @throws {AuthenticationError} when the session has ended.
 * @throws {AuthorizationError} MFA_REQUIRED when the account has a factor and the session is not `aal2`.
 */
export async function assertStepUpHolds(
  trx: Kysely<DB>,
  user: UserRow,
  sid: string | null | undefined,
  now: Date,
): Promise<void> {
  const refusal = await stepUpRefusal(trx, user, sid, now);
  if (refusal === 'INVALID_TOKEN') throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
  if (refusal === 'MFA_REQUIRED') {
    throw new AuthorizationError(
      'This action needs a session verified with your second factor: POST /auth/mfa/step-up',
      'MFA_REQUIRED',
    );
  }
}

/** How recent a sign-in stands in for the password of an account that has none. */
export const RECENT_SIGN_IN_SECONDS = 600;

/**
 * What an account without a password proves instead of one, to delete itself or change its
 * address: the session was opened (signed in through its provider or passkey) within
 * {@link RECENT_SIGN_IN_SECONDS}, so an access token alone, stolen or left open, is not enough.
 *
 * @throws {AuthenticationError} when the session has ended.
 * @throws {AuthorizationError} FORBIDDEN when it was opened longer ago.
 */
export async function assertRecentSignIn(
  db: Kysely<DB>,
  userId: string,
  sid: string | null | undefined,
  now: Date,
): Promise<void> {
  const session =
    sid === null || sid === undefined ? undefined : await new SessionRepository(db).liveAssurance(sid, userId, now);
  if (session === undefined) throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
  if (now.getTime() - session.created_at.getTime() > RECENT_SIGN_IN_SECONDS * 1000) {
    throw new AuthorizationError(
      `This account has no password: sign in again (within ${RECENT_SIGN_IN_SECONDS / 60} minutes) to do this`,
      'FORBIDDEN',
    );
  }
}
