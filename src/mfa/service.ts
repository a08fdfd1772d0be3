import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, ConflictError, InvalidTokenError, NotFoundError } from '../platform/errors/index.ts';
import {
  MfaChallengeRepository,
  MfaFactorRepository,
  RecoveryCodeRepository,
  type MfaFactorRow,
} from './mfa.repository.ts';
import { PasskeyRepository } from '../passkeys/passkeys.repository.ts';
import { SessionRepository } from '../sessions/sessions.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { NO_CONTEXT, recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import type { AuthService, Principal, TokenPair } from '../auth/service.ts';
import type { LoginResult, MfaChallenge, SecondFactorChallenges } from '../auth/sign-in.ts';
import type { AssertionPurpose, PasskeyAssertion, PasskeyService } from '../passkeys/service.ts';
import type { SecretBox } from '../platform/secret-box.ts';
import type { SessionService } from '../sessions/service.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import type { Assurance } from '../keys/tokens.ts';

/** RFC 6238 as the contract fixes it: SHA-1, 6 digits, 30 s, one step of drift either way. */
const TOTP_PERIOD_SECONDS = 30;
const TOTP_DIGITS = 6;
const TOTP_WINDOW = 1;
/** An enrolment not verified within this long is void (and deleted at the next enrolment). */
export const UNVERIFIED_FACTOR_TTL_MS = 10 * 60_000;
export const CHALLENGE_TTL_SECONDS = 300;
export const RECOVERY_CODE_COUNT = 10;
/** At most this many factors per user, verified or not: enrolment cannot grow the table without bound. */
const MAX_FACTORS = 10;

export type SecondFactor =
  { readonly code: string } | { readonly recoveryCode: string } | { readonly passkey: PasskeyAssertion };

export interface FactorView {
  readonly id: string;
  readonly type: 'totp';
  readonly name: string;
  readonly createdAt: Date;
  readonly lastUsedAt: Date | null;
  readonly verified: boolean;
}

export interface MfaEvents {
  /** A second-factor check: `verified`, `failed`, `replayed`, `expired_challenge`. */
  onChallenge?(outcome: 'verified' | 'failed' | 'expired_challenge'): void;
}

export interface MfaServiceDeps {
  readonly db: Kysely<DB>;
  readonly box: SecretBox;
  readonly clock: () => Date;
  /** Shown by authenticator apps beside the account (the `issuer` of the otpauth URI). */
  readonly issuer: string;
  readonly auth: AuthService;
  readonly sessions: SessionService;
  /** Checks passkey assertions (a passkey is a factor too); without it `{passkey}` is a wrong factor. */
  readonly passkeys?: PasskeyService | undefined;
  readonly events?: MfaEvents | undefined;
  /** Called once a transaction that queued a security notice committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The sign-in challenge a correct first factor opens for an account with a second factor: a
 * random single-use token, stored as its hash, bound to the account and to the password hash it
 * was checked against, valid {@link CHALLENGE_TTL_SECONDS}.
 */
export class MfaChallengeIssuer implements SecondFactorChallenges {
  readonly #db: Kysely<DB>;
  readonly #clock: () => Date;

  constructor(db: Kysely<DB>, clock: () => Date) {
    this.#db = db;
    this.#clock = clock;
  }

  async challenge(user: UserRow, firstFactor: 'pwd', context: RequestContext): Promise<MfaChallenge> {
    const now = this.#clock();
    const mfaToken = randomBytes(32).toString('base64url');
    await withTransaction(this.#db, async (trx) => {
      const challenges = new MfaChallengeRepository(trx);
      await challenges.deleteSpent(user.id, now);
      await challenges.insert({
        id: randomUUID(),
        user_id: user.id,
        token_hash: sha256(mfaToken),
        first_factor: firstFactor,
        credential_stamp: sha256(user.password_hash),
        user_agent: context.userAgent?.slice(0, 256) ?? null,
        ip_address: context.ipAddress?.slice(0, 64) ?? null,
        created_at: now,
        expires_at: new Date(now.getTime() + CHALLENGE_TTL_SECONDS * 1000),
      });
    });
    return { mfaRequired: true, mfaToken, methods: await this.#methodsOf(user.id), expiresIn: CHALLENGE_TTL_SECONDS };
  }

  /** The second factors the account can answer with: its TOTP factors (and recovery codes), its passkeys. */
  async #methodsOf(userId: string): Promise<MfaChallenge['methods']> {
    const totp = (await new MfaFactorRepository(this.#db).listOfUser(userId)).some((f) => f.verified_at !== null);
    const passkeys = (await new PasskeyRepository(this.#db).listOfUser(userId)).length > 0;
    return [...(totp ? (['totp', 'recovery_code'] as const) : []), ...(passkeys ? (['passkey'] as const) : [])];
  }
}

/**
 * Second factors: TOTP enrolment (otpauth: RFC 6238 with the secret in the otpauth URI every
 * authenticator app reads), recovery codes, completing a sign-in challenge, step-up, and an
 * admin's reset. Secrets are sealed under ENCRYPTION_KEY and never leave after enrolment.
 *
 * @example
 * ```ts
 * const { factor, otpauthUri } = await mfa.enrolTotp(principal, 'phone');
 * const verified = await mfa.verifyTotp(principal, sid, factor.id, '123456', context);
 * ```
 */
export class MfaService {
  readonly #deps: MfaServiceDeps;

  constructor(deps: MfaServiceDeps) {
    this.#deps = deps;
  }

  /** The caller's factors and how many recovery codes are left. */
  async status(userId: string): Promise<{ factors: FactorView[]; recoveryCodesRemaining: number }> {
    const now = this.#deps.clock();
    const factors = (await new MfaFactorRepository(this.#deps.db).listOfUser(userId)).filter(
      (factor) => factor.verified_at !== null || !this.#expired(factor, now),
    );
    const recoveryCodesRemaining = await new RecoveryCodeRepository(this.#deps.db).countUnused(userId);
    return { factors: factors.map(viewOf), recoveryCodesRemaining };
  }

  /** A new, unverified TOTP factor: the secret and its otpauth URI are shown this once. */
  async enrolTotp(
    principal: Principal,
    name: string | undefined,
  ): Promise<{ factor: FactorView; secret: string; otpauthUri: string }> {
    const now = this.#deps.clock();
    const secret = new Secret({ size: 20 });
    return withTransaction(this.#deps.db, async (trx) => {
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
        secret_jwe: await this.#deps.box.seal(new TextEncoder().encode(secret.base32), purposeOf(id)),
        created_at: now,
      });
      const otpauthUri = this.#totp(secret, user.email).toString();
      return { factor: viewOf(factor), secret: secret.base32, otpauthUri };
    });
  }

  /**
   * Activates a factor with its first code. The first verified factor comes with ten recovery
   * codes (shown once); the caller's session becomes `aal2` and gets a new token pair.
   */
  async verifyTotp(
    principal: Principal,
    sid: string,
    factorId: string,
    code: string,
    context: RequestContext,
  ): Promise<{ factor: FactorView; recoveryCodes?: string[] } & TokenPair> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const factors = new MfaFactorRepository(trx);
      const factor = await factors.lockOfUser(factorId, user.id);
      if (factor === undefined || factor.verified_at !== null || this.#expired(factor, now)) {
        throw new NotFoundError('No unverified factor with this id');
      }
      const step = await this.#acceptedStep(factor, code, now);
      if (step === undefined) return { kind: 'wrong' } as const;
      await factors.recordUse(factor.id, step, now);
      const first = !user.mfa_enabled;
      let recoveryCodes: string[] | undefined;
      if (first) {
        await users.setMfaEnabled(user.id, true);
        recoveryCodes = await replaceRecoveryCodes(trx, this.#deps.box, user.id, now);
      }
      await recordAuditEvent(trx, 'mfa.enrolled', user.id, context, { factorId: factor.id, type: 'totp' });
      await queueSecurityNotice(trx, user, 'mfa_enrolled', now);
      const raised = await this.#raise(trx, user, sid, 'otp', now);
      return { kind: 'ok', factor: { ...factor, verified_at: now, last_used_at: now }, recoveryCodes, raised } as const;
    });
    if (outcome.kind === 'wrong') return this.#wrongCode();
    this.#deps.onEmailQueued?.();
    this.#deps.events?.onChallenge?.('verified');
    return {
      factor: viewOf(outcome.factor),
      ...(outcome.recoveryCodes === undefined ? {} : { recoveryCodes: outcome.recoveryCodes }),
      ...(await outcome.raised()),
    };
  }

  /**
   * The account a challenge belongs to, as the throttle and device tokens name it (the canonical
   * email); `unknown` for no live challenge.
   */
  async accountOfChallenge(mfaToken: string): Promise<string> {
    const userId = await new MfaChallengeRepository(this.#deps.db).userOf(sha256(mfaToken));
    const user = userId === undefined ? undefined : await new UserRepository(this.#deps.db).findById(userId);
    return user?.email ?? 'unknown';
  }

  /** Completes a sign-in challenge with a TOTP code or a recovery code: a session at `aal2`. */
  async completeLogin(mfaToken: string, factor: SecondFactor, context: RequestContext): Promise<LoginResult> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
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
      const method = await this.#checkSecondFactor(trx, user, factor, purpose, now, context);
      if (method === undefined) return { kind: 'wrong', userId: user.id } as const;
      await challenges.markUsed(challenge.id, now);
      return { kind: 'ok', user, method } as const;
    });
    if (outcome.kind === 'invalid') {
      this.#deps.events?.onChallenge?.('expired_challenge');
      throw new InvalidTokenError('The MFA challenge is invalid or has expired');
    }
    if (outcome.kind === 'wrong') {
      await this.#recordFailure(outcome.userId, context, 'login');
      return this.#wrongCode();
    }
    this.#deps.events?.onChallenge?.('verified');
    if (outcome.method === 'rc') this.#deps.onEmailQueued?.();
    const assurance: Assurance = { aal: 'aal2', amr: ['pwd', outcome.method] };
    return this.#deps.auth.openSession(outcome.user, context, assurance);
  }

  /** Raises the caller's live session to `aal2` with a second factor: a new token pair for it. */
  async stepUp(principal: Principal, sid: string, factor: SecondFactor, context: RequestContext): Promise<TokenPair> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const user = await new UserRepository(trx).lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const purpose = { kind: 'step_up', userId: user.id } as const;
      const method = user.mfa_enabled
        ? await this.#checkSecondFactor(trx, user, factor, purpose, now, context)
        : undefined;
      if (method === undefined) return { kind: 'wrong' } as const;
      return { kind: 'ok', raised: await this.#raise(trx, user, sid, method, now) } as const;
    });
    if (outcome.kind === 'wrong') {
      await this.#recordFailure(principal.userId, context, 'step_up');
      return this.#wrongCode();
    }
    this.#deps.events?.onChallenge?.('verified');
    this.#deps.onEmailQueued?.();
    return outcome.raised();
  }

  /** Removes one factor; the last one takes the recovery codes with it. */
  async removeFactor(principal: Principal, factorId: string, context: RequestContext): Promise<void> {
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const factors = new MfaFactorRepository(trx);
      if (!(await factors.delete(factorId, user.id))) throw new NotFoundError('No factor with this id');
      const left = (await factors.listOfUser(user.id)).filter((factor) => factor.verified_at !== null);
      // A passkey is a factor too: the account keeps asking for one while it has any.
      const passkeysLeft = (await new PasskeyRepository(trx).listOfUser(user.id)).length;
      if (left.length === 0) {
        if (passkeysLeft === 0) await users.setMfaEnabled(user.id, false);
        await replaceRecoveryCodes(trx, this.#deps.box, user.id, this.#deps.clock(), 0);
      }
      await recordAuditEvent(trx, 'mfa.removed', user.id, context, { factorId, lastFactor: left.length === 0 });
      await queueSecurityNotice(trx, user, 'mfa_removed', this.#deps.clock());
    });
    this.#deps.onEmailQueued?.();
  }

  /** A new set of recovery codes; the previous set stops working. */
  async regenerateRecoveryCodes(principal: Principal, context: RequestContext): Promise<string[]> {
    const codes = await withTransaction(this.#deps.db, async (trx) => {
      const user = await new UserRepository(trx).lockForUpdate(principal.userId);
      if (user?.mfa_enabled !== true) throw new NotFoundError('No second factor to recover');
      const codes = await replaceRecoveryCodes(trx, this.#deps.box, user.id, this.#deps.clock());
      await recordAuditEvent(trx, 'mfa.recovery_codes_regenerated', user.id, context);
      await queueSecurityNotice(trx, user, 'mfa_recovery_codes_regenerated', this.#deps.clock());
      return codes;
    });
    this.#deps.onEmailQueued?.();
    return codes;
  }

  /** An admin removes every factor and recovery code of a user who lost their device; their sessions end. */
  async resetByAdmin(userId: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    const ended = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(userId);
      if (user === undefined) throw new NotFoundError('User not found');
      const removed =
        (await new MfaFactorRepository(trx).deleteOfUser(user.id)) +
        (await new PasskeyRepository(trx).deleteOfUser(user.id));
      await replaceRecoveryCodes(trx, this.#deps.box, user.id, this.#deps.clock(), 0);
      await users.setMfaEnabled(user.id, false);
      await recordAuditEvent(trx, 'mfa.reset_by_admin', user.id, context, { factorsRemoved: removed });
      await queueSecurityNotice(trx, user, 'mfa_reset_by_admin', this.#deps.clock());
      return this.#deps.sessions.endAllInTransaction(trx, user.id, 'revoked', context);
    });
    this.#deps.sessions.countEnded(ended, 'revoked');
    this.#deps.onEmailQueued?.();
  }

  /**
   * A TOTP code of any verified factor (once per step), an unused recovery code, or an assertion
   * of one of the user's passkeys answering a challenge of this `purpose`. @returns the `amr` method.
   */
  async #checkSecondFactor(
    trx: Kysely<DB>,
    user: UserRow,
    factor: SecondFactor,
    purpose: AssertionPurpose,
    now: Date,
    context: RequestContext,
  ): Promise<'otp' | 'rc' | 'hwk' | 'swk' | undefined> {
    if ('passkey' in factor) {
      if (this.#deps.passkeys === undefined) return undefined;
      const outcome = await this.#deps.passkeys.verifyAssertion(trx, factor.passkey, purpose, context);
      return outcome.kind === 'ok' && outcome.passkey.user_id === user.id ? outcome.method : undefined;
    }
    if ('recoveryCode' in factor) {
      const used = await new RecoveryCodeRepository(trx).use(
        user.id,
        hashRecoveryCode(this.#deps.box, factor.recoveryCode),
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
      const step = await this.#acceptedStep(candidate, factor.code, now);
      if (step === undefined) continue;
      await factors.recordUse(candidate.id, step, now);
      return 'otp';
    }
    return undefined;
  }

  /** The time step `code` belongs to, if it is right and newer than the last one this factor accepted. */
  async #acceptedStep(factor: MfaFactorRow, code: string, now: Date): Promise<number | undefined> {
    const base32 = new TextDecoder().decode(await this.#deps.box.open(factor.secret_jwe, purposeOf(factor.id)));
    const totp = this.#totp(Secret.fromBase32(base32), '');
    const delta = totp.validate({ token: code, timestamp: now.getTime(), window: TOTP_WINDOW });
    if (delta === null) return undefined;
    const step = TOTP.counter({ period: TOTP_PERIOD_SECONDS, timestamp: now.getTime() }) + delta;
    const last = factor.last_used_step === null ? undefined : Number(factor.last_used_step);
    return last !== undefined && step <= last ? undefined : step;
  }

  async #raise(trx: Kysely<DB>, user: UserRow, sid: string, method: string, now: Date) {
    const session = await new SessionRepository(trx).raiseAssurance(sid, user.id, method, now);
    if (session === undefined) throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
    const issue = await this.#deps.auth.reissueInTransaction(trx, user, sid, session.expires_at);
    const assurance: Assurance = { aal: 'aal2', amr: session.amr };
    return () => issue(assurance);
  }

  async #recordFailure(userId: string, context: RequestContext, during: 'login' | 'step_up'): Promise<void> {
    await withTransaction(this.#deps.db, (trx) =>
      recordAuditEvent(trx, 'mfa.challenge_failed', userId, context, { during }),
    );
  }

  #wrongCode(): never {
    this.#deps.events?.onChallenge?.('failed');
    throw new AuthenticationError('The code is wrong, already used or expired', 'INVALID_MFA_CODE');
  }

  #expired(factor: MfaFactorRow, now: Date): boolean {
    return factor.verified_at === null && now.getTime() - factor.created_at.getTime() > UNVERIFIED_FACTOR_TTL_MS;
  }

  #totp(secret: Secret, label: string): TOTP {
    return new TOTP({
      issuer: this.#deps.issuer,
      label,
      algorithm: 'SHA1',
      digits: TOTP_DIGITS,
      period: TOTP_PERIOD_SECONDS,
      secret,
    });
  }
}

function purposeOf(factorId: string): string {
  return `totp:${factorId}`;
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

/**
 * Recovery codes are stored as keyed digests (see `SecretBox.digest`), compared without their
 * dash and case: `abcde-fghij` is `ABCDEFGHIJ`.
 */
function hashRecoveryCode(box: SecretBox, code: string): string {
  return box.digest(code.replace(/[\s-]/g, '').toUpperCase(), 'recovery-code');
}

/** Ten new codes of 50 random bits each (ten Crockford base32 characters), replacing the user's set. */
async function replaceRecoveryCodes(
  trx: Kysely<DB>,
  box: SecretBox,
  userId: string,
  now: Date,
  count = RECOVERY_CODE_COUNT,
) {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  const codes = Array.from({ length: count }, () => {
    const bytes = randomBytes(10);
    const chars = [...bytes].map((byte) => alphabet[byte % 32] ?? '0').join('');
    return `${chars.slice(0, 5)}-${chars.slice(5)}`;
  });
  await new RecoveryCodeRepository(trx).replace(
    userId,
    codes.map((code) => hashRecoveryCode(box, code)),
    now,
    codes.map(() => randomUUID()),
  );
  return codes;
}
