import type { Insertable, Kysely, Selectable } from 'kysely';
import type { DB, Identities } from '../../db-types/index.ts';

export type IdentityRow = Selectable<Identities>;

/**
 * Identities at other providers linked to accounts: one per (provider, subject), whoever's.
 *
 * @example
 * ```ts
 * const identity = await new IdentityRepository(db).findBySubject('google', '1234567890');
 * ```
 */
export class IdentityRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** @throws {UniqueConstraintError} when the (provider, subject) is linked already (a race lost). */
  async insert(identity: Insertable<Identities>): Promise<IdentityRow> {
    return this.#db.insertInto('identities').values(identity).returningAll().executeTakeFirstOrThrow();
  }

  /** The identity the provider's `sub` names, whoever's account it is linked to. */
  async findBySubject(provider: string, subject: string): Promise<IdentityRow | undefined> {
    return this.#db
      .selectFrom('identities')
      .selectAll()
      .where('provider', '=', provider)
      .where('subject', '=', subject)
      .executeTakeFirst();
  }

  /** The user's identities, oldest first. */
  async listOfUser(userId: string): Promise<IdentityRow[]> {
    return this.#db
      .selectFrom('identities')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }

  /** How many identities the user has (a way to sign in each). */
  async countOfUser(userId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('identities')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  /** Records a sign-in with the identity, and the email the provider asserts now. */
  async recordUse(id: string, email: string | null, emailVerified: boolean, at: Date): Promise<void> {
    await this.#db
      .updateTable('identities')
      .set({ last_used_at: at, email, email_verified: emailVerified })
      .where('id', '=', id)
      .execute();
  }

  /** @returns the deleted identity, or undefined when it is not the user's. */
  async delete(id: string, userId: string): Promise<IdentityRow | undefined> {
    return this.#db
      .deleteFrom('identities')
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .returningAll()
      .executeTakeFirst();
  }
}
