import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import type { SecretBox } from '../platform/secret-box.ts';
import { RecoveryCodeRepository } from './mfa.repository.ts';

export const RECOVERY_CODE_COUNT = 10;

/**
 * Recovery codes are stored as keyed digests (see `SecretBox.digest`), compared without their
 * dash and case: `abcde-fghij` is `ABCDEFGHIJ`.
 */
export function hashRecoveryCode(box: SecretBox, code: string): string {
  return box.digest(code.replace(/[\s-]/g, '').toUpperCase(), 'recovery-code');
}

/** Ten new codes of 50 random bits each (ten Crockford base32 characters), replacing the user's set. */
export async function replaceRecoveryCodes(
  trx: Kysely<DB>,
  box: SecretBox,
  userId: string,
  now: Date,
  count = RECOVERY_CODE_COUNT,
): Promise<string[]> {
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
