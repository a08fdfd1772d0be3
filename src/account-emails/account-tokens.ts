import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { InvalidTokenError } from '../platform/errors/index.ts';
import { AccountTokenRepository, type AccountTokenPurpose, type AccountTokenRow } from './account-tokens.repository.ts';

/** 256 random bits in base64url: always exactly this many characters of this alphabet. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/**
 * A new account token: 256 random bits, base64url (43 characters), and the hash that is stored.
 *
 * @example
 * ```ts
 * const { token, tokenHash } = newAccountToken();
 * ```
 */
export function newAccountToken(): { token: string; tokenHash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, tokenHash: hashAccountToken(token) };
}

/** SHA-256, hex: the tokens are long and random, so a fast unsalted hash is enough. */
export function hashAccountToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Issues a token for `userId` inside the caller's unit of work: the user's live tokens of the same
 * purpose are superseded first, so only the newest link works (unless `keepLive`).
 *
 * @returns the token to put in the link; only its hash is stored.
 */
export async function issueAccountToken(
  trx: Kysely<DB>,
  request: {
    readonly userId: string;
    readonly purpose: AccountTokenPurpose;
    readonly ttlSeconds: number;
    /** The email change the token confirms, for its two purposes. */
    readonly emailChangeId?: string;
    /** Leave the user's live tokens working (reset links asked for by anyone: see `EmailComposer`). */
    readonly keepLive?: boolean;
  },
  now: Date,
): Promise<string> {
  const tokens = new AccountTokenRepository(trx);
  if (request.keepLive !== true) await tokens.supersedeLive(request.userId, request.purpose, now);
  const { token, tokenHash } = newAccountToken();
  await tokens.insert({
    userId: request.userId,
    purpose: request.purpose,
    tokenHash,
    expiresAt: new Date(now.getTime() + request.ttlSeconds * 1000),
    emailChangeId: request.emailChangeId ?? null,
  });
  return token;
}

/**
 * Uses a presented token inside the caller's unit of work (which must be a transaction: the row
 * stays locked until it ends, so of two requests presenting one token only the first succeeds).
 *
 * Every way of being wrong — malformed, unknown, another purpose, expired, used, superseded —
 * is the same error, so the answer tells nothing about which tokens exist.
 *
 * @returns the id of the user the token was issued to.
 * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
 */
export async function consumeAccountToken(
  trx: Kysely<DB>,
  presented: string,
  purpose: AccountTokenPurpose,
  now: Date,
): Promise<string> {
  return (await consumeAccountTokenOf(trx, presented, [purpose], now)).user_id;
}

/**
 * {@link consumeAccountToken} for a token that may be of any of `purposes` (the two links of an
 * email change share one confirmation route).
 *
 * @returns the token's row as it was before it was used.
 * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
 */
export async function consumeAccountTokenOf(
  trx: Kysely<DB>,
  presented: string,
  purposes: readonly AccountTokenPurpose[],
  now: Date,
): Promise<AccountTokenRow> {
  if (!TOKEN_SHAPE.test(presented)) throw new InvalidTokenError();
  const tokenHash = hashAccountToken(presented);
  const tokens = new AccountTokenRepository(trx);
  const row = await tokens.lockByHash(tokenHash);
  if (row === undefined || !isLive(row, tokenHash, purposes, now) || !(await tokens.markUsed(row.id, now))) {
    throw new InvalidTokenError();
  }
  return row;
}

/**
 * The checks of {@link consumeAccountToken} without using the token up or locking it: a cheap
 * look before expensive work (hashing a new password), which the consuming transaction repeats.
 *
 * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
 */
export async function assertLiveAccountToken(
  db: Kysely<DB>,
  presented: string,
  purpose: AccountTokenPurpose,
  now: Date,
): Promise<void> {
  if (!TOKEN_SHAPE.test(presented)) throw new InvalidTokenError();
  const tokenHash = hashAccountToken(presented);
  const row = await new AccountTokenRepository(db).findByHash(tokenHash);
  if (row === undefined || !isLive(row, tokenHash, [purpose], now)) throw new InvalidTokenError();
}

function isLive(row: AccountTokenRow, tokenHash: string, purposes: readonly AccountTokenPurpose[], now: Date): boolean {
  return (
    // The lookup is by hash, so its timing depends on the hash, never on how much of the token
    // was right; the comparison here keeps that true whatever the index does.
    timingSafeEqual(Buffer.from(row.token_hash), Buffer.from(tokenHash)) &&
    purposes.includes(row.purpose) &&
    row.used_at === null &&
    row.superseded_at === null &&
    row.expires_at.getTime() > now.getTime()
  );
}
