import { assertStepUpHolds } from '../sessions/step-up.ts';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, ConflictError, NotFoundError } from '../platform/errors/index.ts';
import { PasskeyRepository } from '../passkeys/passkeys.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import type { Principal } from '../auth/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { hasPassword } from '../auth/credentials.ts';
import { IdentityRepository, type IdentityRow } from './identities.repository.ts';

export interface IdentityView {
  readonly id: string;
  readonly provider: string;
  /** As the provider asserted it when last used (null: it gave none). */
  readonly email: string | null;
  readonly createdAt: Date;
}

export interface IdentityServiceDeps {
  readonly db: Kysely<DB>;
  readonly clock: () => Date;
  /** Called once a transaction that queued a security notice committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
}

/**
 * The caller's linked identities: listing and unlinking (never the last way to sign in).
 *
 * @example
 * ```ts
 * const items = await identities.list(principal.userId);
 * await identities.unlink(principal, sessionId, items[0].id, context);
 * ```
 */
export class IdentityService {
  readonly #deps: IdentityServiceDeps;

  constructor(deps: IdentityServiceDeps) {
    this.#deps = deps;
  }

  async list(userId: string): Promise<IdentityView[]> {
    return (await new IdentityRepository(this.#deps.db).listOfUser(userId)).map(viewOf);
  }

  /**
   * Unlinks one of the caller's identities, unless it is the account's last way to sign in (no
   * password, no passkey, no other identity: 409 LAST_SIGN_IN_METHOD). Another user's is a 404.
   */
  async unlink(principal: Principal, sid: string, id: string, context: RequestContext): Promise<void> {
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      // Locked: two unlinks (or an unlink and a passkey removal) cannot each leave the other last.
      const user = await users.lockForUpdate(principal.userId);
      if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
      await assertStepUpHolds(trx, user, sid, this.#deps.clock());
      const identities = new IdentityRepository(trx);
      const mine = await identities.listOfUser(user.id);
      if (!mine.some((identity) => identity.id === id)) throw new NotFoundError('No identity with this id');
      const passkeys = (await new PasskeyRepository(trx).listOfUser(user.id)).length;
      if (mine.length === 1 && passkeys === 0 && !hasPassword(user)) {
        throw new ConflictError('This identity is the only way left to sign in to this account', 'LAST_SIGN_IN_METHOD');
      }
      const removed = await identities.delete(id, user.id);
      await recordAuditEvent(trx, 'identity.unlinked', user.id, context, {
        identityId: id,
        provider: removed?.provider,
      });
      await queueSecurityNotice(trx, user, 'identity_unlinked', this.#deps.clock());
    });
    this.#deps.onEmailQueued?.();
  }
}

function viewOf(identity: IdentityRow): IdentityView {
  return { id: identity.id, provider: identity.provider, email: identity.email, createdAt: identity.created_at };
}
