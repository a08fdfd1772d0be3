import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { RefreshTokenRepository } from '../sessions/refresh-tokens.repository.ts';
import type { UserRow } from '../users/users.repository.ts';
import { hashRefreshToken, newRefreshToken, type AccessTokenSigner, type Assurance } from '../keys/tokens.ts';
import type { AuthServiceDeps, TokenPair } from './service.ts';

/** The token pair of session `sid`: a new access token carrying `assurance`, and `refreshToken`. */
export async function issueTokenPair(
  signer: AccessTokenSigner,
  user: UserRow,
  sid: string,
  refreshToken: string,
  assurance: Assurance,
): Promise<TokenPair> {
  return {
    accessToken: await signer.sign({ sub: user.id, role: user.role, sid, typ: 'access', ...assurance }),
    refreshToken,
    tokenType: 'Bearer',
    expiresIn: signer.expiresIn,
  };
}

/**
 * A new token pair for a live session whose assurance was just raised, in the caller's
 * transaction: the session's live refresh token is revoked (presenting it later is a plain 401,
 * not a theft) and a new one of the same family and expiry takes its place.
 */
export async function reissueInTransaction(
  deps: AuthServiceDeps,
  trx: Kysely<DB>,
  user: UserRow,
  sid: string,
  expiresAt: Date,
): Promise<(assurance: Assurance) => Promise<TokenPair>> {
  const tokens = new RefreshTokenRepository(trx);
  await tokens.revokeFamily(sid, deps.clock());
  const refreshToken = newRefreshToken();
  await tokens.insert({ userId: user.id, familyId: sid, tokenHash: hashRefreshToken(refreshToken), expiresAt });
  return (assurance) => issueTokenPair(deps.signer, user, sid, refreshToken, assurance);
}
