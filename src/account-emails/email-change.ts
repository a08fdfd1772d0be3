import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import {
  AuthenticationError,
  InvalidTokenError,
  UniqueConstraintError,
  ValidationError,
} from '../platform/errors/index.ts';
import { AccountTokenRepository } from './account-tokens.repository.ts';
import { EmailChangeRepository, type EmailChangeRow } from './email-changes.repository.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { consumeAccountTokenOf } from './account-tokens.ts';
import { NO_CONTEXT, recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { credentialsUnchanged } from '../auth/sign-in.ts';
import { assertRecentSignIn, assertStepUpHolds } from '../sessions/step-up.ts';
import type { Principal } from '../auth/service.ts';
import { canonicalEmail, hasPassword } from '../auth/credentials.ts';
import {
  isActive,
  queueEmailChangeLinks,
  queueSecurityNotice,
  type AccountEmailSettings,
} from '../platform/email/outbox.ts';
import type { HashCallers, PasswordHasher } from '../auth/passwords.ts';
import type { SessionService } from '../sessions/service.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';

export interface EmailChangeServiceDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly settings: AccountEmailSettings;
  readonly sessions: SessionService;
  /**
   * REGISTRATION_ENUMERATION_SAFE: a request for an address another account has is answered like
   * any other (that account's owner gets a notice) instead of 409, so it tells nothing.
   */
  readonly enumerationSafe?: boolean | undefined;
  /** Called after a transaction that queued an email committed (wakes this instance's dispatcher). */
  readonly onQueued?: (() => void) | undefined;
}

/** Where a change stands after one of its links was used. */
export interface EmailChangeOutcome {
  readonly status: 'awaiting_other' | 'changed';
  readonly user: PublicUser;
}

const CHANGE_PURPOSES = ['email_change_new', 'email_change_current'] as const;

/**
 * Changing an account's email address (api.md v3, "Changing the email address"): the request
 * sends a link to the new address and one to the current address; the change takes effect, in one
 * transaction, once both were used and the new address is still free. Then every other session
 * ends, the new address counts as verified, and the old address is told.
 *
 * An account whose current address was never verified confirms with the new address only: that
 * address never proved to be the owner's, and fixing a mistyped address is the usual reason for
 * the change (README, "Changing the email address").
 *
 * @example
 * ```ts
 * await changes.request({ principal, sessionId }, 'ada@new.example', 'her password');
 * await changes.confirm(tokenFromTheNewAddress); // { status: 'awaiting_other', user }
 * await changes.confirm(tokenFromTheCurrentAddress); // { status: 'changed', user }
 * ```
 */
export class EmailChangeService {
  readonly #deps: EmailChangeServiceDeps;

  constructor(deps: EmailChangeServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Checks the password (and, once factors exist, the session's strength), then queues the links;
   * an earlier request of the user stops working. `email.change_requested` is in the audit log.
   *
   * @throws {ValidationError} for an address that is not one, or is the account's own.
   * @throws {AuthenticationError} `INVALID_CREDENTIALS` (field `password`) for a wrong password.
   * @throws {UniqueConstraintError} field `newEmail` when another account has the address (unless
   * enumeration-safe).
   */
  async request(
    caller: { readonly principal: Principal; readonly sessionId: string | null },
    newEmailInput: string,
    password: string | undefined,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<void> {
    const newEmail = canonicalEmail(newEmailInput, 'newEmail');
    const found = await new UserRepository(this.#deps.db).findById(caller.principal.userId);
    if (found === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    // The password when the account has one (api.md); without one, a recent sign-in stands in for it.
    if (password === undefined && !hasPassword(found)) {
      await assertRecentSignIn(this.#deps.db, found.id, caller.sessionId, this.#deps.clock());
    } else {
      if (password === undefined) throw new ValidationError('password is required', { field: 'password' });
      if (!(await this.#deps.hasher.verify(found.password_hash, password, callers))) {
        throw new AuthenticationError('Password is incorrect', 'INVALID_CREDENTIALS', { field: 'password' });
      }
    }
    if (newEmail === found.email) {
      throw new ValidationError('newEmail is already the address of this account', { field: 'newEmail' });
    }
    const now = this.#deps.clock();
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(found.id);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      // The password was checked against the row read before hashing: a change that committed
      // since (password change or reset, disabling, another email change) makes that check stale.
      if (!credentialsUnchanged(found, user)) {
        throw new AuthenticationError('Password is incorrect', 'INVALID_CREDENTIALS', { field: 'password' });
      }
      // The route's step-up check read the account before it was locked (a first factor since counts).
      await assertStepUpHolds(trx, user, caller.sessionId, now);
      const owner = await users.findByEmail(newEmail);
      if (owner !== undefined) {
        if (this.#deps.enumerationSafe !== true) {
          throw new UniqueConstraintError('Duplicate value for newEmail', { field: 'newEmail' });
        }
        // The caller is answered as if the links went out; the address's owner learns of the try.
        await queueSecurityNotice(trx, owner, 'account_exists');
      } else {
        const changes = new EmailChangeRepository(trx);
        await changes.supersedePending(user.id, now);
        const change = await changes.insert({
          userId: user.id,
          newEmail,
          sessionId: caller.sessionId,
          currentRequired: user.email_verified_at !== null,
          expiresAt: new Date(now.getTime() + this.#deps.settings.verificationTtlSeconds * 1000),
        });
        await queueEmailChangeLinks(
          trx,
          user,
          { id: change.id, newEmail, toCurrent: change.current_required },
          this.#deps.settings,
          now,
        );
      }
      // No address in the details: an erased user's events keep nothing but the id.
      await recordAuditEvent(trx, 'email.change_requested', user.id, context);
    });
    this.#deps.onQueued?.();
  }

  /**
   * Uses one link of a change. The change takes effect when it was the last link the change
   * needed: the address moves, counts as verified, every session but the requesting one ends,
   * links still in the old mailbox (reset, verification) stop working, and the old address gets a
   * notice. When the new address was taken meanwhile, nothing changes (the link stays usable).
   *
   * @throws {InvalidTokenError} `INVALID_OR_EXPIRED_TOKEN` (also for a disabled account).
   * @throws {UniqueConstraintError} field `email` when another account took the new address.
   */
  async confirm(token: string, context: RequestContext = NO_CONTEXT): Promise<EmailChangeOutcome> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const used = await consumeAccountTokenOf(trx, token, CHANGE_PURPOSES, now);
      const users = new UserRepository(trx);
      const user = await users.lockForUpdate(used.user_id);
      if (user === undefined || !isActive(user) || used.email_change_id === null) throw new InvalidTokenError();
      const changes = new EmailChangeRepository(trx);
      const pending = await changes.lockById(used.email_change_id);
      if (pending === undefined || !isPending(pending, now)) throw new InvalidTokenError();
      const side = used.purpose === 'email_change_new' ? 'new' : 'current';
      const change = await changes.markConfirmed(pending.id, side, now);
      if (!isConfirmed(change)) return { status: 'awaiting_other', user, ended: [] } as const;
      return { status: 'changed', ...(await this.#apply(trx, user, change, now, context)) } as const;
    });
    if (outcome.status === 'changed') {
      this.#deps.sessions.countEnded(outcome.ended, 'email_changed');
      this.#deps.onQueued?.();
    }
    return { status: outcome.status, user: toPublicUser(outcome.user) };
  }

  /** The change itself, in the confirming transaction. */
  async #apply(
    trx: Kysely<DB>,
    user: UserRow,
    change: EmailChangeRow,
    now: Date,
    context: RequestContext,
  ): Promise<{ user: UserRow; ended: string[] }> {
    const users = new UserRepository(trx);
    const owner = await users.findByEmail(change.new_email);
    if (owner !== undefined && owner.id !== user.id) {
      throw new UniqueConstraintError('Duplicate value for email', { field: 'email' });
    }
    const changed = await users.changeEmail(user.id, change.new_email, now, now);
    if (changed === undefined) throw new InvalidTokenError();
    await new EmailChangeRepository(trx).markCompleted(change.id, now);
    // Links still in the old mailbox must not act on the account once it has moved.
    const tokens = new AccountTokenRepository(trx);
    for (const purpose of ['password_reset', 'email_verification', ...CHANGE_PURPOSES] as const) {
      await tokens.supersedeLive(user.id, purpose, now);
    }
    // Whoever used the last link is not signed in: the event's actor is the account itself.
    const userContext = { ...context, actorId: user.id, sessionId: null };
    await recordAuditEvent(trx, 'email.changed', user.id, userContext, { via: 'confirmation' });
    const ended = await this.#deps.sessions.endAllInTransaction(
      trx,
      user.id,
      'email_changed',
      userContext,
      change.session_id ?? undefined,
    );
    await queueSecurityNotice(trx, user, 'email_changed');
    return { user: changed, ended };
  }
}

function isPending(change: EmailChangeRow, now: Date): boolean {
  return change.completed_at === null && change.superseded_at === null && change.expires_at.getTime() > now.getTime();
}

function isConfirmed(change: EmailChangeRow): boolean {
  return change.new_confirmed_at !== null && (!change.current_required || change.current_confirmed_at !== null);
}

/**
 * Called as the account's first second factor is turned on: requests made before it, perhaps by a
 * session that had only the password, stop working (the owner asks again, now at `aal2`).
 */
export async function cancelChangesBegunWithoutFactor(trx: Kysely<DB>, userId: string, now: Date): Promise<void> {
  await new EmailChangeRepository(trx).supersedePending(userId, now);
}
