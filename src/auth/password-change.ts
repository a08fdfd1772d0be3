import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError } from '../platform/errors/index.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { assertValidPassword } from './credentials.ts';
import type { HashCallers } from './passwords.ts';
import type { AuthServiceDeps, Principal } from './service.ts';
import { credentialsUnchanged } from './sign-in.ts';
import { assertStepUpHolds } from '../sessions/step-up.ts';

/**
 * Changes the password after checking the current one, and ends every session of the user
 * but the one that made the change (`context.sessionId`).
 */
export async function changePassword(
  deps: AuthServiceDeps,
  principal: Principal,
  currentPassword: string,
  newPassword: string,
  callers: HashCallers,
  context: RequestContext,
): Promise<void> {
  assertValidPassword(newPassword, 'newPassword');
  const user = await new UserRepository(deps.db).findById(principal.userId);
  if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
  if (!(await deps.hasher.verify(user.password_hash, currentPassword, callers))) throw wrongCurrentPassword();
  const passwordHash = await deps.hasher.hash(newPassword, callers);
  const now = deps.clock();
  const ended = await withTransaction(deps.db, async (trx) => {
    const users = new UserRepository(trx);
    // Waits for any refresh of this user in flight, so the token it mints is revoked below too.
    // The current password was checked against the row read before hashing: a change that
    // committed since (another password change, a reset, disabling) makes that check stale.
    const locked = await users.lockForUpdate(user.id);
    if (locked === undefined || !credentialsUnchanged(user, locked)) throw wrongCurrentPassword();
    // The route's step-up check read the account before it was locked (a first factor since counts).
    await assertStepUpHolds(trx, locked, context.sessionId, now);
    await users.updatePasswordHash(user.id, passwordHash, now);
    await recordAuditEvent(trx, 'password.changed', user.id, context);
    await queueSecurityNotice(trx, locked, 'password_changed');
    const keep = context.sessionId ?? undefined;
    return deps.sessions.endAllInTransaction(trx, user.id, 'password_changed', context, keep);
  });
  deps.onEmailQueued?.();
  deps.sessions.countEnded(ended, 'password_changed');
}

function wrongCurrentPassword(): AuthenticationError {
  return new AuthenticationError('Current password is incorrect', 'INVALID_CREDENTIALS', { field: 'currentPassword' });
}
