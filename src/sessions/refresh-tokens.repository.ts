import type { Kysely, Selectable } from 'kysely';
import type { DB, RefreshTokens } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';

export type RefreshTokenRow = Selectable<RefreshTokens>;

export interface NewRefreshToken {
  readonly userId: string;
  readonly familyId: string;
  /** SHA-256 of the opaque token, hex. */
  readonly tokenHash: string;
  readonly expiresAt: Date;
}

// Compiled once each (see fixedQuery): every query here has a fixed shape.
const insertToken = fixedQuery((db, userId: string, familyId: string, tokenHash: string, expiresAt: Date) =>
  db
    .insertInto('refresh_tokens')
    .values({ user_id: userId, family_id: familyId, token_hash: tokenHash, expires_at: expiresAt })
    .returningAll(),
);
const byHash = fixedQuery((db, tokenHash: string) =>
  db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', tokenHash),
);
const markLiveRotated = fixedQuery((db, id: string, at: Date) =>
  db
    .updateTable('refresh_tokens')
    .set({ rotated_at: at })
    .where('id', '=', id)
    .where('rotated_at', 'is', null)
    .where('revoked_at', 'is', null),
);
const revokeLiveOfFamily = fixedQuery((db, familyId: string, at: Date) =>
  db
    .updateTable('refresh_tokens')
    .set({ revoked_at: at })
    .where('family_id', '=', familyId)
    .where('revoked_at', 'is', null),
);
const revokeLiveOfUser = fixedQuery((db, userId: string, at: Date) =>
  db
    .updateTable('refresh_tokens')
    .set({ revoked_at: at })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null),
);
const revokeLiveOfUserExcept = fixedQuery((db, userId: string, keepFamilyId: string, at: Date) =>
  db
    .updateTable('refresh_tokens')
    .set({ revoked_at: at })
    .where('user_id', '=', userId)
    .where('family_id', '<>', keepFamilyId)
    .where('revoked_at', 'is', null),
);

/**
 * Refresh tokens, stored only as hashes and grouped in families (one login's chain of rotations).
 *
 * @example
 * ```ts
 * const tokens = new RefreshTokenRepository(trx);
 * if (await tokens.markRotated(row.id, now)) await tokens.insert({ …next });
 * ```
 */
export class RefreshTokenRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(token: NewRefreshToken): Promise<RefreshTokenRow> {
    return insertToken.takeOne(this.#db, token.userId, token.familyId, token.tokenHash, token.expiresAt);
  }

  async findByHash(tokenHash: string): Promise<RefreshTokenRow | undefined> {
    return byHash.takeFirst(this.#db, tokenHash);
  }

  /**
   * Marks a live token as used. Exactly one of any number of concurrent callers gets `true`:
   * the condition and the update are one statement.
   */
  async markRotated(id: string, at: Date): Promise<boolean> {
    return (await markLiveRotated.affectedRows(this.#db, id, at)) > 0n;
  }

  /** Revokes every live token of a family. @returns how many were revoked. */
  async revokeFamily(familyId: string, at: Date): Promise<number> {
    return Number(await revokeLiveOfFamily.affectedRows(this.#db, familyId, at));
  }

  /** Revokes every live token of a user (password reset, disabled account). @returns how many were revoked. */
  async revokeAllForUser(userId: string, at: Date): Promise<number> {
    return Number(await revokeLiveOfUser.affectedRows(this.#db, userId, at));
  }

  /**
   * Revokes every live token of a user except those of one family (a password change keeps the
   * session that made it). @returns how many were revoked.
   */
  async revokeAllForUserExcept(userId: string, keepFamilyId: string, at: Date): Promise<number> {
    return Number(await revokeLiveOfUserExcept.affectedRows(this.#db, userId, keepFamilyId, at));
  }
}
