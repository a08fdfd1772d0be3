import { randomUUID } from 'node:crypto';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, AuthorizationError, ServiceUnavailableError } from '../platform/errors/index.ts';
import { RefreshTokenRepository } from '../sessions/refresh-tokens.repository.ts';
import { SessionRepository } from '../sessions/sessions.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { IP_ADDRESS_MAX, recordAuditEvent, USER_AGENT_MAX, type RequestContext } from '../audit/service.ts';
import { hashRefreshToken, newRefreshToken, PASSWORD_ONLY, type Assurance } from '../keys/tokens.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';
import { canonicalEmail } from './credentials.ts';
import type { HashCallers } from './passwords.ts';
import type { AuthServiceDeps, TokenPair } from './service.ts';
import { issueTokenPair } from './token-pair.ts';

/** What a correct first factor answers for an account with a second factor: no session yet. */
export interface MfaChallenge {
  readonly mfaRequired: true;
  readonly mfaToken: string;
  readonly methods: ('totp' | 'recovery_code' | 'passkey')[];
  readonly expiresIn: number;
}

/** A login: a session's tokens, or the challenge of an account with a second factor. */
export type LoginResult = ({ user: PublicUser } & TokenPair) | MfaChallenge;

/** Opens second-factor challenges for the first factors (MfaService). */
export interface SecondFactorChallenges {
  /** `firstFactor`: `pwd`, or `oidc:<provider>` for a provider sign-in; the session's `amr` starts with it. */
  challenge(user: UserRow, firstFactor: string, context: RequestContext): Promise<MfaChallenge>;
}

const INVALID_CREDENTIALS = 'Invalid email or password';

/**
 * Verifies the password exactly once (against a dummy hash for an unknown email, so both
 * failures cost the same and answer the same), then opens a session, or the second-factor
 * challenge of an account that has one. A disabled account fails exactly like a wrong password.
 * `callers` (account, client address) bound this login's share of the hasher. Every outcome is in the audit log (`login.succeeded` with the new session, `login.failed` with
 * its reason).
 */
export async function login(
  deps: AuthServiceDeps,
  emailInput: string,
  password: string,
  callers: HashCallers,
  context: RequestContext,
): Promise<LoginResult> {
  const user = await checkPassword(deps, emailInput, password, callers, context);
  const upgradedHash = deps.hasher.needsRehash(user.password_hash)
    ? await deps.hasher.hash(password, callers)
    : undefined;
  // An account with a second factor gets a challenge, not tokens: no session opens yet.
  if (user.mfa_enabled) {
    // Fail closed: an instance that cannot check second factors opens no session for such an account.
    if (deps.secondFactor === undefined) {
      throw new ServiceUnavailableError('Second factors cannot be checked here', 'OVERLOADED');
    }
    return deps.secondFactor.challenge(user, 'pwd', context);
  }
  return openSession(deps, user, context, PASSWORD_ONLY, upgradedHash);
}

/** The account `emailInput` and `password` sign in to, or the failure recorded and thrown. */
async function checkPassword(
  deps: AuthServiceDeps,
  emailInput: string,
  password: string,
  callers: HashCallers,
  context: RequestContext,
): Promise<UserRow> {
  // Every login verifies a hash; when no slot is free, refuse before spending a query on it.
  deps.hasher.assertCapacity();
  let email: string;
  try {
    email = canonicalEmail(emailInput);
  } catch {
    await deps.hasher.verifyDummy(password, callers);
    return failLogin(deps, null, context, { reason: 'unknown_email' });
  }
  const user = await new UserRepository(deps.db).findByEmail(email);
  const valid =
    user === undefined
      ? await deps.hasher.verifyDummy(password, callers)
      : await deps.hasher.verify(user.password_hash, password, callers);
  // Not the email tried: it may be anyone's, or a password typed into the wrong field.
  if (user === undefined) return failLogin(deps, null, context, { reason: 'unknown_email' });
  if (!valid) return failLogin(deps, user.id, context, { reason: 'wrong_password' });
  if (user.status !== 'active') return failLogin(deps, user.id, context, { reason: 'disabled' });
  // Only now: an unverified account is not told apart from a wrong password before that.
  if (deps.requireVerifiedEmail === true && user.email_verified_at === null) {
    await deps.audit.append('login.failed', user.id, context, { reason: 'email_not_verified' });
    throw new AuthorizationError('Verify your email address before logging in', 'EMAIL_NOT_VERIFIED');
  }
  return user;
}

/**
 * Opens a session for a user whose sign-in is complete (a password login, or a second factor
 * after it): a refresh-token family whose id is the access token's `sid`, carrying `assurance`.
 * `login.succeeded` is recorded in the same transaction.
 */
export async function openSession(
  deps: AuthServiceDeps,
  user: UserRow,
  context: RequestContext,
  assurance: Assurance,
  upgradedHash?: string,
): Promise<{ user: PublicUser } & TokenPair> {
  const now = deps.clock();
  const refreshToken = newRefreshToken();
  const sid = randomUUID();
  const opened = await withTransaction(deps.db, async (trx) => {
    const txUsers = new UserRepository(trx);
    // The check above ran on the row as read before hashing; the session opens only if that is
    // still the account's row (same hash, email and status) once locked: a password change,
    // reset, disabling or deletion that committed meanwhile wins (see `credentialsUnchanged`).
    const current = await txUsers.lockForUpdate(user.id);
    if (!credentialsUnchanged(user, current)) return current === undefined ? 'deleted' : 'changed';
    await txUsers.updateLastLogin(user.id, now);
    if (upgradedHash !== undefined) await txUsers.updatePasswordHash(user.id, upgradedHash, now);
    const expiresAt = new Date(now.getTime() + deps.refreshTokenTtlSeconds * 1000);
    const sessions = new SessionRepository(trx);
    await sessions.insert({
      id: sid,
      userId: user.id,
      createdAt: now,
      expiresAt,
      userAgent: context.userAgent?.slice(0, USER_AGENT_MAX) ?? null,
      ipAddress: context.ipAddress?.slice(0, IP_ADDRESS_MAX) ?? null,
    });
    if (assurance.aal !== PASSWORD_ONLY.aal || assurance.amr.join() !== PASSWORD_ONLY.amr.join()) {
      await sessions.setAssurance(sid, assurance.aal, assurance.amr);
    }
    await new RefreshTokenRepository(trx).insert({
      userId: user.id,
      familyId: sid,
      tokenHash: hashRefreshToken(refreshToken),
      expiresAt,
    });
    await recordAuditEvent(
      trx,
      'login.succeeded',
      user.id,
      { ...context, sessionId: sid, actorId: user.id },
      {
        amr: [...assurance.amr],
      },
    );
    return 'opened';
  });
  // Answered like a wrong password: the check was against credentials that no longer count, and
  // the caller must not learn that the password was right a moment ago.
  if (opened === 'deleted') return failLogin(deps, null, context, { reason: 'credentials_changed' });
  if (opened === 'changed') return failLogin(deps, user.id, context, { reason: 'credentials_changed' });
  deps.events?.onLogin?.('success');
  return {
    user: toPublicUser({ ...user, last_login_at: now }),
    ...(await issueTokenPair(deps.signer, user, sid, refreshToken, assurance)),
  };
}

/** Records the failure (committed on its own: there is no change to go with it) and answers 401. */
async function failLogin(
  deps: AuthServiceDeps,
  userId: string | null,
  context: RequestContext,
  details: Readonly<Record<string, unknown>>,
): Promise<never> {
  await deps.audit.append('login.failed', userId, context, details);
  deps.events?.onLogin?.('failure');
  throw new AuthenticationError(INVALID_CREDENTIALS, 'INVALID_CREDENTIALS');
}

/**
 * Whether the user's row, as locked by the transaction about to act on a secret checked earlier
 * (outside it, so no connection waits on argon2), still holds what was checked: the same password
 * hash, the same email, still active, the same second-factor state. Every unit of work that
 * changes any of them (password change or reset, email change, disabling, deletion) locks the
 * same row first, so either it committed before this lock was granted and is seen here, or it
 * waits and sees what this one wrote (and ends the session this one opened).
 */
export function credentialsUnchanged(checked: UserRow, locked: UserRow | undefined): boolean {
  return (
    locked !== undefined &&
    locked.password_hash === checked.password_hash &&
    locked.email === checked.email &&
    locked.status === 'active' &&
    // A second factor added meanwhile: a password alone no longer signs in.
    locked.mfa_enabled === checked.mfa_enabled
  );
}
