import type { Kysely, Selectable } from 'kysely';
import type { DB, RefreshTokens } from '../../db-types/index.ts';
import { instrumentRepository } from '../db/instrumentation.ts';

export type RefreshTokenRow = Selectable<RefreshTokens>;

export interface NewRefreshToken {
  readonly userId: string;
  readonly familyId: string;
  /** SHA-256 of the opaque token, hex. */
  readonly tokenHash: string;
  readonly expiresAt: Date;
}

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
    return this.#db
      .insertInto('refresh_tokens')
      .values({
        user_id: token.userId,
        family_id: token.familyId,
        token_hash: token.tokenHash,
        expires_at: token.expiresAt,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async findByHash(tokenHash: string): Promise<RefreshTokenRow | undefined> {
    return this.#db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
  }

  /**
   * Marks a live token as used. Exactly one of any number of concurrent callers gets `true`:
   * the condition and the update are one statement.
   */
  async markRotated(id: string, at: Date): Promise<boolean> {
    const result = await this.#db
      .updateTable('refresh_tokens')
      .set({ rotated_at: at })
      .where('id', '=', id)
      .where('rotated_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Revokes every live token of a family. @returns how many were revoked. */
  async revokeFamily(familyId: string, at: Date): Promise<number> {
    const result = await this.#db
      .updateTable('refresh_tokens')
      .set({ revoked_at: at })
      .where('family_id', '=', familyId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** Revokes every live token of a user (password change). @returns how many were revoked. */
  async revokeAllForUser(userId: string, at: Date): Promise<number> {
    const result = await this.#db
      .updateTable('refresh_tokens')
      .set({ revoked_at: at })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
}

instrumentRepository(RefreshTokenRepository, 'refreshTokens');
