import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import {
  AuthenticationError,
  AuthorizationError,
  ConflictError,
  NotFoundError,
  RateLimitError,
  ValidationError,
} from '../platform/errors/index.ts';
import { AccountTokenRepository } from '../account-emails/account-tokens.repository.ts';
import { AuditEventRepository } from '../audit/audit-events.repository.ts';
import { EmailChangeRepository } from '../account-emails/email-changes.repository.ts';
import { UserRepository, type UserChanges, type UserRow } from './users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { credentialsUnchanged } from '../auth/sign-in.ts';
import { type Principal } from '../auth/service.ts';
import { canonicalEmail, hasPassword, normaliseName } from '../auth/credentials.ts';
import { assertRecentSignIn, assertStepUpHolds } from '../sessions/step-up.ts';
import { queueSecurityNotice, queueVerificationEmail, type AccountEmailSettings } from '../platform/email/outbox.ts';
import type { HashCallers, PasswordHasher } from '../auth/passwords.ts';
import type { SessionService } from '../sessions/service.ts';
import { toPublicUser, type PublicUser } from './service.ts';

/** The kinds of change an admin makes to a user: `update` is a rename. */
export const ADMIN_ACTION_KINDS = ['update', 'role', 'disable', 'enable', 'delete', 'email'] as const;
export type AdminActionKind = (typeof ADMIN_ACTION_KINDS)[number];

export interface AdminEvents {
  /** A change an admin made to a user (metrics count them by kind). */
  onAdminAction?(kind: AdminActionKind): void;
}

export interface UserAdministrationDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly sessions: SessionService;
  readonly events?: AdminEvents | undefined;
  /** Called after a transaction that queued a notice committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
  /** Where the verification link of an address an admin set points; none is sent without it. */
  readonly emailSettings?: AccountEmailSettings | undefined;
}

/** An admin's change to a user, as PATCH /users/:id receives it. */
export interface UserPatch {
  readonly name?: string;
  readonly role?: UserRow['role'];
  readonly status?: UserRow['status'];
  /** The support path for a user without access to their old mailbox. */
  readonly email?: string;
}

/**
 * Changes to accounts: an admin's (PATCH/DELETE /users/:id) and a user's own (PATCH/DELETE
 * /auth/me). No change may leave the deployment without an active admin: every change that
 * could takes the rows of all active admins first (`SELECT … FOR UPDATE`), so two admins
 * demoting each other at once run one after the other and the second gets 409 `LAST_ADMIN`.
 *
 * @example
 * ```ts
 * const admin = new UserAdministration({ db, hasher, clock, sessions });
 * await admin.update(principal, userId, { status: 'disabled' }, context); // its sessions end at once
 * ```
 */
export class UserAdministration {
  readonly #deps: UserAdministrationDeps;

  constructor(deps: UserAdministrationDeps) {
    this.#deps = deps;
  }

  /**
   * PATCH /users/:id. Disabling ends every session of the user in the same transaction. A new
   * `email` moves the account at once (see {@link #moveEmail}).
   *
   * @throws {AuthorizationError} unless the principal is an admin.
   * @throws {NotFoundError} when there is no such user.
   * @throws {ConflictError} `LAST_ADMIN` when no active admin would remain.
   * @throws {UniqueConstraintError} field `email` when another account has the address.
   */
  async update(principal: Principal, id: string, patch: UserPatch, context: RequestContext): Promise<PublicUser> {
    if (principal.role !== 'admin') throw new AuthorizationError();
    const email = patch.email === undefined ? undefined : canonicalEmail(patch.email);
    const changes: UserChanges = {
      ...(patch.name === undefined ? {} : { name: normaliseName(patch.name) }),
      ...(patch.role === undefined ? {} : { role: patch.role }),
      ...(patch.status === undefined ? {} : { status: patch.status }),
    };
    const { user, ended, endedByMove, kinds } = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const removesAdmin = changes.role === 'user' || changes.status === 'disabled';
      const admins = removesAdmin ? await users.lockActiveAdmins() : [];
      const before = await users.lockForUpdate(id);
      if (before === undefined) throw new NotFoundError('User not found');
      if (removesAdmin && admins.includes(before.id)) {
        const remaining = admins.length - 1;
        if (remaining < 1) throw lastAdmin();
      }
      const updated = await users.update(id, changes, this.#deps.clock());
      if (updated === undefined) throw new NotFoundError('User not found');
      const details = changeDetails(before, updated);
      if (details !== undefined) await recordAuditEvent(trx, 'user.updated', id, context, details);
      const endsSessions = before.status === 'active' && updated.status === 'disabled';
      const endedIds = endsSessions
        ? await this.#deps.sessions.endAllInTransaction(trx, id, 'user_disabled', context)
        : [];
      if (endsSessions) {
        // A reset link in the inbox must not outlive the disabling, even if the account comes back.
        await new AccountTokenRepository(trx).supersedeLive(id, 'password_reset', this.#deps.clock());
        await queueSecurityNotice(trx, before, 'account_disabled');
      }
      const moved =
        email === undefined || email === before.email ? undefined : await this.#moveEmail(trx, updated, email, context);
      const after = moved?.user ?? updated;
      return { user: after, ended: endedIds, endedByMove: moved?.ended ?? [], kinds: actionKinds(before, after) };
    });
    if (kinds.includes('disable') || kinds.includes('email')) this.#deps.onEmailQueued?.();
    this.#deps.sessions.countEnded(ended, 'user_disabled');
    this.#deps.sessions.countEnded(endedByMove, 'email_changed');
    for (const kind of kinds) this.#deps.events?.onAdminAction?.(kind);
    return toPublicUser(user);
  }

  /**
   * The support path of an email change (a user who lost the old mailbox): the address moves at
   * once but counts as unverified, and gets a verification link; every session of the user ends,
   * links and pending changes in the old mailbox stop working, the old address is told, and the
   * audit log has `email.changed` with the admin as actor.
   */
  async #moveEmail(
    trx: Kysely<DB>,
    user: UserRow,
    email: string,
    context: RequestContext,
  ): Promise<{ user: UserRow; ended: string[] }> {
    const now = this.#deps.clock();
    const moved = await new UserRepository(trx).changeEmail(user.id, email, null, now);
    if (moved === undefined) throw new NotFoundError('User not found');
    await new EmailChangeRepository(trx).supersedePending(user.id, now);
    const tokens = new AccountTokenRepository(trx);
    for (const purpose of [
      'password_reset',
      'email_verification',
      'email_change_new',
      'email_change_current',
    ] as const) {
      await tokens.supersedeLive(user.id, purpose, now);
    }
    await recordAuditEvent(trx, 'email.changed', user.id, context, { via: 'admin' });
    const ended = await this.#deps.sessions.endAllInTransaction(trx, user.id, 'email_changed', context);
    await queueSecurityNotice(trx, user, 'email_changed');
    const settings = this.#deps.emailSettings;
    if (settings !== undefined) await queueVerificationEmail(trx, moved, settings, now);
    return { user: moved, ended };
  }

  /**
   * DELETE /users/:id: the user, their sessions and tokens go (foreign keys cascade); the audit
   * log keeps a `user.deleted` event with the id only.
   *
   * @throws {AuthorizationError}, {@link NotFoundError}, {@link ConflictError} `LAST_ADMIN`.
   */
  async delete(principal: Principal, id: string, context: RequestContext): Promise<void> {
    if (principal.role !== 'admin') throw new AuthorizationError();
    await this.#erase(id, context, { by: 'admin' });
    this.#deps.events?.onAdminAction?.('delete');
  }

  /**
   * PATCH /auth/me: the caller renames themself. Each change is in the audit log, so one caller
   * renaming in a loop would grow it without end: at most {@link SELF_CHANGES_PER_WINDOW} changes
   * per {@link SELF_CHANGE_WINDOW_SECONDS}, counted from the log itself (no counter to evict, the
   * same on every instance), and a rename to the current name changes and records nothing.
   *
   * @throws {RateLimitError} `RATE_LIMITED` with `retry-after` once the cap is reached.
   */
  async renameSelf(principal: Principal, name: string, context: RequestContext): Promise<PublicUser> {
    const canonical = normaliseName(name);
    const user = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      // The row lock also serialises the caller's concurrent renames, so the count below holds.
      const before = await users.lockForUpdate(principal.userId);
      if (before === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      if (before.name === canonical) return before;
      await assertSelfChangeAllowed(trx, before.id);
      const after = await users.update(principal.userId, { name: canonical }, this.#deps.clock());
      if (after === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const details = changeDetails(before, after);
      if (details !== undefined) await recordAuditEvent(trx, 'user.updated', after.id, context, details);
      return after;
    });
    return toPublicUser(user);
  }

  /**
   * DELETE /auth/me: erases the caller's account after checking their password, or, for an
   * account without one, that the caller signed in recently (see {@link assertRecentSignIn}).
   *
   * @throws {ValidationError} / {AuthenticationError} for a missing (400) or wrong (401) password.
   * @throws {AuthorizationError} FORBIDDEN for an account without a password and an older sign-in.
   * @throws {ConflictError} `LAST_ADMIN` when the caller is the last active admin.
   */
  async deleteSelf(
    principal: Principal,
    password: string | undefined,
    context: RequestContext,
    callers: HashCallers = [],
  ): Promise<void> {
    const user = await new UserRepository(this.#deps.db).findById(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    // The route's check may predate a first factor; `#erase` then holds this row (credentialsUnchanged).
    await assertStepUpHolds(this.#deps.db, user, context.sessionId, this.#deps.clock());
    if (password === undefined && !hasPassword(user)) {
      await assertRecentSignIn(this.#deps.db, user.id, context.sessionId, this.#deps.clock());
    } else {
      if (password === undefined) throw new ValidationError('password is required', { field: 'password' });
      if (!(await this.#deps.hasher.verify(user.password_hash, password, callers))) throw wrongPassword();
    }
    // Erased only if the password checked is still the account's once its row is locked.
    await this.#erase(user.id, context, { by: 'self' }, user);
  }

  async #erase(
    id: string,
    context: RequestContext,
    details: { by: 'admin' | 'self' },
    checked?: UserRow,
  ): Promise<void> {
    const ended = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const admins = await users.lockActiveAdmins();
      const user = await users.lockForUpdate(id);
      if (checked !== undefined && !credentialsUnchanged(checked, user)) throw wrongPassword();
      if (user === undefined) throw new NotFoundError('User not found');
      if (admins.includes(id) && admins.length <= 1) throw lastAdmin();
      // Ended first, so every instance hears each session's end; the rows then go with the user.
      const endedIds = await this.#deps.sessions.endAllInTransaction(trx, id, 'user_deleted', context);
      await recordAuditEvent(trx, 'user.deleted', id, context, details);
      await users.delete(id);
      return endedIds;
    });
    this.#deps.sessions.countEnded(ended, 'user_deleted');
  }
}

/** How many changes a user may make to their own profile per window (each is an audit event). */
export const SELF_CHANGES_PER_WINDOW = 10;
export const SELF_CHANGE_WINDOW_SECONDS = 86_400;

/** @throws {RateLimitError} when the user's own `user.updated` events in the window reached the cap. */
async function assertSelfChangeAllowed(trx: Kysely<DB>, userId: string): Promise<void> {
  const recent = await new AuditEventRepository(trx).countRecent(
    userId,
    userId,
    'user.updated',
    SELF_CHANGE_WINDOW_SECONDS,
  );
  if (recent.count < SELF_CHANGES_PER_WINDOW) return;
  throw new RateLimitError(`At most ${SELF_CHANGES_PER_WINDOW} profile changes a day; try again later`, {
    retryAfterSeconds: Math.max(1, recent.retryAfterSeconds ?? SELF_CHANGE_WINDOW_SECONDS),
  });
}

function wrongPassword(): AuthenticationError {
  return new AuthenticationError('Password is incorrect', 'INVALID_CREDENTIALS', { field: 'password' });
}

function lastAdmin(): ConflictError {
  return new ConflictError('The change would leave no active admin', 'LAST_ADMIN');
}

/**
 * What a change touched, for `user.updated`: the fields changed, and the old and new role and
 * status. A name is personal data and stays out (an erased user's events must keep nothing but
 * the id), as does anything secret. Undefined when nothing changed.
 */
function changeDetails(
  before: UserRow,
  after: UserRow,
): { fields: string[]; changes: Record<string, { old: string; new: string }> } | undefined {
  const fields = (['name', 'role', 'status'] as const).filter((field) => before[field] !== after[field]);
  if (fields.length === 0) return undefined;
  const changes: Record<string, { old: string; new: string }> = {};
  for (const field of ['role', 'status'] as const) {
    if (before[field] !== after[field]) changes[field] = { old: before[field], new: after[field] };
  }
  return { fields, changes };
}

function actionKinds(before: UserRow, after: UserRow): AdminActionKind[] {
  const kinds: AdminActionKind[] = [];
  if (before.email !== after.email) kinds.push('email');
  if (before.role !== after.role) kinds.push('role');
  if (before.status !== after.status) kinds.push(after.status === 'disabled' ? 'disable' : 'enable');
  if (before.name !== after.name) kinds.push('update');
  return kinds;
}
