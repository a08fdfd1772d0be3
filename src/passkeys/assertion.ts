import {
  generateAuthenticationOptions,
  verifyAuthenticationResponse,
  type PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { InvalidTokenError } from '../platform/errors/index.ts';
import { MfaChallengeRepository } from '../mfa/mfa.repository.ts';
import { PasskeyRepository, WebauthnChallengeRepository } from './passkeys.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { canonicalEmail } from '../auth/credentials.ts';
import { isChallengeId, messageOf, PASSKEY_CHALLENGE_TTL_SECONDS, sha256, storeChallenge } from './ceremony.ts';
import type { AssertionOutcome, AssertionPurpose, PasskeyAssertion, PasskeyServiceDeps } from './service.ts';

/**
 * Request options for an assertion, with the opaque id of its challenge. A sign-in is answered
 * alike with or without an email, known or not (no account enumeration): the authenticator
 * offers its discoverable credentials (every passkey here is one), and a known email binds the
 * challenge to that account. An `mfaToken` (second factor after a password) or a signed-in
 * caller (step-up) binds it to theirs and lists their passkeys.
 */
export async function authenticationOptions(
  deps: PasskeyServiceDeps,
  purpose: AssertionPurpose | { readonly kind: 'login'; readonly email: string },
): Promise<{ challengeId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
  const now = deps.clock();
  let userId: string | null = null;
  let mfaTokenHash: string | null = null;
  if (purpose.kind === 'mfa') {
    mfaTokenHash = sha256(purpose.mfaToken);
    const challenge = await new MfaChallengeRepository(deps.db).lockByHash(mfaTokenHash);
    if (challenge === undefined || challenge.used_at !== null || challenge.expires_at.getTime() <= now.getTime()) {
      throw new InvalidTokenError('The MFA challenge is invalid or has expired');
    }
    userId = challenge.user_id;
  } else if (purpose.kind === 'step_up') {
    userId = purpose.userId;
  } else if ('email' in purpose) {
    userId = (await findByEmail(deps.db, purpose.email))?.id ?? null;
  }
  const passkeys =
    userId === null || purpose.kind === 'login' ? [] : await new PasskeyRepository(deps.db).listOfUser(userId);
  const options = await generateAuthenticationOptions({
    rpID: deps.rp.id,
    allowCredentials: passkeys.map((passkey) => ({ id: passkey.credential_id, transports: passkey.transports })),
    userVerification: 'required',
    timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
  });
  const challengeId = await storeChallenge(deps.db, options.challenge, purpose.kind, userId, now, mfaTokenHash);
  return { challengeId, options };
}

/**
 * Checks an assertion in the caller's transaction: its challenge (consumed whatever the
 * outcome) must be of this purpose and, when bound, of the passkey's account; the signature,
 * origin, RP ID and user verification are the library's to check; the counter ours. A counter
 * that went backwards is recorded as `passkey.counter_regressed` and refused.
 */
export async function verifyAssertion(
  deps: PasskeyServiceDeps,
  trx: Kysely<DB>,
  assertion: PasskeyAssertion,
  expected: AssertionPurpose,
  context: RequestContext,
): Promise<AssertionOutcome> {
  const now = deps.clock();
  if (!isChallengeId(assertion.challengeId)) return { kind: 'invalid_challenge' };
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
      expectedOrigin: [...deps.rp.origins],
      expectedRPID: deps.rp.id,
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

async function findByEmail(db: Kysely<DB>, email: string): Promise<UserRow | undefined> {
  let canonical: string;
  try {
    canonical = canonicalEmail(email);
  } catch {
    return undefined;
  }
  return new UserRepository(db).findByEmail(canonical);
}
