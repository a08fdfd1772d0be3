import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { MfaChallengeRepository, MfaFactorRepository } from './mfa.repository.ts';
import { PasskeyRepository } from '../passkeys/passkeys.repository.ts';
import type { UserRow } from '../users/users.repository.ts';
import { NO_CONTEXT, type RequestContext } from '../audit/service.ts';
import type { AuthService, Principal, TokenPair } from '../auth/service.ts';
import type { LoginResult, MfaChallenge, SecondFactorChallenges } from '../auth/sign-in.ts';
import type { PasskeyAssertion, PasskeyService } from '../passkeys/service.ts';
import type { SecretBox } from '../platform/secret-box.ts';
import type { SessionService } from '../sessions/service.ts';
import { enrolTotp, regenerateRecoveryCodes, removeFactor, resetByAdmin, status, verifyTotp } from './enrolment.ts';
import { accountOfChallenge, completeLogin, sha256, stepUp } from './second-factor.ts';

export const CHALLENGE_TTL_SECONDS = 300;

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

  async challenge(user: UserRow, firstFactor: string, context: RequestContext): Promise<MfaChallenge> {
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

  /** See {@link status}. */
  async status(userId: string): Promise<{ factors: FactorView[]; recoveryCodesRemaining: number }> {
    return status(this.#deps, userId);
  }

  /** See {@link enrolTotp}. */
  async enrolTotp(
    principal: Principal,
    name: string | undefined,
  ): Promise<{ factor: FactorView; secret: string; otpauthUri: string }> {
    return enrolTotp(this.#deps, principal, name);
  }

  /** See {@link verifyTotp}. */
  async verifyTotp(
    principal: Principal,
    sid: string,
    factorId: string,
    code: string,
    context: RequestContext,
  ): Promise<{ factor: FactorView; recoveryCodes?: string[] } & TokenPair> {
    return verifyTotp(this.#deps, principal, sid, factorId, code, context);
  }

  /** See {@link accountOfChallenge}. */
  async accountOfChallenge(mfaToken: string): Promise<string> {
    return accountOfChallenge(this.#deps, mfaToken);
  }

  /** See {@link completeLogin}. */
  async completeLogin(mfaToken: string, factor: SecondFactor, context: RequestContext): Promise<LoginResult> {
    return completeLogin(this.#deps, mfaToken, factor, context);
  }

  /** See {@link stepUp}. */
  async stepUp(principal: Principal, sid: string, factor: SecondFactor, context: RequestContext): Promise<TokenPair> {
    return stepUp(this.#deps, principal, sid, factor, context);
  }

  /** See {@link removeFactor}. */
  async removeFactor(principal: Principal, sid: string, factorId: string, context: RequestContext): Promise<void> {
    return removeFactor(this.#deps, principal, sid, factorId, context);
  }

  /** See {@link regenerateRecoveryCodes}. */
  async regenerateRecoveryCodes(principal: Principal, sid: string, context: RequestContext): Promise<string[]> {
    return regenerateRecoveryCodes(this.#deps, principal, sid, context);
  }

  /** See {@link resetByAdmin}. */
  async resetByAdmin(userId: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    return resetByAdmin(this.#deps, userId, context);
  }
}
