import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/platform/errors/index.ts';
import {
  assertValidPassword,
  assertWellFormed,
  canonicalEmail,
  isCommonPassword,
  normaliseName,
} from '../../src/auth/credentials.ts';

// The messages and fields of the rules every route applies to emails, names and new passwords
// (src/auth/credentials.ts; test/auth/credentials.test.ts has the properties over random input),
// called directly: the HTTP schemas refuse many of these inputs before they get here, so each
// rule is proven on its own, with the field it names and the message a client is shown.

function refusal(check: () => unknown): { message: string; field: unknown } {
  try {
    check();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    const { message, field } = error as ValidationError;
    return { message, field };
  }
  throw new Error('expected a ValidationError');
}

describe('canonicalEmail', () => {
  it('trims, NFKC-normalises and lower-cases: two spellings of one address are one', () => {
    expect(canonicalEmail('  Ada@Example.COM ')).toBe('ada@example.com');
    expect(canonicalEmail('ａｄａ@example.com')).toBe('ada@example.com');
    // Scripts written together (Han with kana) are one part's normal mix; a script on its own too.
    expect(canonicalEmail('山田たろう@example.jp')).toBe('山田たろう@example.jp');
    expect(canonicalEmail('иван@пример.рф')).toBe('иван@пример.рф');
  });

  it.for([
    ['no-at-sign.example.com', 'Invalid email address'],
    ['ada@localhost', 'Invalid email address'],
    [`${'a'.repeat(250)}@x.io`, 'Invalid email address'],
    [
      'ada\u200b@example.com',
      'Invalid email address: it contains the invisible, control or unassigned character U+200B',
    ],
    ['ada★@example.com', 'Invalid email address: it contains the character U+2605'],
    [
      'p\u0430ypal@example.com',
      'Invalid email address: it mixes scripts (Latin, Cyrillic) in one part, which can imitate another address',
    ],
    ['ada@\u0301example.com', 'Invalid email address: a part of it starts with a combining mark'],
    ['\ud800ada@example.com', 'email is not well-formed Unicode (lone surrogate)'],
  ] as const)('refuses %j: %s', ([input, message]) => {
    expect(refusal(() => canonicalEmail(input))).toEqual({ message, field: 'email' });
  });

  it('names the field it was given', () => {
    expect(refusal(() => canonicalEmail('nope', 'newEmail')).field).toBe('newEmail');
  });
});

describe('normaliseName', () => {
  it('trims and keeps the name as written', () => {
    expect(normaliseName('  Ada Lovelace ')).toBe('Ada Lovelace');
    expect(normaliseName('Zoë')).toBe('Zoë');
    expect(normaliseName('x'.repeat(100))).toHaveLength(100);
  });

  it.for([
    ['   ', 'Name must be 1 to 100 characters after trimming, without control characters'],
    ['x'.repeat(101), 'Name must be 1 to 100 characters after trimming, without control characters'],
    ['Ada\u0007', 'Name must be 1 to 100 characters after trimming, without control characters'],
    ['Ada\u202eecalevol', 'Invalid name: it contains the invisible, control or unassigned character U+202E'],
    ['\u0301Ada', 'Invalid name: it starts with a combining mark'],
    // Spaces only, of any kind, are trimmed away to nothing.
    ['\u3000\u00a0\u2003', 'Name must be 1 to 100 characters after trimming, without control characters'],
  ] as const)('refuses %j: %s', ([input, message]) => {
    expect(refusal(() => normaliseName(input))).toEqual({ message, field: 'name' });
  });

  it('counts code points, not UTF-16 units: 100 emoji are a valid name, 101 are not', () => {
    expect(normaliseName('😀'.repeat(100))).toHaveLength(200);
    expect(() => normaliseName('😀'.repeat(101))).toThrow(ValidationError);
  });
});

describe('assertValidPassword', () => {
  it('accepts 8 to 256 code points exactly as typed', () => {
    expect(() => {
      assertValidPassword('  Correct Horse Battery  ');
    }).not.toThrow();
    expect(() => {
      assertValidPassword('🔑'.repeat(8));
    }).not.toThrow();
  });

  it.for([
    ['short1!', 'Password must be 8 to 256 characters'],
    ['x'.repeat(257), 'Password must be 8 to 256 characters'],
    ['pass\u0000word-long', 'Password must be 8 to 256 characters'],
    ['Password1', 'This password is too common (it appears in lists of breached passwords)'],
    ['long enough \udc00', 'newPassword is not well-formed Unicode (lone surrogate)'],
  ] as const)('refuses %j: %s', ([input, message]) => {
    expect(
      refusal(() => {
        assertValidPassword(input, 'newPassword');
      }),
    ).toEqual({ message, field: 'newPassword' });
  });

  it('finds common passwords case-insensitively, and only those', () => {
    expect(isCommonPassword('PASSWORD')).toBe(true);
    expect(isCommonPassword('qwertyuiop')).toBe(true);
    expect(isCommonPassword('glass-tiger-orbit-57')).toBe(false);
  });
});

describe('assertWellFormed', () => {
  it('passes surrogate pairs, refuses a lone surrogate naming the field', () => {
    expect(() => {
      assertWellFormed('😀', 'x');
    }).not.toThrow();
    expect(
      refusal(() => {
        assertWellFormed('\ud83d', 'bio');
      }),
    ).toEqual({
      message: 'bio is not well-formed Unicode (lone surrogate)',
      field: 'bio',
    });
  });
});
