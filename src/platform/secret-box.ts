import { createHmac, hkdfSync } from 'node:crypto';
import { CompactEncrypt, compactDecrypt } from 'jose';

/** Bytes of ENCRYPTION_KEY: an AES-256 key. */
export const ENCRYPTION_KEY_BYTES = 32;

/**
 * Encrypts secrets kept at rest (private signing keys; later TOTP secrets) under ENCRYPTION_KEY,
 * as compact JWE (`dir`, `A256GCM`) through jose rather than hand-assembled AES-GCM. The
 * protected header names what the secret is for (`purpose`) and is authenticated with it, so a
 * ciphertext copied to another row or purpose fails to open instead of being misused.
 *
 * @example
 * ```ts
 * const box = new SecretBox(key); // 32 bytes
 * const sealed = await box.seal(new TextEncoder().encode('secret'), 'signing-key:abc');
 * await box.open(sealed, 'signing-key:abc'); // the bytes back; another purpose throws
 * ```
 */
export class SecretBox {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.byteLength !== ENCRYPTION_KEY_BYTES) throw new Error(`An encryption key has ${ENCRYPTION_KEY_BYTES} bytes`);
    this.#key = key;
  }

  async seal(plaintext: Uint8Array, purpose: string): Promise<string> {
    return new CompactEncrypt(plaintext).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', purpose }).encrypt(this.#key);
  }

  /**
   * A keyed digest (HMAC-SHA-256 under a key derived from ENCRYPTION_KEY for `purpose`), for
   * short secrets stored to be compared, not read back: a copy of the database alone cannot be
   * searched for them offline, as a plain hash of a 50-bit recovery code could.
   */
  digest(text: string, purpose: string): string {
    const key = Buffer.from(hkdfSync('sha256', this.#key, '', `pg-fastify-backend digest ${purpose}`, 32));
    return createHmac('sha256', key).update(text).digest('hex');
  }

  /** @throws {Error} when the ciphertext was tampered with, sealed under another key or for another purpose. */
  async open(sealed: string, purpose: string): Promise<Uint8Array> {
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, this.#key, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
    });
    if (protectedHeader['purpose'] !== purpose) throw new Error(`Sealed for another purpose than ${purpose}`);
    return plaintext;
  }
}

/**
 * ENCRYPTION_KEY as configured: base64 (or base64url) of exactly 32 bytes.
 *
 * @example
 * ```ts
 * parseEncryptionKey(randomBytes(32).toString('base64')); // a 32-byte Uint8Array
 * parseEncryptionKey('short'); // undefined
 * ```
 */
export function parseEncryptionKey(encoded: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded)) return undefined;
  const bytes = Buffer.from(encoded.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return bytes.byteLength === ENCRYPTION_KEY_BYTES ? new Uint8Array(bytes) : undefined;
}
