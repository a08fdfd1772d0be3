import { dictionary } from '@zxcvbn-ts/language-common';
import { ValidationError } from '../platform/errors/index.ts';

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 256;
export const EMAIL_MAX = 254;
export const NAME_MAX = 100;

// One RFC 5321 `Mailbox` and nothing a mail library could read as more (RFC 6531 lets any
// non-ASCII character through; the PRECIS checks below narrow those to letters, digits and marks):
// - the local part is a Dot-string: atoms of RFC 5322 `atext` joined by single dots, never a
//   Quoted-string, so no comma, colon, semicolon, angle bracket, parenthesis, quote or backslash
//   (address lists, groups, display names, comments);
// - the domain is two or more labels of letters and digits, hyphens inside only (no address literal).
const ATOM = String.raw`[a-z0-9!#$%&'*+/=?^_\x60{|}~\-\u0080-\u{10ffff}]+`;
const LABEL = String.raw`[a-z0-9\u0080-\u{10ffff}](?:[a-z0-9\-\u0080-\u{10ffff}]*[a-z0-9\u0080-\u{10ffff}])?`;
const EMAIL_SHAPE = new RegExp(`^${ATOM}(?:\\.${ATOM})*@${LABEL}(?:\\.${LABEL})+$`, 'u');

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
export function canonicalEmail(input: string, field = 'email'): string {
  assertWellFormed(input, field);
  const email = input.trim().normalize('NFKC').toLowerCase();
  if (codePoints(email) > EMAIL_MAX || !EMAIL_SHAPE.test(email)) {
    throw new ValidationError('Invalid email address', { field });
  }
  const problem = identifierProblem(email);
  if (problem !== undefined) throw new ValidationError(`Invalid email address: ${problem}`, { field });
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
export function normaliseName(input: string, field = 'name'): string {
  assertWellFormed(input, field);
  const name = input.trim();
  const length = codePoints(name);
  if (length < 1 || length > NAME_MAX || /\p{Cc}/u.test(name)) {
    throw new ValidationError(`Name must be 1 to ${NAME_MAX} characters after trimming, without control characters`, {
      field,
    });
  }
  const problem = freeformProblem(name);
  if (problem !== undefined) throw new ValidationError(`Invalid name: ${problem}`, { field });
  return name;
}

/**
 * An optional label (a factor's or a passkey's name) under the rules of {@link normaliseName};
 * absent or only spaces is undefined (the caller picks a default).
 *
 * @throws {ValidationError} naming `field`.
 */
export function optionalName(input: string | undefined, field = 'name'): string | undefined {
  return input === undefined || input.trim() === '' ? undefined : normaliseName(input, field);
}

/**
 * Checks a new password (register, change, reset): 8 to 256 Unicode code points, taken exactly
 * as typed (never trimmed or case-changed), well-formed Unicode, and not one of the most common
 * breached passwords (ASVS 5.0 6.2.4). NUL is refused because no client can type it and
 * PostgreSQL cannot store it.
 *
 * @throws {ValidationError} naming `field`.
 */
export function assertValidPassword(password: string, field = 'password'): void {
  assertWellFormed(password, field);
  const length = codePoints(password);
  if (length < PASSWORD_MIN || length > PASSWORD_MAX || password.includes('\u0000')) {
    throw new ValidationError(`Password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`, { field });
  }
  if (isCommonPassword(password)) {
    throw new ValidationError('This password is too common (it appears in lists of breached passwords)', { field });
  }
}

let commonPasswords: ReadonlySet<string> | undefined;

/**
 * Whether `password` (compared case-insensitively) is in @zxcvbn-ts/language-common's list of
 * common breached passwords: about 49,000 entries, read from the installed package on first use,
 * never fetched.
 */
export function isCommonPassword(password: string): boolean {
  commonPasswords ??= new Set(dictionary['passwords-common']);
  return commonPasswords.has(password.toLowerCase());
}

/**
 * A string with lone surrogates (from `\ud800` in JSON) cannot be stored or compared faithfully:
 * it is refused rather than silently replaced by U+FFFD.
 *
 * @throws {ValidationError} naming `field`.
 */
export function assertWellFormed(text: string, field: string): void {
  if (!text.isWellFormed()) {
    throw new ValidationError(`${field} is not well-formed Unicode (lone surrogate)`, { field });
  }
}

// PRECIS (RFC 8264/8265) disallows these in every string class: controls, format characters
// (invisible joiners, soft hyphen, bidi embeddings and overrides), default-ignorable code points,
// unassigned, surrogate, private-use and noncharacter code points.
const DISALLOWED =
  /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\p{Cn}\p{Cs}\p{Co}\p{Noncharacter_Code_Point}\p{Zl}\p{Zp}]/u;
// The IdentifierClass (emails): ASCII printable, letters, digits and combining marks; no symbols,
// punctuation or spaces beyond ASCII.
const IDENTIFIER_CHAR = /^(?:[\x21-\x7e]|\p{L}|\p{Nd}|\p{M})$/u;
const SCRIPTS = [
  'Latin',
  'Greek',
  'Cyrillic',
  'Armenian',
  'Hebrew',
  'Arabic',
  'Devanagari',
  'Bengali',
  'Thai',
  'Georgian',
  'Hangul',
  'Hiragana',
  'Katakana',
  'Han',
  'Ethiopic',
  'Tamil',
  'Cherokee',
] as const;
const SCRIPT_OF = SCRIPTS.map((script) => [script, new RegExp(`^\\p{Script=${script}}$`, 'u')] as const);
// Scripts that are written together: mixing them within one label is normal, not a disguise.
const WRITTEN_TOGETHER = [new Set(['Han', 'Hiragana', 'Katakana']), new Set(['Han', 'Hangul'])];

/** Why an (already NFKC, lower-cased) email is not a PRECIS identifier, or undefined when it is one. */
function identifierProblem(email: string): string | undefined {
  for (const char of email) {
    if (DISALLOWED.test(char))
      return `it contains the invisible, control or unassigned character ${codePointName(char)}`;
    if (!IDENTIFIER_CHAR.test(char)) return `it contains the character ${codePointName(char)}`;
  }
  // Each part (local part, every domain label) in one script: `pаypal` with a Cyrillic `а`
  // among Latin letters looks like another account.
  for (const label of email.split(/[@.]/)) {
    if (/^\p{M}/u.test(label)) return 'a part of it starts with a combining mark';
    const scripts = new Set<string>();
    for (const char of label) {
      if (!/\p{L}/u.test(char)) continue;
      scripts.add(SCRIPT_OF.find(([, pattern]) => pattern.test(char))?.[0] ?? 'Other');
    }
    if (scripts.size > 1 && !WRITTEN_TOGETHER.some((group) => [...scripts].every((script) => group.has(script)))) {
      return `it mixes scripts (${[...scripts].join(', ')}) in one part, which can imitate another address`;
    }
  }
  return undefined;
}

/** Why a (trimmed) name is not a PRECIS freeform string, or undefined when it is one. */
function freeformProblem(name: string): string | undefined {
  for (const char of name) {
    if (DISALLOWED.test(char))
      return `it contains the invisible, control or unassigned character ${codePointName(char)}`;
  }
  // Nothing else is left to refuse: after trimming (every space separator) and the check above
  // (every other separator and C* category), a name starts with a letter, number, punctuation or
  // symbol, a visible character, unless it starts with a mark.
  if (/^\p{M}/u.test(name)) return 'it starts with a combining mark';
  return undefined;
}

function codePointName(char: string): string {
  return `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
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

/**
 * An account whose `password_hash` is empty has no password: it signs in through an identity
 * provider or with a passkey only.
 */
export function hasPassword(user: { readonly password_hash: string }): boolean {
  return user.password_hash !== '';
}
