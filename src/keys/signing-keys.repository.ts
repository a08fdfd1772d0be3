import { sql, type Insertable, type Kysely, type Selectable } from 'kysely';
import type { DB, SigningKeys } from '../../db-types/index.ts';

export type SigningKeyRow = Selectable<SigningKeys>;

/**
 * The access-token signing keys (a handful of rows: the active key, the next one during a
 * rotation, the retiring ones until their tokens expire).
 *
 * @example
 * ```ts
 * const keys = await new SigningKeyRepository(db).listAll(); // oldest signs_from first
 * ```
 */
export class SigningKeyRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** Every key, in the order they start signing. */
  async listAll(): Promise<SigningKeyRow[]> {
    return this.#db.selectFrom('signing_keys').selectAll().orderBy('signs_from').orderBy('created_at').execute();
  }

  async insert(key: Insertable<SigningKeys>): Promise<SigningKeyRow> {
    return this.#db.insertInto('signing_keys').values(key).returningAll().executeTakeFirstOrThrow();
  }

  /** Deletes the keys named (retired: every token they signed has expired). @returns their ids. */
  async deleteRetired(kids: readonly string[]): Promise<string[]> {
    if (kids.length === 0) return [];
    const rows = await this.#db.deleteFrom('signing_keys').where('kid', 'in', kids).returning('kid').execute();
    return rows.map((row) => row.kid);
  }

  /**
   * Serialises key creation across instances for the rest of the transaction, so two instances
   * starting at once on an empty table create one first key, not two.
   */
  async lockForCreation(): Promise<void> {
    await sql`select pg_advisory_xact_lock(hashtextextended('signing_keys', 0))`.execute(this.#db);
  }
}
