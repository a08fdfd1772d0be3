import { Secret, TOTP } from 'otpauth';
import type { SecretBox } from '../platform/secret-box.ts';
import type { MfaFactorRow } from './mfa.repository.ts';

/** RFC 6238 as the contract fixes it: SHA-1, 6 digits, 30 s, one step of drift either way. */
const TOTP_PERIOD_SECONDS = 30;
const TOTP_DIGITS = 6;
const TOTP_WINDOW = 1;

/** The authenticator-app view of `secret`, labelled for the account (the otpauth URI's parts). */
export function totpOf(issuer: string, secret: Secret, label: string): TOTP {
  return new TOTP({ issuer, label, algorithm: 'SHA1', digits: TOTP_DIGITS, period: TOTP_PERIOD_SECONDS, secret });
}

/** What a factor's sealed secret is bound to: it opens only as that factor's. */
export function secretPurpose(factorId: string): string {
  return `totp:${factorId}`;
}

/** The time step `code` belongs to, if it is right and newer than the last one this factor accepted. */
export async function acceptedStep(
  box: SecretBox,
  issuer: string,
  factor: MfaFactorRow,
  code: string,
  now: Date,
): Promise<number | undefined> {
  const base32 = new TextDecoder().decode(await box.open(factor.secret_jwe, secretPurpose(factor.id)));
  const totp = totpOf(issuer, Secret.fromBase32(base32), '');
  const delta = totp.validate({ token: code, timestamp: now.getTime(), window: TOTP_WINDOW });
  if (delta === null) return undefined;
  const step = TOTP.counter({ period: TOTP_PERIOD_SECONDS, timestamp: now.getTime() }) + delta;
  const last = factor.last_used_step === null ? undefined : Number(factor.last_used_step);
  return last !== undefined && step <= last ? undefined : step;
}
