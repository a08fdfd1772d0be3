import type { Kysely } from 'kysely';
import type { DB } from '../db/database.ts';
import { withTransaction } from '../db/transactions.ts';
import { AuthenticationError, InvalidTokenError } from '../errors/index.ts';
import { AccountTokenRepository } from '../repositories/account-tokens.ts';
import { RefreshTokenRepository } from '../repositories/refresh-tokens.ts';
import { UserRepository } from '../repositories/users.ts';
import { assertLiveAccountToken, consumeAccountToken } from './account-tokens.ts';
import type { AuthenticatedUser } from './auth.ts';
import { assertValidPassword, canonicalEmail } from './credentials.ts';
import { queuePasswordResetRequest, queueVerificationEmail, type AccountEmailSettings } from './email.ts';
import type { PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from './principal-cache.ts';
import { toPublicUser, type PublicUser } from './users.ts';

export interface AccountEmailServiceDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly settings: AccountEmailSettings;
  readonly principals?: PrincipalCache<AuthenticatedUser> | undefined;
  /** Called after a transaction that queued an email committed (wakes this instance's dispatcher). */
  readonly onQueued?: (() => void) | undefined;
}

/**
 * Email verification and password reset: the flows behind /auth/email/* and /auth/password/*.
 * Emails are only queued here (in the outbox, in the same transaction as the change); the
 * dispatcher sends them, so no request ever waits on SMTP.
 *
 * @example
 * ```ts
 * const flows = new AccountEmailService({ db, hasher, clock: () => new Date(), settings });
 * await flows.requestPasswordReset('ada@example.com'); // 202 whether or not Ada exists
 * await flows.resetPassword(tokenFromTheLink, 'a new passphrase');
 * ```
 */
export class AccountEmailService {
  readonly #deps: AccountEmailServiceDeps;

  constructor(deps: AccountEmailServiceDeps) {
    this.#deps = deps;
  }

  /** Queues a verification email for an account; nothing when the address is already verified. */
  async requestVerification(userId: string): Promise<void> {
    const now = this.#deps.clock();
    const queued = await withTransaction(this.#deps.db, async (trx) => {
      // Locked, so two re-sends at once leave exactly one live token.
      const user = await new UserRepository(trx).lockForUpdate(userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      if (user.email_verified_at !== null) return false;
      await queueVerificationEmail(trx, user, this.#deps.settings, now);
      return true;
    });
    if (queued) this.#deps.onQueued?.();
  }

  /**
   * Uses a verification token: the account's address counts as verified from now on.
   *
   * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
   */
  async verifyEmail(token: string): Promise<PublicUser> {
    const now = this.#deps.clock();
    const user = await withTransaction(this.#deps.db, async (trx) => {
      const userId = await consumeAccountToken(trx, token, 'email_verification', now);
      const users = new UserRepository(trx);
      await users.markEmailVerified(userId, now);
      return users.findById(userId);
    });
    // The token's user is deleted with its tokens, so it exists; the check satisfies the types.
    if (user === undefined) throw new InvalidTokenError();
    this.#deps.principals?.invalidate(user.id);
    return toPublicUser(user);
  }

  /**
   * Asks for a reset link. Answers the same, after the same work, for every well-formed address:
   * the outbox row is written whoever owns it, and the dispatcher sends a link only to an active
   * account (see `EmailComposer`).
   *
   * @throws {ValidationError} only for an address that is not one.
   */
  async requestPasswordReset(emailInput: string): Promise<void> {
    const email = canonicalEmail(emailInput);
    await queuePasswordResetRequest(this.#deps.db, email);
    this.#deps.onQueued?.();
  }

  /**
   * Sets a new password with a reset token: every session of the account ends (its refresh
   * tokens are revoked and its cached principal dropped), the address counts as verified (the
   * link reached it), and the token is used up.
   *
   * @throws {ValidationError} for a password the rules refuse (the token stays usable).
   * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
   */
  async resetPassword(token: string, newPassword: string): Promise<void> {
    assertValidPassword(newPassword, 'newPassword');
    // A cheap look first, so a wrong token costs no argon2 hash; the transaction checks again.
    await assertLiveAccountToken(this.#deps.db, token, 'password_reset', this.#deps.clock());
    // Hashed outside the transaction: no connection is held for the time argon2 takes.
    const passwordHash = await this.#deps.hasher.hash(newPassword);
    const now = this.#deps.clock();
    const userId = await withTransaction(this.#deps.db, async (trx) => {
      const id = await consumeAccountToken(trx, token, 'password_reset', now);
      const users = new UserRepository(trx);
      // Waits for any refresh of this user in flight, so the token it mints is revoked below too.
      await users.lockForUpdate(id);
      await users.updatePasswordHash(id, passwordHash, now);
      await users.markEmailVerified(id, now);
      await new RefreshTokenRepository(trx).revokeAllForUser(id, now);
      // A reset link still in someone's inbox must not work after this one was used.
      await new AccountTokenRepository(trx).supersedeLive(id, 'password_reset', now);
      return id;
    });
    this.#deps.principals?.invalidate(userId);
  }
}
