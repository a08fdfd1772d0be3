import { createHash, randomBytes } from 'node:crypto';
import type { UserRole } from '../users/users.repository.ts';

/** Authenticator assurance level of a session: `aal2` once a second factor or a passkey verified it. */
export type AssuranceLevel = 'aal1' | 'aal2';

/** What a session's sign-in proved: carried by its access tokens, kept across refreshes. */
export interface Assurance {
  readonly aal: AssuranceLevel;
  /** Authentication methods used (RFC 8176 names where one exists: `pwd`, `otp`, `hwk`, …). */
  readonly amr: readonly string[];
}

/** A password sign-in: every session before v3's second factors. */
export const PASSWORD_ONLY: Assurance = { aal: 'aal1', amr: ['pwd'] };

/** The claims of an access token besides the registered ones (iss, aud, iat, exp) the signer adds. */
export interface AccessTokenClaims extends Assurance {
  readonly sub: string;
  readonly role: UserRole;
  /** The session (refresh-token family) the token was issued for: it fails once that ends. */
  readonly sid: string;
  /** Token type: a refresh token (opaque, not a JWT) or any other JWT can never pass as access. */
  readonly typ: 'access';
}

/** Signs access tokens; the jwt plugin provides it (algorithm and key from configuration). */
export interface AccessTokenSigner {
  sign(claims: AccessTokenClaims): Promise<string>;
  /** Lifetime of a signed token, in seconds. */
  readonly expiresIn: number;
}

/**
 * A new opaque refresh token: 256 random bits, base64url.
 *
 * @example
 * ```ts
 * const token = newRefreshToken(); // 43 characters
 * const stored = hashRefreshToken(token); // only this reaches the database
 * ```
 */
export function newRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

/** SHA-256, hex. Refresh tokens are random and long, so a fast hash is enough (no salt, no argon2). */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * The HS256 keys of this deployment: the one that signs, named in every token's `kid` header, and
 * the ones still accepted for verification during a rotation's overlap.
 */
export interface KeyRing {
  readonly signing: { readonly kid: string; readonly secret: string };
  /** Every accepted key by its id, the signing key included. */
  readonly verifying: ReadonlyMap<string, string>;
}

/**
 * The id of a secret: derived from it, so every instance configured with the same secret names it
 * the same way and a rotation needs no separate id to coordinate. It reveals nothing usable: a
 * truncated SHA-256 of a secret of at least 32 bytes, whose HMAC signatures are public anyway.
 *
 * @example
 * ```ts
 * keyId('a secret of at least thirty-two bytes!'); // 16 base64url characters, the same on every instance
 * ```
 */
export function keyId(secret: string): string {
  return createHash('sha256').update('jwt-kid\0').update(secret).digest('base64url').slice(0, 16);
}

/**
 * The key ring from JWT_SECRET and JWT_PREVIOUS_SECRETS.
 *
 * @example
 * ```ts
 * const ring = keyRing(config.auth.jwtSecret, config.auth.jwtPreviousSecrets);
 * ring.verifying.get(kidOfToken); // the secret to verify with, or undefined: 401
 * ```
 */
export function keyRing(current: string, previous: readonly string[] = []): KeyRing {
  const signing = { kid: keyId(current), secret: current };
  const verifying = new Map<string, string>([[signing.kid, current]]);
  for (const secret of previous) verifying.set(keyId(secret), secret);
  return { signing, verifying };
}
