import { dictionary } from '@zxcvbn-ts/language-common';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ValidationError } from '../../src/platform/errors/index.ts';
import {
  assertValidPassword,
  canonicalEmail,
  EMAIL_MAX,
  isCommonPassword,
  NAME_MAX,
  normaliseName,
  PASSWORD_MAX,
  PASSWORD_MIN,
} from '../../src/auth/credentials.ts';

// Properties of the text rules of issue 22 (src/auth/credentials.ts): every code point class
// PRECIS (RFC 8264/8265) disallows is refused wherever it stands, every allowed address and name
// round-trips, normalisation is idempotent, and every refusal is the one error shape naming the
// field. The HTTP-level regression tests of the same rules are in test/platform/http/input-rules.test.ts.

const NUM_RUNS = 300;

// ---------------------------------------------------------------------------------------------
// The code points of each class, from the Unicode tables of this Node's ICU (as the rules use).

const DISALLOWED_CLASSES = {
  'control (Cc)': /\p{Cc}/u,
  'format (Cf): zero-width, soft hyphen, bidi embeddings and overrides': /\p{Cf}/u,
  'bidi control': /\p{Bidi_Control}/u,
  'default-ignorable (variation selectors, fillers, CGJ)': /\p{Default_Ignorable_Code_Point}/u,
  'unassigned (Cn)': /\p{Cn}/u,
  'private use (Co)': /\p{Co}/u,
  noncharacter: /\p{Noncharacter_Code_Point}/u,
  'line or paragraph separator (Zl, Zp)': /[\p{Zl}\p{Zp}]/u,
} as const;

type ClassName = keyof typeof DISALLOWED_CLASSES;

/** Every code point of each class (surrogates aside: they cannot stand alone in a well-formed string). */
const CODE_POINTS: Record<ClassName, readonly number[]> = (() => {
  const tables = Object.fromEntries(Object.keys(DISALLOWED_CLASSES).map((name) => [name, [] as number[]])) as Record<
    ClassName,
    number[]
  >;
  const entries = Object.entries(DISALLOWED_CLASSES) as [ClassName, RegExp][];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const char = String.fromCodePoint(cp);
    for (const [name, pattern] of entries) if (pattern.test(char)) tables[name].push(cp);
  }
  return tables;
})();

/** A code point of one of the disallowed classes, and which. */
const disallowed: fc.Arbitrary<{ readonly className: ClassName; readonly char: string }> = fc
  .constantFrom(...(Object.keys(DISALLOWED_CLASSES) as ClassName[]))
  .chain((className) =>
    fc
      .nat({ max: CODE_POINTS[className].length - 1 })
      .map((index) => ({ className, char: String.fromCodePoint(CODE_POINTS[className][index] ?? 0) })),
  );

/** A lone surrogate (half of a pair, or a pair's halves in the wrong order). */
const loneSurrogate = fc.oneof(
  fc.integer({ min: 0xd800, max: 0xdbff }).map((unit) => String.fromCharCode(unit)),
  fc.integer({ min: 0xdc00, max: 0xdfff }).map((unit) => String.fromCharCode(unit)),
  fc.constant('\udc00\ud800'),
);

/** Any string: printable graphemes, arbitrary code points, and the characters these rules are about. */
const anyString = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({
    unit: fc.oneof(
      fc.constantFrom('a', 'Z', 'é', 'а', 'α', '山', '@', '.', ' ', '\t', '\u0301', 'İ', 'ß', 'Ａ', 'ﬁ', '😀', 'Σ'),
      disallowed.map(({ char }) => char),
    ),
    maxLength: 30,
  }),
  fc.emailAddress(),
);

/** Inserts `char` strictly inside `text` (never at an end, where trimming may take it away). */
function insideOf(text: string, char: string, at: number): string {
  const chars = Array.from(text);
  const position = 1 + (at % Math.max(1, chars.length - 1));
  return [...chars.slice(0, position), char, ...chars.slice(position)].join('');
}

/**
 * Inserts `char` at any code point boundary of `text`, ends included (never between the halves
 * of a surrogate pair, where a lone surrogate would pair up with one of them).
 */
function anywhereIn(text: string, char: string, at: number): string {
  const chars = Array.from(text);
  const position = at % (chars.length + 1);
  return [...chars.slice(0, position), char, ...chars.slice(position)].join('');
}

/** The contract's error shape for a refused value: a 400 VALIDATION_FAILED naming `field`, nothing else. */
function expectRefusal(run: () => unknown, field: string): ValidationError {
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'was accepted').toBeInstanceOf(ValidationError);
  const error = thrown as ValidationError;
  const body = error.toJSON('req-1');
  expect(body).toEqual({
    error: {
      type: 'ValidationError',
      code: 'VALIDATION_FAILED',
      statusCode: 400,
      message: expect.any(String),
      requestId: 'req-1',
      field,
    },
  });
  expect(body.error.message).not.toBe('');
  return error;
}

/** The result of `run`, or the ValidationError it threw (anything else thrown fails the test). */
function outcome<T>(run: () => T): { ok: true; value: T } | { ok: false; error: ValidationError } {
  try {
    return { ok: true, value: run() };
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return { ok: false, error: error as ValidationError };
  }
}

const codePoints = (text: string) => Array.from(text).length;

// ---------------------------------------------------------------------------------------------
// Allowed values.

/** Lower-case (or caseless) letters of one script each, NFKC-stable: what an address part may be written in. */
const ALPHABETS: Record<string, string> = {
  Latin: 'abcdefghijklmnopqrstuvwxyzàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿāăąćčďđēęěğīıłńňőœřśşšťūůűźżž',
  Cyrillic: 'абвгдежзийклмнопрстуфхцчшщъыьэюяёђѓєѕіїјљњћќўџ',
  Greek: 'αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ',
  Han: '山田太郎中文字例子東京大阪',
  Hiragana: 'あいうえおかきくけこさしすせそたちつてと',
  Arabic: 'ابتثجحخدذرزسشصضطظعغفقكلمنهوي',
  Devanagari: 'कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह',
  Hangul: '가나다라마바사아자차카타파하',
  Hebrew: 'אבגדהוזחטיכלמנסעפצקרשת',
  Thai: 'กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮ',
};

/** One part (local part or domain label) in one script, 1 to 12 letters, ASCII digits or hyphens inside. */
function label(alphabet: string): fc.Arbitrary<string> {
  const letter = fc.constantFrom(...Array.from(alphabet));
  return fc
    .tuple(
      letter,
      fc.array(fc.oneof({ weight: 6, arbitrary: letter }, fc.constantFrom('0', '7', '-')), { maxLength: 10 }),
      letter,
    )
    .map(([first, middle, last]) => `${first}${middle.join('')}${last}`);
}

/** An internationalised address: each part in one script (scripts may differ between parts). */
const internationalEmail: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom(...Object.values(ALPHABETS)).chain(label),
    fc.array(fc.constantFrom(...Object.values(ALPHABETS)).chain(label), { minLength: 2, maxLength: 3 }),
  )
  .map(([local, domain]) => `${local}@${domain.join('.')}`);

/** ASCII addresses as RFC 5322's dot-atom allows, with a dot in the domain, within 254 characters. */
const asciiEmail = fc
  .emailAddress()
  .filter((email) => email.length <= EMAIL_MAX && (email.split('@')[1] ?? '').includes('.'));

/**
 * `email` (ASCII) with letters and digits swapped for compatibility forms NFKC folds back: fullwidth,
 * mathematical bold (capitals stay capitals after NFKC), circled. Each `styles` entry picks one per character.
 */
function compatibilitySpelling(email: string, styles: readonly number[]): string {
  return Array.from(email)
    .map((char, i) => {
      const code = char.charCodeAt(0);
      const style = styles[i % styles.length] ?? 0;
      const upper = code >= 0x41 && code <= 0x5a;
      const lower = code >= 0x61 && code <= 0x7a;
      const digit = code >= 0x30 && code <= 0x39;
      if (style === 1 && code >= 0x21 && code <= 0x7e) return String.fromCharCode(code + 0xfee0);
      if (style === 2 && upper) return String.fromCodePoint(0x1d400 + code - 0x41);
      if (style === 2 && lower) return String.fromCodePoint(0x1d41a + code - 0x61);
      if (style === 2 && digit) return String.fromCodePoint(0x1d7ce + code - 0x30);
      if (style === 3 && upper) return String.fromCodePoint(0x24b6 + code - 0x41);
      if (style === 3 && lower) return String.fromCodePoint(0x24d0 + code - 0x61);
      return char;
    })
    .join('');
}

const compatibilityEmail = fc
  .tuple(asciiEmail, fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 16 }), fc.boolean())
  .map(([email, styles, upper]) => compatibilitySpelling(upper ? email.toUpperCase() : email, styles));

/** Printable, visible words of any script, with spaces, digits, punctuation and single-code-point emoji. */
const visibleName: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      fc
        .constantFrom(...Object.values(ALPHABETS))
        .chain((alphabet) => fc.string({ unit: fc.constantFrom(...Array.from(alphabet)), minLength: 1, maxLength: 8 })),
      fc.string({ unit: fc.constantFrom(...Array.from('ABCXYZ0123456789')), minLength: 1, maxLength: 4 }),
      fc.constantFrom("O'Brien", 'Jean-Luc', 'Dr.', '(they/them)', '😀', '🎻', '№7', '&', 'É'),
    ),
    { minLength: 1, maxLength: 5 },
  )
  .map((words) => words.join(' '))
  .filter((name) => codePoints(name) <= NAME_MAX);

// ---------------------------------------------------------------------------------------------

describe('canonicalEmail: properties', () => {
  test('any string is either its trimmed, NFKC, lower-cased self or refused with the one error naming email', () => {
    fc.assert(
      fc.property(anyString, (input) => {
        const result = outcome(() => canonicalEmail(input));
        if (result.ok) expect(result.value).toBe(input.trim().normalize('NFKC').toLowerCase());
        else expectRefusal(() => canonicalEmail(input), 'email');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('normalisation is idempotent: an accepted address canonicalises to itself', () => {
    const spellings = fc.oneof(
      anyString,
      asciiEmail.map((email) => ` ${email.toUpperCase()} `),
      internationalEmail.map((email) => email.toUpperCase().normalize('NFD')),
      compatibilityEmail,
    );
    fc.assert(
      fc.property(spellings, (input) => {
        const result = outcome(() => canonicalEmail(input));
        if (result.ok) expect(canonicalEmail(result.value)).toBe(result.value);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('every well-formed ASCII address round-trips; case, surrounding spaces and compatibility forms (fullwidth, mathematical, circled) make no other account', () => {
    fc.assert(
      fc.property(asciiEmail, fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 16 }), (email, styles) => {
        const canonical = email.toLowerCase();
        expect(canonicalEmail(email)).toBe(canonical);
        expect(canonicalEmail(`  ${email.toUpperCase()}\t`)).toBe(canonical);
        // Fullwidth forms (U+FF01..U+FF5E) of the printable ASCII: NFKC folds them back.
        const fullwidth = Array.from(email)
          .map((char) => String.fromCharCode(char.charCodeAt(0) + 0xfee0))
          .join('');
        expect(canonicalEmail(fullwidth)).toBe(canonical);
        expect(canonicalEmail(compatibilitySpelling(email.toUpperCase(), styles))).toBe(canonical);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('every address whose parts are each in one script round-trips, whatever the scripts', () => {
    fc.assert(
      fc.property(internationalEmail, (email) => {
        expect(canonicalEmail(email)).toBe(email.normalize('NFKC'));
        // Decomposed (NFD) spellings are the same account.
        expect(canonicalEmail(email.normalize('NFD'))).toBe(email.normalize('NFKC'));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('a code point of any disallowed class, anywhere inside, is refused with the one error naming email', () => {
    fc.assert(
      fc.property(fc.oneof(asciiEmail, internationalEmail), disallowed, fc.nat(), (email, { char }, at) => {
        expectRefusal(() => canonicalEmail(insideOf(email, char, at)), 'email');
      }),
      { numRuns: NUM_RUNS * 3 },
    );
  });

  test('a lone surrogate anywhere is refused, never replaced', () => {
    fc.assert(
      fc.property(fc.oneof(asciiEmail, internationalEmail), loneSurrogate, fc.nat(), (email, surrogate, at) => {
        expectRefusal(() => canonicalEmail(anywhereIn(email, surrogate, at)), 'email');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('a letter of another script among the letters of a part (a look-alike) is refused', () => {
    const confusables = fc.constantFrom('а', 'е', 'о', 'р', 'с', 'х', 'ο', 'α', 'ν', 'ρ');
    fc.assert(
      fc.property(label(ALPHABETS.Latin ?? ''), confusables, fc.nat(), fc.boolean(), (part, char, at, inDomain) => {
        const spoofed = insideOf(part, char, at);
        const email = inDomain ? `alice@${spoofed}.com` : `${spoofed}@example.com`;
        expectRefusal(() => canonicalEmail(email), 'email');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test(`an address over ${EMAIL_MAX} code points is refused; ${EMAIL_MAX} is read`, () => {
    fc.assert(
      fc.property(fc.constantFrom('a', 'é', '山'), fc.integer({ min: 1, max: 300 }), (letter, extra) => {
        const domain = '@example.com';
        const exact = `${letter.repeat(EMAIL_MAX - domain.length)}${domain}`;
        expect(codePoints(canonicalEmail(exact))).toBe(EMAIL_MAX);
        expectRefusal(() => canonicalEmail(`${letter.repeat(EMAIL_MAX - domain.length + extra)}${domain}`), 'email');
      }),
      { numRuns: 50 },
    );
  });
});

describe('normaliseName: properties', () => {
  test('any string is either its trimmed self, unchanged otherwise, or refused with the one error naming name', () => {
    fc.assert(
      fc.property(fc.oneof(anyString, visibleName), (input) => {
        const result = outcome(() => normaliseName(input));
        if (result.ok) expect(result.value).toBe(input.trim());
        else expectRefusal(() => normaliseName(input), 'name');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('every visible name in any script round-trips, and normalisation is idempotent', () => {
    fc.assert(
      fc.property(visibleName, fc.constantFrom('', ' ', '  \t'), (name, padding) => {
        expect(normaliseName(`${padding}${name}${padding}`)).toBe(name);
        expect(normaliseName(name)).toBe(name);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('a code point of any disallowed class, anywhere inside, is refused with the one error naming name', () => {
    fc.assert(
      fc.property(
        visibleName.filter((name) => codePoints(name) >= 2),
        disallowed,
        fc.nat(),
        (name, { char }, at) => {
          expectRefusal(() => normaliseName(insideOf(name, char, at)), 'name');
        },
      ),
      { numRuns: NUM_RUNS * 3 },
    );
  });

  test('a name of nothing visible (spaces, combining marks, invisible characters) is refused', () => {
    const invisible = fc.string({
      unit: fc.constantFrom(' ', '\u00A0', '\u3000', '\u0301', '\u0308', '\u200B', '\u2060', '\u3164', '\uFE0F'),
      minLength: 1,
      maxLength: 10,
    });
    fc.assert(
      fc.property(invisible, (name) => {
        expectRefusal(() => normaliseName(name), 'name');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('a name starting with a combining mark is refused', () => {
    fc.assert(
      fc.property(fc.constantFrom('\u0301', '\u0308', '\u0327', '\u20DD'), visibleName, (mark, name) => {
        expectRefusal(() => normaliseName(`${mark}${name}`), 'name');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test(`a name over ${NAME_MAX} code points is refused; ${NAME_MAX} is read, astral characters counting once`, () => {
    fc.assert(
      fc.property(fc.constantFrom('a', 'é', '山', '😀', '𝒜'), fc.integer({ min: 1, max: 200 }), (char, extra) => {
        expect(normaliseName(char.repeat(NAME_MAX))).toBe(char.repeat(NAME_MAX));
        expectRefusal(() => normaliseName(char.repeat(NAME_MAX + extra)), 'name');
      }),
      { numRuns: 50 },
    );
  });

  test('a lone surrogate anywhere is refused, never replaced', () => {
    fc.assert(
      fc.property(visibleName, loneSurrogate, fc.nat(), (name, surrogate, at) => {
        expectRefusal(() => normaliseName(anywhereIn(name, surrogate, at)), 'name');
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('assertValidPassword: properties', () => {
  // The list's entries of a valid length, whose letters survive a round trip through upper case (ß does not).
  const COMMON = dictionary['passwords-common'].filter(
    (password) =>
      codePoints(password) >= PASSWORD_MIN &&
      codePoints(password) <= PASSWORD_MAX &&
      password.toUpperCase().toLowerCase() === password,
  );

  test('any well-formed string of 8 to 256 code points without NUL, not a common password, is accepted as typed', () => {
    fc.assert(
      fc.property(
        fc
          .string({
            unit: fc.oneof(
              fc.constantFrom(' ', '\t', '\u202E', '\u200B'),
              fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
            ),
            minLength: PASSWORD_MIN,
            maxLength: PASSWORD_MAX,
          })
          .filter((password) => !password.includes('\u0000') && !isCommonPassword(password)),
        (password) => {
          // Taken as typed: spaces, controls, bidi controls and astral characters alike, never trimmed.
          expect(() => {
            assertValidPassword(password);
          }).not.toThrow();
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  test('length counts code points: 7 is refused and 257 is refused, whatever UTF-16 makes of them', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('a', 'é', '😀', '𝒜', ' '),
        fc.constantFrom('password', 'newPassword'),
        (char, field) => {
          expectRefusal(() => {
            assertValidPassword(`Z${char.repeat(PASSWORD_MIN - 2)}`, field);
          }, field);
          expectRefusal(() => {
            assertValidPassword(`Zq${char.repeat(PASSWORD_MAX - 1)}`, field);
          }, field);
          expect(() => {
            assertValidPassword(`Zq${char.repeat(PASSWORD_MAX - 2)}`, field);
          }).not.toThrow();
        },
      ),
      { numRuns: 20 },
    );
  });

  test('a lone surrogate or a NUL anywhere is refused, never replaced', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 10, maxLength: 40 }),
        fc.oneof(loneSurrogate, fc.constant('\u0000')),
        fc.nat(),
        (password, bad, at) => {
          expectRefusal(() => {
            assertValidPassword(anywhereIn(password, bad, at), 'newPassword');
          }, 'newPassword');
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  test('a common breached password is refused in any letter case', () => {
    expect(COMMON.length).toBeGreaterThan(10_000);
    fc.assert(
      fc.property(
        fc.constantFrom(...COMMON),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        (password, upper) => {
          const cased = Array.from(password)
            .map((char, i) => (upper[i % upper.length] === true ? char.toUpperCase() : char))
            .join('');
          expectRefusal(() => {
            assertValidPassword(cased);
          }, 'password');
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
