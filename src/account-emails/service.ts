import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, InvalidTokenError } from '../platform/errors/index.ts';
import { AccountTokenRepository } from './account-tokens.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import { assertLiveAccountToken, consumeAccountToken } from './account-tokens.ts';
import { NO_CONTEXT, recordAuditEvent, recordAuditEventForEmail, type RequestContext } from '../audit/service.ts';
import { assertValidPassword, canonicalEmail } from '../auth/credentials.ts';
import {
  isActive,
  queuePasswordResetRequest,
  queueSecurityNotice,
  queueVerificationEmail,
  type AccountEmailSettings,
} from '../platform/email/outbox.ts';
import type { PasswordHasher } from '../auth/passwords.ts';
import type { SessionService } from '../sessions/service.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';

export interface AccountEmailServiceDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly settings: AccountEmailSettings;
  /** Ends the sessions a password reset ends. */
  readonly sessions: SessionService;
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
 * const flows = new AccountEmailService({ db, hasher, clock: () => new Date(), settings, sessions });
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
   * Uses a verification token: the account's address counts as verified from now on
   * (`email.verified` in the audit log). A disabled account's token is refused and left unused.
   *
   * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
   */
  async verifyEmail(token: string, context: RequestContext = NO_CONTEXT): Promise<PublicUser> {
    const now = this.#deps.clock();
    const user = await withTransaction(this.#deps.db, async (trx) => {
      const userId = await consumeAccountToken(trx, token, 'email_verification', now);
      const users = new UserRepository(trx);
      // A disabled account's link is refused like a bad one (the rollback leaves it unused, so it
      // works again if the account is enabled while the link is still live).
      const owner = await users.lockForUpdate(userId);
      if (owner === undefined || !isActive(owner)) throw new InvalidTokenError();
      if (await users.markEmailVerified(userId, now)) {
        await recordAuditEvent(trx, 'email.verified', userId, context, { via: 'verification' });
      }
      return users.findById(userId);
    });
    // The token's user is deleted with its tokens, so it exists; the check satisfies the types.
    if (user === undefined) throw new InvalidTokenError();
    return toPublicUser(user);
  }

  /**
   * Asks for a reset link. Answers the same, after about the same work, for every well-formed
   * address: an outbox row is kept only when an active account owns it (nothing is stored for an
   * address nobody owns), by writes that cost the same either way; the dispatcher issues
   * the link when it sends (see `EmailComposer`). The owner's audit log gets
   * `password.reset_requested`, in the same statement whether or not there is an owner.
   *
   * @throws {ValidationError} only for an address that is not one.
   */
  async requestPasswordReset(emailInput: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    const email = canonicalEmail(emailInput);
    await withTransaction(this.#deps.db, async (trx) => {
      await queuePasswordResetRequest(trx, email);
      await recordAuditEventForEmail(trx, 'password.reset_requested', email, context);
    });
    this.#deps.onQueued?.();
  }

  /**
   * Sets a new password with a reset token: every session of the account ends at once (its
   * refresh tokens are revoked, its access tokens fail on every instance), the address counts as
   * verified (the link reached it), and the token is used up. `password.reset` and each session's
   * end are in the audit log. The token of an account disabled since it was issued is refused.
   *
   * @throws {ValidationError} for a password the rules refuse (the token stays usable).
   * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN`
   */
  async resetPassword(token: string, newPassword: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    assertValidPassword(newPassword, 'newPassword');
    // A cheap look first, so a wrong token costs no argon2 hash; the transaction checks again.
    await assertLiveAccountToken(this.#deps.db, token, 'password_reset', this.#deps.clock());
    // Hashed outside the transaction: no connection is held for the time argon2 takes.
    const passwordHash = await this.#deps.hasher.hash(newPassword);
    const now = this.#deps.clock();
    const { ended } = await withTransaction(this.#deps.db, async (trx) => {
      const id = await consumeAccountToken(trx, token, 'password_reset', now);
      const users = new UserRepository(trx);
      // Waits for any refresh of this user in flight, so the token it mints is revoked below too.
      // A link issued before the account was disabled sets nothing: the same answer as a bad one.
      const owner = await users.lockForUpdate(id);
      if (owner === undefined || !isActive(owner)) throw new InvalidTokenError();
      await users.updatePasswordHash(id, passwordHash, now);
      // Whoever reset the password is not signed in: the event's actor is the account itself.
      const userContext = { ...context, actorId: id, sessionId: null };
      if (await users.markEmailVerified(id, now)) {
        await recordAuditEvent(trx, 'email.verified', id, userContext, { via: 'password_reset' });
      }
      await recordAuditEvent(trx, 'password.reset', id, userContext);
      await queueSecurityNotice(trx, owner, 'password_reset');
      const endedIds = await this.#deps.sessions.endAllInTransaction(trx, id, 'password_reset', userContext);
      // A reset link still in someone's inbox must not work after this one was used.
      await new AccountTokenRepository(trx).supersedeLive(id, 'password_reset', now);
      return { userId: id, ended: endedIds };
    });
    this.#deps.onQueued?.();
    this.#deps.sessions.countEnded(ended, 'password_reset');
  }
}
