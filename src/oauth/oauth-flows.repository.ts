import type { Insertable, Kysely, Selectable } from 'kysely';
import type { DB, OauthExchangeCodes, OauthFlows } from '../../db-types/index.ts';
import { deleteBatchBefore } from '../platform/jobs/prune.repository.ts';

export type OAuthFlowRow = Selectable<OauthFlows>;
export type ExchangeCodeRow = Selectable<OauthExchangeCodes>;

/**
 * Provider sign-in flows under way: what the callback needs (nonce, PKCE verifier, where to send
 * the browser) kept server-side under the hash of the `state`, single use, short-lived.
 *
 * @example
 * ```ts
 * const flow = await new OAuthFlowRepository(db).consume(sha256(state), now);
 * ```
 */
export class OAuthFlowRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(flow: Insertable<OauthFlows>): Promise<void> {
    await this.#db.insertInto('oauth_flows').values(flow).execute();
  }

  /**
   * Binds a link flow, not yet opened in any browser and started after `startedAfter`, to the
   * browser that opens it now.
   *
   * @returns the flow, or undefined when it is unknown, bound already, used, expired or too old to open.
   */
  async bindBrowser(
    stateHash: string,
    browserHash: string,
    { now, startedAfter }: { now: Date; startedAfter: Date },
  ): Promise<OAuthFlowRow | undefined> {
    return this.#db
      .updateTable('oauth_flows')
      .set({ browser_hash: browserHash })
      .where('state_hash', '=', stateHash)
      .where('browser_hash', 'is', null)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .where('created_at', '>', startedAfter)
      .returningAll()
      .executeTakeFirst();
  }

  /**
   * Uses a flow once, whatever the outcome of the callback that presents it: two callbacks
   * racing with one state cannot both get it.
   *
   * @returns the flow, or undefined when it is unknown, used or expired.
   */
  async consume(stateHash: string, now: Date): Promise<OAuthFlowRow | undefined> {
    return this.#db
      .updateTable('oauth_flows')
      .set({ used_at: now })
      .where('state_hash', '=', stateHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst();
  }

  /** Flows that can no longer be used: the table stays small between maintenance runs. */
  async deleteExpired(now: Date, limit: number): Promise<void> {
    await deleteBatchBefore(this.#db, 'oauth_flows', 'expires_at', now, limit, 'inclusive').execute();
  }
}

/**
 * The one-time codes a callback hands the client (in the redirect's fragment) to exchange for a
 * session: stored as hashes, single use, 60 seconds.
 *
 * @example
 * ```ts
 * const code = await new ExchangeCodeRepository(db).consume(sha256(presented), now);
 * ```
 */
export class ExchangeCodeRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async insert(code: Insertable<OauthExchangeCodes>): Promise<void> {
    await this.#db.insertInto('oauth_exchange_codes').values(code).execute();
  }

  /** @returns the code, used up now, or undefined when it is unknown, used or expired. */
  async consume(codeHash: string, now: Date): Promise<ExchangeCodeRow | undefined> {
    return this.#db
      .updateTable('oauth_exchange_codes')
      .set({ used_at: now })
      .where('code_hash', '=', codeHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst();
  }

  /** Codes that can no longer be used. */
  async deleteExpired(now: Date, limit: number): Promise<void> {
    await deleteBatchBefore(this.#db, 'oauth_exchange_codes', 'expires_at', now, limit, 'inclusive').execute();
  }
}
