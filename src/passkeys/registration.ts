import {
  generateRegistrationOptions,
  verifyRegistrationResponse,
  type PublicKeyCredentialCreationOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { withTransaction } from '../platform/db/transactions.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { AuthenticationError, ConflictError, InvalidTokenError, ValidationError } from '../platform/errors/index.ts';
import { PasskeyRepository, WebauthnChallengeRepository, type PasskeyRow } from './passkeys.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import type { Principal } from '../auth/service.ts';
import { assertStepUpHolds } from '../sessions/step-up.ts';
import { cancelChangesBegunWithoutFactor } from '../account-emails/email-change.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { challengeOf, messageOf, PASSKEY_CHALLENGE_TTL_SECONDS, storeChallenge } from './ceremony.ts';
import type { PasskeyServiceDeps, PasskeyView } from './service.ts';

/** At most this many passkeys per account: registration cannot grow the table without bound. */
const MAX_PASSKEYS = 20;

/** Creation options for a new passkey of the caller: a discoverable credential, user verification required. */
export async function registrationOptions(
  deps: PasskeyServiceDeps,
  principal: Principal,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const now = deps.clock();
  const user = await new UserRepository(deps.db).findById(principal.userId);
  if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
  const existing = await new PasskeyRepository(deps.db).listOfUser(user.id);
  const options = await generateRegistrationOptions({
    rpName: deps.rp.name,
    rpID: deps.rp.id,
    userName: user.email,
    userDisplayName: user.name,
    // The user handle is the account id: a discoverable credential names its account with it.
    userID: new Uint8Array(Buffer.from(user.id.replaceAll('-', ''), 'hex')),
    attestationType: 'none',
    excludeCredentials: existing.map((passkey) => ({ id: passkey.credential_id, transports: passkey.transports })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
    timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
  });
  await storeChallenge(deps.db, options.challenge, 'registration', user.id, now);
  return options;
}

/**
 * Verifies a registration (the attestation answering one of the caller's unused challenges) and
 * keeps the passkey. It is a verified factor: the account's sign-ins by password now ask for one.
 */
export async function register(
  deps: PasskeyServiceDeps,
  principal: Principal,
  sid: string,
  credential: RegistrationResponseJSON,
  name: string | undefined,
  context: RequestContext,
): Promise<PasskeyView> {
  const now = deps.clock();
  const challenge = await new WebauthnChallengeRepository(deps.db).consumeByValue(
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
      expectedOrigin: [...deps.rp.origins],
      expectedRPID: deps.rp.id,
      requireUserVerification: true,
    });
  } catch (error) {
    throw new ValidationError(`The passkey could not be verified: ${messageOf(error)}`, { field: 'credential' });
  }
  if (!verification.verified) {
    throw new ValidationError('The passkey could not be verified', { field: 'credential' });
  }
  const info = verification.registrationInfo;
  const passkey = await withTransaction(deps.db, async (trx) => {
    const users = new UserRepository(trx);
    const user = await users.lockForUpdate(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    // A challenge asked for at aal1 while the account had no factor completes only if that is still so.
    await assertStepUpHolds(trx, user, sid, now);
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
    if (!user.mfa_enabled) {
      await users.setMfaEnabled(user.id, true);
      await cancelChangesBegunWithoutFactor(trx, user.id, now);
    }
    await recordAuditEvent(trx, 'passkey.registered', user.id, context, {
      passkeyId: row.id,
      deviceType: row.device_type,
      backedUp: row.backed_up,
    });
    await queueSecurityNotice(trx, user, 'passkey_added', now);
    return row;
  });
  deps.onEmailQueued?.();
  return passkeyView(passkey);
}

/** A passkey as its owner sees it. */
export function passkeyView(passkey: PasskeyRow): PasskeyView {
  return {
    id: passkey.id,
    name: passkey.name,
    createdAt: passkey.created_at,
    lastUsedAt: passkey.last_used_at,
    backedUp: passkey.backed_up,
    transports: passkey.transports,
  };
}
