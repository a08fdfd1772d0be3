import { ValidationError } from '../errors/index.ts';

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 256;
export const EMAIL_MAX = 254;
export const NAME_MAX = 100;

// Deliberately plain: one @, something on both sides, a dot in the domain, no spaces or controls.
const EMAIL_SHAPE = /^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u;

/**
 * The canonical form of an email: trimmed, NFKC-normalised, lower-cased. Two spellings of one
 * address (`" Ada@Example.COM"`, fullwidth letters) canonicalise to the same string.
 *
 * @example
 * ```ts
 * canonicalEmail('  Ada@Example.COM '); // 'ada@example.com'
 * ```
 * @throws {ValidationError} field `email` when the result is not an address or is over 254 characters.
 */
export function canonicalEmail(input: string): string {
  const email = input.trim().normalize('NFKC').toLowerCase();
  if (codePoints(email) > EMAIL_MAX || !EMAIL_SHAPE.test(email)) {
    throw new ValidationError('Invalid email address', { field: 'email' });
  }
  return email;
}

/**
 * A display name: trimmed, 1 to 100 characters, no control characters.
 *
 * @example
 * ```ts
 * normaliseName('  Ada Lovelace '); // 'Ada Lovelace'
 * ```
 */
export function normaliseName(input: string): string {
  const name = input.trim();
  const length = codePoints(name);
  if (length < 1 || length > NAME_MAX || /\p{Cc}/u.test(name)) {
    throw new ValidationError(`Name must be 1 to ${NAME_MAX} characters after trimming, without control characters`, {
      field: 'name',
    });
  }
  return name;
}

/**
 * Checks a new password: 8 to 256 Unicode code points, taken exactly as typed (never trimmed
 * or case-changed). NUL is refused because no client can type it and PostgreSQL cannot store it.
 */
export function assertValidPassword(password: string, field = 'password'): void {
  const length = codePoints(password);
  if (length < PASSWORD_MIN || length > PASSWORD_MAX || password.includes('\u0000')) {
    throw new ValidationError(`Password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`, { field });
  }
}

/** Length in Unicode code points (what the contract counts), not UTF-16 code units. */
function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}
