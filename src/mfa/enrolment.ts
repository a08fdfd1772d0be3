import { Secret } from 'otpauth';
import { withTransaction } from '../platform/db/transactions.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { AuthenticationError, ConflictError, NotFoundError } from '../platform/errors/index.ts';
import { MfaFactorRepository, RecoveryCodeRepository, type MfaFactorRow } from './mfa.repository.ts';
import { PasskeyRepository } from '../passkeys/passkeys.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import type { Principal, TokenPair } from '../auth/service.ts';
import { replaceRecoveryCodes } from './recovery-codes.ts';
import { raiseAssurance, wrongCode } from './second-factor.ts';
import { assertStepUpHolds } from '../sessions/step-up.ts';
import { cancelChangesBegunWithoutFactor } from '../account-emails/email-change.ts';
import type { FactorView, MfaServiceDeps } from './service.ts';
import { acceptedStep, secretPurpose, totpOf } from './totp.ts';

/** An enrolment not verified within this long is void (and deleted at the next enrolment). */
export const UNVERIFIED_FACTOR_TTL_MS = 10 * 60_000;
/** At most this many factors per user, verified or not: enrolment cannot grow the table without bound. */
const MAX_FACTORS = 10;

/** The caller's factors and how many recovery codes are left. */
export async function status(
  deps: MfaServiceDeps,
  userId: string,
): Promise<{ factors: FactorView[]; recoveryCodesRemaining: number }> {
  const now = deps.clock();
  const factors = (await new MfaFactorRepository(deps.db).listOfUser(userId)).filter(
    (factor) => factor.verified_at !== null || !expired(factor, now),
  );
  const recoveryCodesRemaining = await new RecoveryCodeRepository(deps.db).countUnused(userId);
  return { factors: factors.map(viewOf), recoveryCodesRemaining };
}

/** A new, unverified TOTP factor: the secret and its otpauth URI are shown this once. */
export async function enrolTotp(
  deps: MfaServiceDeps,
  principal: Principal,
  name: string | undefined,
): Promise<{ factor: FactorView; secret: string; otpauthUri: string }> {
  const now = deps.clock();
  const secret = new Secret({ size: 20 });
  return withTransaction(deps.db, async (trx) => {
    const user = await new UserRepository(trx).lockForUpdate(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    const factors = new MfaFactorRepository(trx);
    await factors.deleteOfUser(user.id, new Date(now.getTime() - UNVERIFIED_FACTOR_TTL_MS));
    const existing = await factors.listOfUser(user.id);
    if (existing.length >= MAX_FACTORS) {
      throw new ConflictError(`At most ${MAX_FACTORS} factors per account: remove one first`, 'CONFLICT');
    }
    const id = uuidv7();
    const factor = await factors.insert({
      id,
      user_id: user.id,
      type: 'totp',
      name: name ?? `Authenticator ${existing.length + 1}`,
      secret_jwe: await deps.box.seal(new TextEncoder().encode(secret.base32), secretPurpose(id)),
      created_at: now,
    });
    const otpauthUri = totpOf(deps.issuer, secret, user.email).toString();
    return { factor: viewOf(factor), secret: secret.base32, otpauthUri };
  });
}

/**
 * Activates a factor with its first code. The first verified factor comes with ten recovery
 * codes (shown once); the caller's session becomes `aal2` and gets a new token pair.
 */
export async function verifyTotp(
  deps: MfaServiceDeps,
  principal: Principal,
  sid: string,
  factorId: string,
  code: string,
  context: RequestContext,
): Promise<{ factor: FactorView; recoveryCodes?: string[] } & TokenPair> {
  const now = deps.clock();
  const outcome = await withTransaction(deps.db, async (trx) => {
    const users = new UserRepository(trx);
    const user = await users.lockForUpdate(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    // Enrolled at aal1 while the account had no factor: it activates only if that is still so.
    await assertStepUpHolds(trx, user, sid, now);
    const factors = new MfaFactorRepository(trx);
    const factor = await factors.lockOfUser(factorId, user.id);
    if (factor === undefined || factor.verified_at !== null || expired(factor, now)) {
      throw new NotFoundError('No unverified factor with this id');
    }
    const step = await acceptedStep(deps.box, deps.issuer, factor, code, now);
    if (step === undefined) return { kind: 'wrong' } as const;
    await factors.recordUse(factor.id, step, now);
    const first = !user.mfa_enabled;
    let recoveryCodes: string[] | undefined;
    if (first) {
      await users.setMfaEnabled(user.id, true);
      recoveryCodes = await replaceRecoveryCodes(trx, deps.box, user.id, now);
      await cancelChangesBegunWithoutFactor(trx, user.id, now);
    }
    await recordAuditEvent(trx, 'mfa.enrolled', user.id, context, { factorId: factor.id, type: 'totp' });
    await queueSecurityNotice(trx, user, 'mfa_enrolled', now);
    const raised = await raiseAssurance(deps, trx, user, sid, 'otp', now);
    return { kind: 'ok', factor: { ...factor, verified_at: now, last_used_at: now }, recoveryCodes, raised } as const;
  });
  if (outcome.kind === 'wrong') return wrongCode(deps);
  deps.onEmailQueued?.();
  deps.events?.onChallenge?.('verified');
  return {
    factor: viewOf(outcome.factor),
    ...(outcome.recoveryCodes === undefined ? {} : { recoveryCodes: outcome.recoveryCodes }),
    ...(await outcome.raised()),
  };
}

/** Removes one factor; the last one takes the recovery codes with it. */
export async function removeFactor(
  deps: MfaServiceDeps,
  principal: Principal,
  sid: string,
  factorId: string,
  context: RequestContext,
): Promise<void> {
  await withTransaction(deps.db, async (trx) => {
    const users = new UserRepository(trx);
    const user = await users.lockForUpdate(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    await assertStepUpHolds(trx, user, sid, deps.clock());
    const factors = new MfaFactorRepository(trx);
    if (!(await factors.delete(factorId, user.id))) throw new NotFoundError('No factor with this id');
    const left = (await factors.listOfUser(user.id)).filter((factor) => factor.verified_at !== null);
    // A passkey is a factor too: the account keeps asking for one while it has any.
    const passkeysLeft = (await new PasskeyRepository(trx).listOfUser(user.id)).length;
    if (left.length === 0) {
      if (passkeysLeft === 0) await users.setMfaEnabled(user.id, false);
      await replaceRecoveryCodes(trx, deps.box, user.id, deps.clock(), 0);
    }
    await recordAuditEvent(trx, 'mfa.removed', user.id, context, { factorId, lastFactor: left.length === 0 });
    await queueSecurityNotice(trx, user, 'mfa_removed', deps.clock());
  });
  deps.onEmailQueued?.();
}

/** A new set of recovery codes; the previous set stops working. */
export async function regenerateRecoveryCodes(
  deps: MfaServiceDeps,
  principal: Principal,
  sid: string,
  context: RequestContext,
): Promise<string[]> {
  const codes = await withTransaction(deps.db, async (trx) => {
    const user = await new UserRepository(trx).lockForUpdate(principal.userId);
    if (user?.mfa_enabled !== true) throw new NotFoundError('No second factor to recover');
    // The route's step-up check read the account before this lock: a first factor turned on since
    // must not hand a password-only session the recovery codes.
    await assertStepUpHolds(trx, user, sid, deps.clock());
    const codes = await replaceRecoveryCodes(trx, deps.box, user.id, deps.clock());
    await recordAuditEvent(trx, 'mfa.recovery_codes_regenerated', user.id, context);
    await queueSecurityNotice(trx, user, 'mfa_recovery_codes_regenerated', deps.clock());
    return codes;
  });
  deps.onEmailQueued?.();
  return codes;
}

/** An admin removes every factor and recovery code of a user who lost their device; their sessions end. */
export async function resetByAdmin(deps: MfaServiceDeps, userId: string, context: RequestContext): Promise<void> {
  const ended = await withTransaction(deps.db, async (trx) => {
    const users = new UserRepository(trx);
    const user = await users.lockForUpdate(userId);
    if (user === undefined) throw new NotFoundError('User not found');
    const removed =
      (await new MfaFactorRepository(trx).deleteOfUser(user.id)) +
      (await new PasskeyRepository(trx).deleteOfUser(user.id));
    await replaceRecoveryCodes(trx, deps.box, user.id, deps.clock(), 0);
    await users.setMfaEnabled(user.id, false);
    await recordAuditEvent(trx, 'mfa.reset_by_admin', user.id, context, { factorsRemoved: removed });
    await queueSecurityNotice(trx, user, 'mfa_reset_by_admin', deps.clock());
    return deps.sessions.endAllInTransaction(trx, user.id, 'revoked', context);
  });
  deps.sessions.countEnded(ended, 'revoked');
  deps.onEmailQueued?.();
}

function expired(factor: MfaFactorRow, now: Date): boolean {
  return factor.verified_at === null && now.getTime() - factor.created_at.getTime() > UNVERIFIED_FACTOR_TTL_MS;
}

function viewOf(factor: MfaFactorRow): FactorView {
  return {
    id: factor.id,
    type: 'totp',
    name: factor.name,
    createdAt: factor.created_at,
    lastUsedAt: factor.last_used_at,
    verified: factor.verified_at !== null,
  };
}
