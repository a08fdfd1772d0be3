import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { WebauthnChallengeRepository } from './passkeys.repository.ts';
import type { AssertionPurpose } from './service.ts';

/** Challenges are single use and live this long (api.md "Passkeys"). */
export const PASSKEY_CHALLENGE_TTL_SECONDS = 300;

/** How an MFA challenge's token is stored, and so how a passkey challenge is bound to it. */
export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` can be the id of a stored challenge (anything else is not looked up). */
export function isChallengeId(value: string): boolean {
  return UUID.test(value);
}

/** Keeps a challenge handed out to the browser, single use, for {@link PASSKEY_CHALLENGE_TTL_SECONDS}; its id. */
export async function storeChallenge(
  db: Kysely<DB>,
  challenge: string,
  purpose: 'registration' | AssertionPurpose['kind'],
  userId: string | null,
  now: Date,
  mfaTokenHash: string | null = null,
): Promise<string> {
  const id = uuidv7();
  const challenges = new WebauthnChallengeRepository(db);
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

/** The challenge a registration answers, as the browser wrote it in clientDataJSON (JSON, not CBOR). */
export function challengeOf(clientDataJSON: string): string {
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

/** What the WebAuthn library said when it refused a credential. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown error';
}
