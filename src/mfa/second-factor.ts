import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, InvalidTokenError } from '../platform/errors/index.ts';
import { MfaChallengeRepository, MfaFactorRepository, RecoveryCodeRepository } from './mfa.repository.ts';
import { SessionRepository } from '../sessions/sessions.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import type { Principal, TokenPair } from '../auth/service.ts';
import type { LoginResult } from '../auth/sign-in.ts';
import type { AssertionPurpose } from '../passkeys/service.ts';
import type { Assurance } from '../keys/tokens.ts';
import { hashRecoveryCode } from './recovery-codes.ts';
import type { MfaServiceDeps, SecondFactor } from './service.ts';
import { acceptedStep } from './totp.ts';

/** How sign-in challenges are stored and looked up: by the hash of their token. */
export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The account a challenge belongs to, as the throttle and device tokens name it (the canonical
 * email); `unknown` for no live challenge.
 */
export async function accountOfChallenge(deps: MfaServiceDeps, mfaToken: string): Promise<string> {
  const userId = await new MfaChallengeRepository(deps.db).userOf(sha256(mfaToken));
  const user = userId === undefined ? undefined : await new UserRepository(deps.db).findById(userId);
  return user?.email ?? 'unknown';
}

/** Completes a sign-in challenge with a TOTP code or a recovery code: a session at `aal2`. */
export async function completeLogin(
  deps: MfaServiceDeps,
  mfaToken: string,
  factor: SecondFactor,
  context: RequestContext,
): Promise<LoginResult> {
  const now = deps.clock();
  const outcome = await withTransaction(deps.db, async (trx) => {
    const challenges = new MfaChallengeRepository(trx);
    const challenge = await challenges.lockByHash(sha256(mfaToken));
    if (challenge === undefined || challenge.used_at !== null || challenge.expires_at.getTime() <= now.getTime()) {
      return { kind: 'invalid' } as const;
    }
    const user = await new UserRepository(trx).lockForUpdate(challenge.user_id);
    // Disabled meanwhile, factors reset, or the password changed since the first factor: void.
    if (
      user === undefined ||
      user.status !== 'active' ||
      !user.mfa_enabled ||
      sha256(user.password_hash) !== challenge.credential_stamp
    ) {
      await challenges.markUsed(challenge.id, now);
      return { kind: 'invalid' } as const;
    }
    const purpose = { kind: 'mfa', mfaToken } as const;
    const method = await checkSecondFactor(deps, trx, user, factor, purpose, now, context);
    if (method === undefined) return { kind: 'wrong', userId: user.id } as const;
    await challenges.markUsed(challenge.id, now);
    return { kind: 'ok', user, method, firstFactor: challenge.first_factor } as const;
  });
  if (outcome.kind === 'invalid') {
    deps.events?.onChallenge?.('expired_challenge');
    throw new InvalidTokenError('The MFA challenge is invalid or has expired');
  }
  if (outcome.kind === 'wrong') {
    await recordFailure(deps, outcome.userId, context, 'login');
    return wrongCode(deps);
  }
  deps.events?.onChallenge?.('verified');
  if (outcome.method === 'rc') deps.onEmailQueued?.();
  const assurance: Assurance = { aal: 'aal2', amr: [outcome.firstFactor, outcome.method] };
  return deps.auth.openSession(outcome.user, context, assurance);
}

/** Raises the caller's live session to `aal2` with a second factor: a new token pair for it. */
export async function stepUp(
  deps: MfaServiceDeps,
  principal: Principal,
  sid: string,
  factor: SecondFactor,
  context: RequestContext,
): Promise<TokenPair> {
  const now = deps.clock();
  const outcome = await withTransaction(deps.db, async (trx) => {
    const user = await new UserRepository(trx).lockForUpdate(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    const purpose = { kind: 'step_up', userId: user.id } as const;
    const method = user.mfa_enabled
      ? await checkSecondFactor(deps, trx, user, factor, purpose, now, context)
      : undefined;
    if (method === undefined) return { kind: 'wrong' } as const;
    return { kind: 'ok', raised: await raiseAssurance(deps, trx, user, sid, method, now) } as const;
  });
  if (outcome.kind === 'wrong') {
    await recordFailure(deps, principal.userId, context, 'step_up');
    return wrongCode(deps);
  }
  deps.events?.onChallenge?.('verified');
  deps.onEmailQueued?.();
  return outcome.raised();
}

/**
 * A TOTP code of any verified factor (once per step), an unused recovery code, or an assertion
 * of one of the user's passkeys answering a challenge of this `purpose`. @returns the `amr` method.
 */
async function checkSecondFactor(
  deps: MfaServiceDeps,
  trx: Kysely<DB>,
  user: UserRow,
  factor: SecondFactor,
  purpose: AssertionPurpose,
  now: Date,
  context: RequestContext,
): Promise<'otp' | 'rc' | 'hwk' | 'swk' | undefined> {
  if ('passkey' in factor) {
    if (deps.passkeys === undefined) return undefined;
    const outcome = await deps.passkeys.verifyAssertion(trx, factor.passkey, purpose, context);
    return outcome.kind === 'ok' && outcome.passkey.user_id === user.id ? outcome.method : undefined;
  }
  if ('recoveryCode' in factor) {
    const used = await new RecoveryCodeRepository(trx).use(
      user.id,
      hashRecoveryCode(deps.box, factor.recoveryCode),
      now,
    );
    if (used) {
      await recordAuditEvent(trx, 'mfa.recovery_code_used', user.id, context);
      await queueSecurityNotice(trx, user, 'mfa_recovery_code_used', now);
    }
    return used ? 'rc' : undefined;
  }
  const factors = new MfaFactorRepository(trx);
  for (const candidate of await factors.listOfUser(user.id)) {
    if (candidate.verified_at === null) continue;
    const step = await acceptedStep(deps.box, deps.issuer, candidate, factor.code, now);
    if (step === undefined) continue;
    await factors.recordUse(candidate.id, step, now);
    return 'otp';
  }
  return undefined;
}

/**
 * Raises session `sid` to `aal2` with `method`, in the caller's transaction; the token pair it
 * earns is issued once that transaction committed.
 */
export async function raiseAssurance(
  deps: MfaServiceDeps,
  trx: Kysely<DB>,
  user: UserRow,
  sid: string,
  method: string,
  now: Date,
): Promise<() => Promise<TokenPair>> {
  const session = await new SessionRepository(trx).raiseAssurance(sid, user.id, method, now);
  if (session === undefined) throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
  const issue = await deps.auth.reissueInTransaction(trx, user, sid, session.expires_at);
  const assurance: Assurance = { aal: 'aal2', amr: session.amr };
  return () => issue(assurance);
}

async function recordFailure(
  deps: MfaServiceDeps,
  userId: string,
  context: RequestContext,
  during: 'login' | 'step_up',
): Promise<void> {
  await withTransaction(deps.db, (trx) => recordAuditEvent(trx, 'mfa.challenge_failed', userId, context, { during }));
}

/** Counts the failure and answers 401 INVALID_MFA_CODE. */
export function wrongCode(deps: MfaServiceDeps): never {
  deps.events?.onChallenge?.('failed');
  throw new AuthenticationError('The code is wrong, already used or expired', 'INVALID_MFA_CODE');
}
