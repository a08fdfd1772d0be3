import type { Insertable, Kysely, Selectable } from 'kysely';
import type { DB, PasskeyCredentials, WebauthnChallenges } from '../../db-types/index.ts';

export type PasskeyRow = Selectable<PasskeyCredentials>;
export type WebauthnChallengeRow = Selectable<WebauthnChallenges>;

/**
 * Passkeys: WebAuthn credentials, each the public half of a key an authenticator keeps.
 *
 * @example
 * ```ts
 * const passkey = await new PasskeyRepository(db).findByCredentialId(credential.id);
 * ```
 */
export class PasskeyRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(passkey: Insertable<PasskeyCredentials>): Promise<PasskeyRow> {
    return this.#db.insertInto('passkey_credentials').values(passkey).returningAll().executeTakeFirstOrThrow();
  }

  /** The user's passkeys, oldest first. */
  async listOfUser(userId: string): Promise<PasskeyRow[]> {
    return this.#db
      .selectFrom('passkey_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
  }

  /** The passkey an assertion names (its authenticator's credential id), whoever owns it. */
  async findByCredentialId(credentialId: string): Promise<PasskeyRow | undefined> {
    return this.#db
      .selectFrom('passkey_credentials')
      .selectAll()
      .where('credential_id', '=', credentialId)
      .executeTakeFirst();
  }

  /** The passkey an assertion names, locked until the transaction ends: two uses of it queue. */
  async lockByCredentialId(credentialId: string): Promise<PasskeyRow | undefined> {
    return this.#db
      .selectFrom('passkey_credentials')
      .selectAll()
      .where('credential_id', '=', credentialId)
      .forUpdate()
      .executeTakeFirst();
  }

  /** Records a verified use: the authenticator's new signature counter and when. */
  async recordUse(id: string, counter: number, at: Date): Promise<void> {
    await this.#db.updateTable('passkey_credentials').set({ counter, last_used_at: at }).where('id', '=', id).execute();
  }

  /** @returns the renamed passkey, or undefined when it is not the user's. */
  async rename(id: string, userId: string, name: string): Promise<PasskeyRow | undefined> {
    return this.#db
      .updateTable('passkey_credentials')
      .set({ name })
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .returningAll()
      .executeTakeFirst();
  }

  /** @returns whether the passkey existed and was the user's. */
  async delete(id: string, userId: string): Promise<boolean> {
    const deleted = await this.#db
      .deleteFrom('passkey_credentials')
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return deleted.numDeletedRows > 0n;
  }

  /** Every passkey of the user (an admin's reset of second factors). @returns how many. */
  async deleteOfUser(userId: string): Promise<number> {
    const deleted = await this.#db.deleteFrom('passkey_credentials').where('user_id', '=', userId).executeTakeFirst();
    return Number(deleted.numDeletedRows);
  }
}

/**
 * The server-side challenges of WebAuthn ceremonies: random, single use, short-lived, in the
 * database so that any instance can verify the options another handed out.
 *
 * @example
 * ```ts
 * const challenge = await new WebauthnChallengeRepository(db).consume(challengeId, now);
 * ```
 */
export class WebauthnChallengeRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(challenge: Insertable<WebauthnChallenges>): Promise<void> {
    await this.#db.insertInto('webauthn_challenges').values(challenge).execute();
  }

  /**
   * Uses a challenge once, whatever the outcome of the ceremony that presents it.
   *
   * @returns the challenge, or undefined when it is unknown, used or expired.
   */
  async consume(id: string, now: Date): Promise<WebauthnChallengeRow | undefined> {
    return this.#db
      .updateTable('webauthn_challenges')
      .set({ used_at: now })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst();
  }

  /** Like {@link consume}, for a registration, which names its challenge by value (in clientDataJSON). */
  async consumeByValue(challenge: string, now: Date): Promise<WebauthnChallengeRow | undefined> {
    return this.#db
      .updateTable('webauthn_challenges')
      .set({ used_at: now })
      .where('challenge', '=', challenge)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst();
  }

  /** Challenges that can no longer be used (expired): the table stays small without a job. */
  async deleteExpired(now: Date): Promise<void> {
    await this.#db.deleteFrom('webauthn_challenges').where('expires_at', '<=', now).execute();
  }
}
