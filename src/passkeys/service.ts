import { createHash } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import {
  AuthenticationError,
  AuthorizationError,
  ConflictError,
  InvalidTokenError,
  NotFoundError,
  ValidationError,
} from '../platform/errors/index.ts';
import { MfaChallengeRepository, MfaFactorRepository } from '../mfa/mfa.repository.ts';
import { PasskeyRepository, WebauthnChallengeRepository, type PasskeyRow } from './passkeys.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import type { AuthService, Principal, TokenPair } from '../auth/service.ts';
import { canonicalEmail } from '../auth/credentials.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import type { PublicUser } from '../users/service.ts';

/** Challenges are single use and live this long (api.md "Passkeys"). */
export const PASSKEY_CHALLENGE_TTL_SECONDS = 300;
/** At most this many passkeys per account: registration cannot grow the table without bound. */
const MAX_PASSKEYS = 20;

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

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * Passkeys (WebAuthn, api.md "Passkeys"): registration, sign-in with or without an email, and
 * the assertion checks the second factor and step-up reuse. `@simplewebauthn/server` generates
 * the options and verifies attestations and assertions; this class owns the challenges (in the
 * database, single use, 5 minutes, bound to a ceremony and a purpose), the credentials and the
 * rules around them (user verification required, counters that go backwards refused).
 *
 * @example
 * ```ts
 * const options = await passkeys.registrationOptions(principal);
 * const passkey = await passkeys.register(principal, credentialFromTheBrowser, 'laptop', context);
 * ```
 */
export class PasskeyService {
  readonly #deps: PasskeyServiceDeps;

  constructor(deps: PasskeyServiceDeps) {
    this.#deps = deps;
  }

  async list(userId: string): Promise<PasskeyView[]> {
    return (await new PasskeyRepository(this.#deps.db).listOfUser(userId)).map(viewOf);
  }

  /** Creation options for a new passkey of the caller: a discoverable credential, user verification required. */
  async registrationOptions(principal: Principal): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const now = this.#deps.clock();
    const user = await new UserRepository(this.#deps.db).findById(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    const existing = await new PasskeyRepository(this.#deps.db).listOfUser(user.id);
    const options = await generateRegistrationOptions({
      rpName: this.#deps.rp.name,
      rpID: this.#deps.rp.id,
      userName: user.email,
      userDisplayName: user.name,
      // The user handle is the account id: a discoverable credential names its account with it.
      userID: new Uint8Array(Buffer.from(user.id.replaceAll('-', ''), 'hex')),
      attestationType: 'none',
      excludeCredentials: existing.map((passkey) => ({ id: passkey.credential_id, transports: passkey.transports })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
    });
    await this.#storeChallenge(options.challenge, 'registration', user.id, now);
    return options;
  }

  /**
   * Verifies a registration (the attestation answering one of the caller's unused challenges) and
   * keeps the passkey. It is a verified factor: the account's sign-ins by password now ask for one.
   */
  async register(
    principal: Principal,
    credential: RegistrationResponseJSON,
    name: string | undefined,
    context: RequestContext,
  ): Promise<PasskeyView> {
    const now = this.#deps.clock();
    const challenge = await new WebauthnChallengeRepository(this.#deps.db).consumeByValue(
      challengeOf(credential.response.clientDataJSON),
      now,
    );
    if (challenge?.purpose !== 'registration' || challenge.user_id !== principal.userId) {
      throw new InvalidTokenError('The passkey challenge is invalid or has expired');
    }
    let verification;
    try {
      verification = await verifyRegistrationResponse({
        response: credential,
        expectedChallenge: challenge.challenge,
        expectedOrigin: [...this.#deps.rp.origins],
        expectedRPID: this.#deps.rp.id,
        requireUserVerification: true,
      });
    } catch (error) {
      throw new ValidationError(`The passkey could not be verified: ${messageOf(error)}`, { field: 'credential' });
    }
    if (!verification.verified) {
      throw new ValidationError('The passkey could not be verified', { field: 'credential' });
    }
    const info = verification.registrationInfo;
    const passkey = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const passkeys = new PasskeyRepository(trx);
      const existing = await passkeys.listOfUser(user.id);
      if (existing.length >= MAX_PASSKEYS) throw new ConflictError(`At most ${MAX_PASSKEYS} passkeys per account`);
      const row = await passkeys.insert({
        id: uuidv7(),
        user_id: user.id,
        credential_id: info.credential.id,
        public_key: Buffer.from(info.credential.publicKey),
        counter: info.credential.counter,
        transports: info.credential.transports ?? credential.response.transports ?? [],
        backed_up: info.credentialBackedUp,
        device_type: info.credentialDeviceType,
        name: name ?? `Passkey ${existing.length + 1}`,
        created_at: now,
      });
      if (!user.mfa_enabled) await users.setMfaEnabled(user.id, true);
      await recordAuditEvent(trx, 'passkey.registered', user.id, context, {
        passkeyId: row.id,
        deviceType: row.device_type,
        backedUp: row.backed_up,
      });
      await queueSecurityNotice(trx, user, 'passkey_added', now);
      return row;
    });
    this.#deps.onEmailQueued?.();
    return viewOf(passkey);
  }

  /**
   * Request options for an assertion, with the opaque id of its challenge. A sign-in is answered
   * alike with or without an email, known or not (no account enumeration): the authenticator
   * offers its discoverable credentials (every passkey here is one), and a known email binds the
   * challenge to that account. An `mfaToken` (second factor after a password) or a signed-in
   * caller (step-up) binds it to theirs and lists their passkeys.
   */
  async authenticationOptions(
    purpose: AssertionPurpose | { readonly kind: 'login'; readonly email: string },
  ): Promise<{ challengeId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
    const now = this.#deps.clock();
    let userId: string | null = null;
    let mfaTokenHash: string | null = null;
    if (purpose.kind === 'mfa') {
      mfaTokenHash = sha256(purpose.mfaToken);
      const challenge = await new MfaChallengeRepository(this.#deps.db).lockByHash(mfaTokenHash);
      if (challenge === undefined || challenge.used_at !== null || challenge.expires_at.getTime() <= now.getTime()) {
        throw new InvalidTokenError('The MFA challenge is invalid or has expired');
      }
      userId = challenge.user_id;
    } else if (purpose.kind === 'step_up') {
      userId = purpose.userId;
    } else if ('email' in purpose) {
      userId = (await findByEmail(this.#deps.db, purpose.email))?.id ?? null;
    }
    const passkeys =
      userId === null || purpose.kind === 'login' ? [] : await new PasskeyRepository(this.#deps.db).listOfUser(userId);
    const options = await generateAuthenticationOptions({
      rpID: this.#deps.rp.id,
      allowCredentials: passkeys.map((passkey) => ({ id: passkey.credential_id, transports: passkey.transports })),
      userVerification: 'required',
      timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
    });
    const challengeId = await this.#storeChallenge(options.challenge, purpose.kind, userId, now, mfaTokenHash);
    return { challengeId, options };
  }

  /** The account a credential belongs to, for throttling per account (the credential id when unknown). */
  async accountOfCredential(credentialId: string): Promise<string> {
    const passkey = await new PasskeyRepository(this.#deps.db).findByCredentialId(credentialId.slice(0, 1024));
    return passkey?.user_id ?? `passkey:${credentialId.slice(0, 128)}`;
  }

  /**
   * A complete sign-in with a passkey: user verification is required, so the session is `aal2`
   * on its own. An unknown credential, a failed verification and a disabled account all answer
   * the 401 a wrong password gets.
   */
  async signIn(assertion: PasskeyAssertion, context: RequestContext): Promise<{ user: PublicUser } & TokenPair> {
    const outcome = await withTransaction(this.#deps.db, (trx) =>
      this.verifyAssertion(trx, assertion, { kind: 'login' }, context),
    );
    if (outcome.kind === 'invalid_challenge') {
      throw new InvalidTokenError('The passkey challenge is invalid or has expired');
    }
    if (outcome.kind === 'failed') return this.#failSignIn(outcome.userId, outcome.reason, context);
    const user = await new UserRepository(this.#deps.db).findById(outcome.passkey.user_id);
    if (user === undefined) return this.#failSignIn(null, 'unknown_passkey', context);
    if (user.status !== 'active') return this.#failSignIn(user.id, 'disabled', context);
    if (this.#deps.requireVerifiedEmail === true && user.email_verified_at === null) {
      await withTransaction(this.#deps.db, (trx) =>
        recordAuditEvent(trx, 'login.failed', user.id, context, { reason: 'email_not_verified', method: 'passkey' }),
      );
      throw new AuthorizationError('Verify your email address before logging in', 'EMAIL_NOT_VERIFIED');
    }
    return this.#deps.auth.openSession(user, context, { aal: 'aal2', amr: [outcome.method] });
  }

  /**
   * Checks an assertion in the caller's transaction: its challenge (consumed whatever the
   * outcome) must be of this purpose and, when bound, of the passkey's account; the signature,
   * origin, RP ID and user verification are the library's to check; the counter ours. A counter
   * that went backwards is recorded as `passkey.counter_regressed` and refused.
   */
  async verifyAssertion(
    trx: Kysely<DB>,
    assertion: PasskeyAssertion,
    expected: AssertionPurpose,
    context: RequestContext,
  ): Promise<AssertionOutcome> {
    const now = this.#deps.clock();
    if (!UUID.test(assertion.challengeId)) return { kind: 'invalid_challenge' };
    const challenge = await new WebauthnChallengeRepository(trx).consume(assertion.challengeId.toLowerCase(), now);
    if (challenge === undefined || challenge.ceremony !== 'authentication' || challenge.purpose !== expected.kind) {
      return { kind: 'invalid_challenge' };
    }
    if (expected.kind === 'mfa' && challenge.mfa_token_hash !== sha256(expected.mfaToken)) {
      return { kind: 'invalid_challenge' };
    }
    if (expected.kind === 'step_up' && challenge.user_id !== expected.userId) return { kind: 'invalid_challenge' };
    const passkeys = new PasskeyRepository(trx);
    const passkey = await passkeys.lockByCredentialId(assertion.credential.id.slice(0, 1024));
    if (passkey === undefined) return { kind: 'failed', userId: challenge.user_id, reason: 'unknown_passkey' };
    if (challenge.user_id !== null && challenge.user_id !== passkey.user_id) {
      return { kind: 'failed', userId: challenge.user_id, reason: 'passkey_of_another_account' };
    }
    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response: assertion.credential,
        expectedChallenge: challenge.challenge,
        expectedOrigin: [...this.#deps.rp.origins],
        expectedRPID: this.#deps.rp.id,
        // Our own counter check follows, so that a regression is recorded rather than thrown.
        credential: { id: passkey.credential_id, publicKey: new Uint8Array(passkey.public_key), counter: 0 },
        requireUserVerification: true,
      });
    } catch (error) {
      return { kind: 'failed', userId: passkey.user_id, reason: `passkey_rejected: ${messageOf(error)}` };
    }
    if (!verification.verified) return { kind: 'failed', userId: passkey.user_id, reason: 'passkey_rejected' };
    const stored = Number(passkey.counter);
    const { newCounter } = verification.authenticationInfo;
    if ((stored > 0 || newCounter > 0) && newCounter <= stored) {
      await recordAuditEvent(trx, 'passkey.counter_regressed', passkey.user_id, context, {
        passkeyId: passkey.id,
        storedCounter: stored,
        presentedCounter: newCounter,
      });
      return { kind: 'failed', userId: passkey.user_id, reason: 'passkey_counter_regressed' };
    }
    await passkeys.recordUse(passkey.id, newCounter, now);
    await recordAuditEvent(trx, 'passkey.used', passkey.user_id, context, {
      passkeyId: passkey.id,
      for: expected.kind,
    });
    return { kind: 'ok', passkey, method: passkey.device_type === 'multiDevice' ? 'swk' : 'hwk' };
  }

  async rename(principal: Principal, id: string, name: string, context: RequestContext): Promise<PasskeyView> {
    const renamed = await withTransaction(this.#deps.db, async (trx) => {
      const row = await new PasskeyRepository(trx).rename(id, principal.userId, name);
      if (row === undefined) throw new NotFoundError('No passkey with this id');
      await recordAuditEvent(trx, 'passkey.renamed', principal.userId, context, { passkeyId: id });
      return row;
    });
    return viewOf(renamed);
  }

  /**
   * Removes a passkey, unless it is the account's last way to sign in (409 LAST_SIGN_IN_METHOD).
   * The last factor of all (no TOTP left either) ends the account's second-factor requirement.
   */
  async remove(principal: Principal, id: string, context: RequestContext): Promise<void> {
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const passkeys = new PasskeyRepository(trx);
      const mine = await passkeys.listOfUser(user.id);
      if (!mine.some((passkey) => passkey.id === id)) throw new NotFoundError('No passkey with this id');
      if (mine.length === 1 && !hasPassword(user)) {
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

  /** Records the failure (committed on its own) and answers exactly like a wrong password. */
  async #failSignIn(userId: string | null, reason: string, context: RequestContext): Promise<never> {
    await withTransaction(this.#deps.db, (trx) =>
      recordAuditEvent(trx, 'login.failed', userId, context, { reason, method: 'passkey' }),
    );
    throw new AuthenticationError('Invalid email or password', 'INVALID_CREDENTIALS');
  }

  async #storeChallenge(
    challenge: string,
    purpose: 'registration' | AssertionPurpose['kind'],
    userId: string | null,
    now: Date,
    mfaTokenHash: string | null = null,
  ): Promise<string> {
    const id = uuidv7();
    const challenges = new WebauthnChallengeRepository(this.#deps.db);
    await challenges.deleteExpired(now);
    await challenges.insert({
      id,
      challenge,
      ceremony: purpose === 'registration' ? 'registration' : 'authentication',
      purpose,
      user_id: userId,
      mfa_token_hash: mfaTokenHash,
      created_at: now,
      expires_at: new Date(now.getTime() + PASSKEY_CHALLENGE_TTL_SECONDS * 1000),
    });
    return id;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An account whose `password_hash` is empty has no password (a sign-in only by passkey or, later,
 * another provider); every account registered so far has one.
 */
export function hasPassword(user: UserRow): boolean {
  return user.password_hash !== '';
}

/** Whether the user still has a verified TOTP factor (then the second-factor requirement stays). */
async function hasOtherFactors(trx: Kysely<DB>, userId: string): Promise<boolean> {
  const factors = await new MfaFactorRepository(trx).listOfUser(userId);
  return factors.some((factor) => factor.verified_at !== null);
}

async function findByEmail(db: Kysely<DB>, email: string): Promise<UserRow | undefined> {
  let canonical: string;
  try {
    canonical = canonicalEmail(email);
  } catch {
    return undefined;
  }
  return new UserRepository(db).findByEmail(canonical);
}

/** The challenge a registration answers, as the browser wrote it in clientDataJSON (JSON, not CBOR). */
function challengeOf(clientDataJSON: string): string {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8'));
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      'challenge' in parsed &&
      typeof parsed.challenge === 'string'
    ) {
      return parsed.challenge.slice(0, 256);
    }
  } catch {
    // Falls through: an unreadable clientDataJSON names no challenge.
  }
  return '';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown error';
}

function viewOf(passkey: PasskeyRow): PasskeyView {
  return {
    id: passkey.id,
    name: passkey.name,
    createdAt: passkey.created_at,
    lastUsedAt: passkey.last_used_at,
    backedUp: passkey.backed_up,
    transports: passkey.transports,
  };
}
