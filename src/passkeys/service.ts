import { assertStepUpHolds } from '../sessions/step-up.ts';
import { hasPassword } from '../auth/credentials.ts';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, ConflictError, NotFoundError } from '../platform/errors/index.ts';
import { MfaFactorRepository } from '../mfa/mfa.repository.ts';
import { IdentityRepository } from '../oauth/identities.repository.ts';
import { PasskeyRepository, type PasskeyRow } from './passkeys.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import type { AuthService, Principal, TokenPair } from '../auth/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import type { PublicUser } from '../users/service.ts';
import { authenticationOptions, verifyAssertion } from './assertion.ts';
import { passkeyView, register, registrationOptions } from './registration.ts';
import { signIn } from './sign-in.ts';

/** The relying party (WEBAUTHN_RP_ID, WEBAUTHN_RP_NAME, WEBAUTHN_ORIGINS). */
export interface RelyingParty {
  readonly id: string;
  readonly name: string;
  readonly origins: readonly string[];
}

export interface PasskeyView {
  readonly id: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly lastUsedAt: Date | null;
  readonly backedUp: boolean;
  readonly transports: string[];
}

/** What an authentication ceremony is for, fixed when its options are handed out. */
export type AssertionPurpose =
  | { readonly kind: 'login' }
  | { readonly kind: 'mfa'; readonly mfaToken: string }
  | { readonly kind: 'step_up'; readonly userId: string };

/** A passkey assertion in a body: the challenge it answers and the browser's JSON credential. */
export interface PasskeyAssertion {
  readonly challengeId: string;
  readonly credential: AuthenticationResponseJSON;
}

/** The outcome of checking an assertion: the passkey and its `amr` method, or why not. */
export type AssertionOutcome =
  | { readonly kind: 'ok'; readonly passkey: PasskeyRow; readonly method: 'hwk' | 'swk' }
  | { readonly kind: 'invalid_challenge' }
  | { readonly kind: 'failed'; readonly userId: string | null; readonly reason: string };

export interface PasskeyServiceDeps {
  readonly db: Kysely<DB>;
  readonly clock: () => Date;
  readonly rp: RelyingParty;
  readonly auth: AuthService;
  /** As for passwords: an account whose address is not verified gets 403 EMAIL_NOT_VERIFIED after a valid passkey. */
  readonly requireVerifiedEmail?: boolean | undefined;
  /** Called once a transaction that queued a security notice committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
}

/**
 * Passkeys (WebAuthn, api.md "Passkeys"): registration, sign-in with or without an email, and
 * the assertion checks the second factor and step-up reuse. `@simplewebauthn/server` generates
 * the options and verifies attestations and assertions; this feature owns the challenges (in the
 * database, single use, 5 minutes, bound to a ceremony and a purpose), the credentials and the
 * rules around them (user verification required, counters that go backwards refused).
 *
 * @example
 * ```ts
 * const options = await passkeys.registrationOptions(principal);
 * const passkey = await passkeys.register(principal, sessionId, credentialFromTheBrowser, 'laptop', context);
 * ```
 */
export class PasskeyService {
  readonly #deps: PasskeyServiceDeps;

  constructor(deps: PasskeyServiceDeps) {
    this.#deps = deps;
  }

  async list(userId: string): Promise<PasskeyView[]> {
    return (await new PasskeyRepository(this.#deps.db).listOfUser(userId)).map(passkeyView);
  }

  /** See {@link registrationOptions}. */
  async registrationOptions(principal: Principal): Promise<PublicKeyCredentialCreationOptionsJSON> {
    return registrationOptions(this.#deps, principal);
  }

  /** See {@link register}. */
  async register(
    principal: Principal,
    sid: string,
    credential: RegistrationResponseJSON,
    name: string | undefined,
    context: RequestContext,
  ): Promise<PasskeyView> {
    return register(this.#deps, principal, sid, credential, name, context);
  }

  /** See {@link authenticationOptions}. */
  async authenticationOptions(
    purpose: AssertionPurpose | { readonly kind: 'login'; readonly email: string },
  ): Promise<{ challengeId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
    return authenticationOptions(this.#deps, purpose);
  }

  /** The account a credential belongs to, for throttling per account (the credential id when unknown). */
  async accountOfCredential(credentialId: string): Promise<string> {
    const passkey = await new PasskeyRepository(this.#deps.db).findByCredentialId(credentialId.slice(0, 1024));
    return passkey?.user_id ?? `passkey:${credentialId.slice(0, 128)}`;
  }

  /** See {@link signIn}. */
  async signIn(assertion: PasskeyAssertion, context: RequestContext): Promise<{ user: PublicUser } & TokenPair> {
    return signIn(this.#deps, assertion, context);
  }

  /** See {@link verifyAssertion}. */
  async verifyAssertion(
    trx: Kysely<DB>,
    assertion: PasskeyAssertion,
    expected: AssertionPurpose,
    context: RequestContext,
  ): Promise<AssertionOutcome> {
    return verifyAssertion(this.#deps, trx, assertion, expected, context);
  }

  async rename(principal: Principal, id: string, name: string, context: RequestContext): Promise<PasskeyView> {
    const renamed = await withTransaction(this.#deps.db, async (trx) => {
      const row = await new PasskeyRepository(trx).rename(id, principal.userId, name);
      if (row === undefined) throw new NotFoundError('No passkey with this id');
      await recordAuditEvent(trx, 'passkey.renamed', principal.userId, context, { passkeyId: id });
      return row;
    });
    return passkeyView(renamed);
  }

  /**
   * Removes a passkey, unless it is the account's last way to sign in (no password, no linked
   * identity: 409 LAST_SIGN_IN_METHOD).
   * The last factor of all (no TOTP left either) ends the account's second-factor requirement.
   */
  async remove(principal: Principal, sid: string, id: string, context: RequestContext): Promise<void> {
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      await assertStepUpHolds(trx, user, sid, this.#deps.clock());
      const passkeys = new PasskeyRepository(trx);
      const mine = await passkeys.listOfUser(user.id);
      if (!mine.some((passkey) => passkey.id === id)) throw new NotFoundError('No passkey with this id');
      if (mine.length === 1 && !hasPassword(user) && (await new IdentityRepository(trx).countOfUser(user.id)) === 0) {
        throw new ConflictError('This passkey is the only way left to sign in to this account', 'LAST_SIGN_IN_METHOD');
      }
      await passkeys.delete(id, user.id);
      const otherFactors = await hasOtherFactors(trx, user.id);
      if (mine.length === 1 && !otherFactors) await users.setMfaEnabled(user.id, false);
      await recordAuditEvent(trx, 'passkey.removed', user.id, context, { passkeyId: id });
      await queueSecurityNotice(trx, user, 'passkey_removed', this.#deps.clock());
    });
    this.#deps.onEmailQueued?.();
  }
}

/** Whether the user still has a verified TOTP factor (then the second-factor requirement stays). */
async function hasOtherFactors(trx: Kysely<DB>, userId: string): Promise<boolean> {
  const factors = await new MfaFactorRepository(trx).listOfUser(userId);
  return factors.some((factor) => factor.verified_at !== null);
}
