import type { Kysely } from 'kysely';
import type { DB } from '../db/database.ts';
import { withTransaction } from '../db/transactions.ts';
import { AuthenticationError, AuthorizationError, ConflictError, NotFoundError } from '../errors/index.ts';
import { AccountTokenRepository } from '../repositories/account-tokens.ts';
import { UserRepository, type UserChanges, type UserRow } from '../repositories/users.ts';
import { recordAuditEvent, type RequestContext } from './audit-log.ts';
import { credentialsUnchanged, type Principal } from './auth.ts';
import { normaliseName } from './credentials.ts';
import type { HashCallers, PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from './principal-cache.ts';
import type { SessionService } from './sessions.ts';
import { toPublicUser, type PublicUser } from './users.ts';

/** The kinds of change an admin makes to a user: `update` is a rename. */
export const ADMIN_ACTION_KINDS = ['update', 'role', 'disable', 'enable', 'delete'] as const;
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
  readonly principals?: PrincipalCache<unknown> | undefined;
  readonly events?: AdminEvents | undefined;
}

/** An admin's change to a user, as PATCH /users/:id receives it. */
export interface UserPatch {
  readonly name?: string;
  readonly role?: UserRow['role'];
  readonly status?: UserRow['status'];
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
   * PATCH /users/:id. Disabling ends every session of the user in the same transaction.
   *
   * @throws {AuthorizationError} unless the principal is an admin.
   * @throws {NotFoundError} when there is no such user.
   * @throws {ConflictError} `LAST_ADMIN` when no active admin would remain.
   */
  async update(principal: Principal, id: string, patch: UserPatch, context: RequestContext): Promise<PublicUser> {
    if (principal.role !== 'admin') throw new AuthorizationError();
    const changes: UserChanges = {
      ...(patch.name === undefined ? {} : { name: normaliseName(patch.name) }),
      ...(patch.role === undefined ? {} : { role: patch.role }),
      ...(patch.status === undefined ? {} : { status: patch.status }),
    };
    const { user, ended, kinds } = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const removesAdmin = changes.role === 'user' || changes.status === 'disabled';
      const admins = removesAdmin ? await users.lockActiveAdmins() : [];
      const before = await users.lockForUpdate(id);
      if (before === undefined) throw new NotFoundError('User not found');
      if (removesAdmin && admins.includes(before.id)) {
        const remaining = admins.length - 1;
        if (remaining < 1) throw lastAdmin();
      }
      const after = await users.update(id, changes, this.#deps.clock());
      if (after === undefined) throw new NotFoundError('User not found');
      const details = changeDetails(before, after);
      if (details !== undefined) await recordAuditEvent(trx, 'user.updated', id, context, details);
      const endsSessions = before.status === 'active' && after.status === 'disabled';
      const endedIds = endsSessions
        ? await this.#deps.sessions.endAllInTransaction(trx, id, 'user_disabled', context)
        : [];
      // A reset link in the inbox must not outlive the disabling, even if the account comes back.
      if (endsSessions) await new AccountTokenRepository(trx).supersedeLive(id, 'password_reset', this.#deps.clock());
      return { user: after, ended: endedIds, kinds: actionKinds(before, after) };
    });
    this.#deps.principals?.invalidate(id);
    this.#deps.sessions.forget(ended, 'user_disabled');
    for (const kind of kinds) this.#deps.events?.onAdminAction?.(kind);
    return toPublicUser(user);
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

  /** PATCH /auth/me: the caller renames themself. */
  async renameSelf(principal: Principal, name: string, context: RequestContext): Promise<PublicUser> {
    const canonical = normaliseName(name);
    const user = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const before = await users.lockForUpdate(principal.userId);
      if (before === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const after = await users.update(principal.userId, { name: canonical }, this.#deps.clock());
      if (after === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      const details = changeDetails(before, after);
      if (details !== undefined) await recordAuditEvent(trx, 'user.updated', after.id, context, details);
      return after;
    });
    this.#deps.principals?.invalidate(user.id);
    return toPublicUser(user);
  }

  /**
   * DELETE /auth/me: erases the caller's account after checking their password.
   *
   * @throws {AuthenticationError} `INVALID_CREDENTIALS` (field `password`) for a wrong password.
   * @throws {ConflictError} `LAST_ADMIN` when the caller is the last active admin.
   */
  async deleteSelf(
    principal: Principal,
    password: string,
    context: RequestContext,
    callers: HashCallers = [],
  ): Promise<void> {
    const user = await new UserRepository(this.#deps.db).findById(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    if (!(await this.#deps.hasher.verify(user.password_hash, password, callers))) throw wrongPassword();
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
    this.#deps.principals?.invalidate(id);
    this.#deps.sessions.forget(ended, 'user_deleted');
  }
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
  if (before.role !== after.role) kinds.push('role');
  if (before.status !== after.status) kinds.push(after.status === 'disabled' ? 'disable' : 'enable');
  if (before.name !== after.name) kinds.push('update');
  return kinds;
}
