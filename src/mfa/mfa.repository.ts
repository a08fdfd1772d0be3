import type { Insertable, Kysely, Selectable } from 'kysely';
import type { DB, MfaChallenges, MfaFactors } from '../../db-types/index.ts';

export type MfaFactorRow = Selectable<MfaFactors>;
export type MfaChallengeRow = Selectable<MfaChallenges>;

/**
 * A user's second factors (TOTP). A factor counts once `verified_at` is set.
 *
 * @example
 * ```ts
 * const factors = await new MfaFactorRepository(db).listOfUser(userId);
 * ```
 */
export class MfaFactorRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(factor: Insertable<MfaFactors>): Promise<MfaFactorRow> {
    return this.#db.insertInto('mfa_factors').values(factor).returningAll().executeTakeFirstOrThrow();
  }

  /** The user's factors, oldest first. */
  async listOfUser(userId: string): Promise<MfaFactorRow[]> {
    return this.#db
      .selectFrom('mfa_factors')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }

  /** One factor of this user, locked until the transaction ends (verifications of it queue). */
  async lockOfUser(id: string, userId: string): Promise<MfaFactorRow | undefined> {
    return this.#db
      .selectFrom('mfa_factors')
      .selectAll()
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .forUpdate()
      .executeTakeFirst();
  }

  /** Marks a code's time step used (and the factor verified, the first time). */
  async recordUse(id: string, step: number, at: Date): Promise<void> {
    await this.#db
      .updateTable('mfa_factors')
      .set((eb) => ({
        last_used_step: step,
        last_used_at: at,
        verified_at: eb.fn.coalesce('verified_at', eb.val(at)),
      }))
      .where('id', '=', id)
      .execute();
  }

  /** @returns whether the factor existed and was the user's. */
  async delete(id: string, userId: string): Promise<boolean> {
    const deleted = await this.#db
      .deleteFrom('mfa_factors')
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return deleted.numDeletedRows > 0n;
  }

  /** Every factor of the user, or only the unverified ones created before `before`. @returns how many. */
  async deleteOfUser(userId: string, unverifiedBefore?: Date): Promise<number> {
    let query = this.#db.deleteFrom('mfa_factors').where('user_id', '=', userId);
    if (unverifiedBefore !== undefined) {
      query = query.where('verified_at', 'is', null).where('created_at', '<', unverifiedBefore);
    }
    return Number((await query.executeTakeFirst()).numDeletedRows);
  }
}

/**
 * Recovery codes: stored as hashes, single use.
 *
 * @example
 * ```ts
 * const used = await new RecoveryCodeRepository(trx).use(userId, hashOf(code), now); // false: unknown or used
 * ```
 */
export class RecoveryCodeRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** Replaces the user's codes with these. */
  async replace(userId: string, codeHashes: readonly string[], at: Date, ids: readonly string[]): Promise<void> {
    await this.#db.deleteFrom('mfa_recovery_codes').where('user_id', '=', userId).execute();
    if (codeHashes.length === 0) return;
    await this.#db
      .insertInto('mfa_recovery_codes')
      .values(
        codeHashes.map((hash, index) => ({ id: ids[index] ?? '', user_id: userId, code_hash: hash, created_at: at })),
      )
      .execute();
  }

  /** Uses a code once. @returns false when it is not one of the user's unused codes. */
  async use(userId: string, codeHash: string, at: Date): Promise<boolean> {
    const used = await this.#db
      .updateTable('mfa_recovery_codes')
      .set({ used_at: at })
      .where('user_id', '=', userId)
      .where('code_hash', '=', codeHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return used.numUpdatedRows > 0n;
  }

  async countUnused(userId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('mfa_recovery_codes')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('user_id', '=', userId)
      .where('used_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}

/**
 * The sign-in challenges a first factor opens for an account with a second factor.
 *
 * @example
 * ```ts
 * const challenge = await new MfaChallengeRepository(trx).lockByHash(hashOf(mfaToken));
 * ```
 */
export class MfaChallengeRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(challenge: Insertable<MfaChallenges>): Promise<void> {
    await this.#db.insertInto('mfa_challenges').values(challenge).execute();
  }

  /** The challenge, locked until the transaction ends: two completions of one challenge queue, one wins. */
  async lockByHash(tokenHash: string): Promise<MfaChallengeRow | undefined> {
    return this.#db
      .selectFrom('mfa_challenges')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .forUpdate()
      .executeTakeFirst();
  }

  /** The account a challenge belongs to, without locking it (to throttle guesses per account). */
  async userOf(tokenHash: string): Promise<string | undefined> {
    const row = await this.#db
      .selectFrom('mfa_challenges')
      .select('user_id')
      .where('token_hash', '=', tokenHash)
      .executeTakeFirst();
    return row?.user_id;
  }

  async markUsed(id: string, at: Date): Promise<void> {
    await this.#db.updateTable('mfa_challenges').set({ used_at: at }).where('id', '=', id).execute();
  }

  /** The user's challenges that can no longer be completed (used or expired): a user's rows stay few. */
  async deleteSpent(userId: string, now: Date): Promise<void> {
    await this.#db
      .deleteFrom('mfa_challenges')
      .where('user_id', '=', userId)
      .where((eb) => eb.or([eb('used_at', 'is not', null), eb('expires_at', '<=', now)]))
      .execute();
  }
}
