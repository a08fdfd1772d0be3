import { createHash, randomBytes } from 'node:crypto';
import type { UserRole } from '../repositories/users.ts';

/** The claims of an access token besides the registered ones (iss, aud, iat, exp) the signer adds. */
export interface AccessTokenClaims {
  readonly sub: string;
  readonly role: UserRole;
  /** Token type: a refresh token (opaque, not a JWT) or any other JWT can never pass as access. */
  readonly typ: 'access';
}

/** Signs access tokens; the auth plugin provides it from @fastify/jwt with HS256 pinned. */
export interface AccessTokenSigner {
  sign(claims: AccessTokenClaims): string;
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
