import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SigningKeyRow } from '../../src/keys/signing-keys.repository.ts';
import { parseEncryptionKey, SecretBox } from '../../src/platform/secret-box.ts';
import { CLOCK_SKEW_MS, keyStates } from '../../src/keys/key-states.ts';

const T0 = new Date('2026-12-01T00:00:00Z').getTime();
const TTL_MS = 900_000;
const at = (ms: number) => new Date(T0 + ms);

function key(kid: string, signsFromMs: number): SigningKeyRow {
  return {
    kid,
    algorithm: 'EdDSA',
    public_jwk: {},
    private_jwe: '',
    created_at: at(Math.min(0, signsFromMs)),
    signs_from: at(signsFromMs),
  };
}

describe('keyStates', () => {
  const rows = [key('first', 0), key('second', 3_600_000)];

  it.each([
    ['before the rotation', 60_000, ['active', 'next']],
    ['when the new key starts signing', 3_600_000, ['retiring', 'active']],
    ['while tokens of the old key may live', 3_600_000 + TTL_MS + CLOCK_SKEW_MS - 1, ['retiring', 'active']],
    ['once the last of them expired', 3_600_000 + TTL_MS + CLOCK_SKEW_MS, ['retired', 'active']],
  ] as const)('%s', (_name, nowMs, expected) => {
    expect(keyStates(rows, at(nowMs), TTL_MS).map((info) => info.state)).toEqual(expected);
  });

  it('orders keys by when they sign, whatever order the rows came in', () => {
    const states = keyStates([...rows].reverse(), at(60_000), TTL_MS);
    expect(states.map((info) => info.kid)).toEqual(['first', 'second']);
  });

  it('says until when a retiring key stays published, and nothing for the others', () => {
    const [old, current] = keyStates(rows, at(3_600_000), TTL_MS);
    expect(old?.publishedUntil).toEqual(at(3_600_000 + TTL_MS + CLOCK_SKEW_MS));
    expect(current?.publishedUntil).toBeNull();
  });
});

describe('SecretBox (ENCRYPTION_KEY at rest)', () => {
  const box = new SecretBox(randomBytes(32));
  const secret = new TextEncoder().encode('a private key');

  it('opens what it sealed, for the same purpose', async () => {
    expect(await box.open(await box.seal(secret, 'signing-key:a'), 'signing-key:a')).toEqual(secret);
  });

  it('refuses to open a secret sealed for another purpose (a row copied onto another)', async () => {
    await expect(box.open(await box.seal(secret, 'signing-key:a'), 'signing-key:b')).rejects.toThrow(/purpose/);
  });

  it('refuses a secret sealed under another key', async () => {
    const sealed = await new SecretBox(randomBytes(32)).seal(secret, 'signing-key:a');
    await expect(box.open(sealed, 'signing-key:a')).rejects.toThrow();
  });

  it('refuses a tampered ciphertext', async () => {
    const parts = (await box.seal(secret, 'signing-key:a')).split('.');
    const ciphertext = Buffer.from(parts[3] ?? '', 'base64url');
    ciphertext[0] = (ciphertext[0] ?? 0) ^ 1;
    parts[3] = ciphertext.toString('base64url');
    await expect(box.open(parts.join('.'), 'signing-key:a')).rejects.toThrow();
  });

  it('digests a short secret under the key: the same for the same key and purpose, unlike any other', () => {
    const other = new SecretBox(randomBytes(32));
    expect(box.digest('ABCDEFGHIJ', 'recovery-code')).toBe(box.digest('ABCDEFGHIJ', 'recovery-code'));
    expect(box.digest('ABCDEFGHIJ', 'recovery-code')).not.toBe(other.digest('ABCDEFGHIJ', 'recovery-code'));
    expect(box.digest('ABCDEFGHIJ', 'recovery-code')).not.toBe(box.digest('ABCDEFGHIJ', 'another'));
    expect(box.digest('ABCDEFGHIJ', 'recovery-code')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('never holds the plaintext in what it stores', async () => {
    expect(await box.seal(secret, 'signing-key:a')).not.toContain('a private key');
  });

  it.each([
    ['32 bytes of base64', randomBytes(32).toString('base64'), true],
    ['32 bytes of base64url', randomBytes(32).toString('base64url'), true],
    ['31 bytes', randomBytes(31).toString('base64'), false],
    ['64 bytes', randomBytes(64).toString('base64'), false],
    ['not base64', 'correct horse battery staple correct horse', false],
  ])('parses ENCRYPTION_KEY: %s', (_name, text, valid) => {
    expect(parseEncryptionKey(text) !== undefined).toBe(valid);
  });
});
