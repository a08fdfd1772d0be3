import type { Kysely, Selectable } from 'kysely';
import type { AccountTokens, DB } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';

export type AccountTokenRow = Selectable<AccountTokens>;
export type AccountTokenPurpose = AccountTokenRow['purpose'];

export interface NewAccountToken {
  readonly userId: string;
  readonly purpose: AccountTokenPurpose;
  /** SHA-256 of the token, hex; the token itself is never stored. */
  readonly tokenHash: string;
  readonly expiresAt: Date;
  /** The email change the token confirms (purposes email_change_new and email_change_current). */
  readonly emailChangeId?: string | null;
}

const insertToken = fixedQuery(
  (
    db,
    userId: string,
    purpose: AccountTokenPurpose,
    tokenHash: string,
    expiresAt: Date,
    emailChangeId: string | null,
  ) =>
    db
      .insertInto('account_tokens')
      .values({
        user_id: userId,
        purpose,
        token_hash: tokenHash,
        expires_at: expiresAt,
        email_change_id: emailChangeId,
      })
      .returningAll(),
);
const supersedeLive = fixedQuery((db, userId: string, purpose: AccountTokenPurpose, at: Date) =>
  db
    .updateTable('account_tokens')
    .set({ superseded_at: at })
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('superseded_at', 'is', null),
);
const countLive = fixedQuery((db, userId: string, purpose: AccountTokenPurpose, now: Date) =>
  db
    .selectFrom('account_tokens')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('superseded_at', 'is', null)
    .where('expires_at', '>', now),
);
const byHash = fixedQuery((db, tokenHash: string) =>
  db.selectFrom('account_tokens').selectAll().where('token_hash', '=', tokenHash),
);
const lockByHash = fixedQuery((db, tokenHash: string) =>
  db.selectFrom('account_tokens').selectAll().where('token_hash', '=', tokenHash).forUpdate(),
);
const markLiveUsed = fixedQuery((db, id: string, at: Date) =>
  db
    .updateTable('account_tokens')
    .set({ used_at: at })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .where('superseded_at', 'is', null),
);

/**
 * Single-use tokens sent by email (address verification, password reset, the two links of an
 * email change), stored as hashes.
 *
 * @example
 * ```ts
 * const tokens = new AccountTokenRepository(trx);
 * await tokens.supersedeLive(userId, 'password_reset', now);
 * await tokens.insert({ userId, purpose: 'password_reset', tokenHash, expiresAt });
 * ```
 */
export class AccountTokenRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(token: NewAccountToken): Promise<AccountTokenRow> {
    return insertToken.takeOne(
      this.#db,
      token.userId,
      token.purpose,
      token.tokenHash,
      token.expiresAt,
      token.emailChangeId ?? null,
    );
  }

  /** Marks every unused, not yet superseded token of the user and purpose superseded. @returns how many. */
  async supersedeLive(userId: string, purpose: AccountTokenPurpose, at: Date): Promise<number> {
    return Number(await supersedeLive.affectedRows(this.#db, userId, purpose, at));
  }

  /** Tokens of the user and purpose that still work at `now` (unused, not superseded, unexpired). */
  async countLive(userId: string, purpose: AccountTokenPurpose, now: Date): Promise<number> {
    return Number((await countLive.takeFirst(this.#db, userId, purpose, now))?.count ?? 0);
  }

  async findByHash(tokenHash: string): Promise<AccountTokenRow | undefined> {
    return byHash.takeFirst(this.#db, tokenHash);
  }

  /**
   * The token with this hash, locked until the transaction ends (`FOR UPDATE`), so two requests
   * presenting it at once are serialised and only the first can use it.
   */
  async lockByHash(tokenHash: string): Promise<AccountTokenRow | undefined> {
    return lockByHash.takeFirst(this.#db, tokenHash);
  }

  /** @returns whether the token was live and is now used (false: used or superseded meanwhile). */
  async markUsed(id: string, at: Date): Promise<boolean> {
    return (await markLiveUsed.affectedRows(this.#db, id, at)) > 0n;
  }
}
