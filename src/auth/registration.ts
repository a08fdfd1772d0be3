import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { UniqueConstraintError } from '../platform/errors/index.ts';
import { UserRepository, type UserRole, type UserRow } from '../users/users.repository.ts';
import { NO_CONTEXT, recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';
import { assertValidPassword, canonicalEmail, normaliseName } from './credentials.ts';
import type { HashCallers, PasswordHasher } from './passwords.ts';
import type { AuthServiceDeps } from './service.ts';

export interface NewAccount {
  readonly email: string;
  readonly password: string;
  readonly name: string;
  readonly role?: UserRole;
}

/** How registration queues its verification email (see `queueVerificationEmail`). */
export interface VerificationEmails {
  /** Runs inside the registration's transaction. */
  queue(trx: Kysely<DB>, user: UserRow, now: Date): Promise<void>;
  /** Called once that transaction committed. */
  queued?(): void;
}

/**
 * Registers an account through POST /auth/register: records `user.registered` and queues the
 * verification email in the registration's transaction.
 *
 * @throws {UniqueConstraintError} field `email` when the canonical email is taken.
 */
export async function register(
  deps: AuthServiceDeps,
  input: NewAccount,
  callers: HashCallers,
  context: RequestContext,
): Promise<PublicUser> {
  const emails = deps.verificationEmails;
  if (emails === undefined) return registerUser(deps, input, { callers, context });
  const user = await registerUser(deps, input, {
    callers,
    context,
    inTransaction: (trx, created) => emails.queue(trx, created, deps.clock()),
  });
  emails.queued?.();
  return user;
}

/**
 * Registration that does not tell whether the address has an account (ASVS 6.3.8,
 * REGISTRATION_ENUMERATION_SAFE): a new address is registered as by {@link register}; for a
 * taken one the same password hash is computed, nothing is created, and the owner gets an
 * `account_exists` notice instead. The caller answers both alike.
 *
 * @throws {ValidationError} for a malformed email, name or password (the same for both).
 */
export async function registerWithoutDisclosure(
  deps: AuthServiceDeps,
  input: NewAccount,
  callers: HashCallers,
  context: RequestContext,
): Promise<void> {
  try {
    await register(deps, input, callers, context);
  } catch (error) {
    if (!(error instanceof UniqueConstraintError)) throw error;
    const email = canonicalEmail(input.email);
    const notified = await withTransaction(deps.db, async (trx) => {
      const owner = await new UserRepository(trx).findByEmail(email);
      if (owner === undefined) return false;
      return queueSecurityNotice(trx, owner, 'account_exists', deps.clock());
    });
    if (notified) deps.onEmailQueued?.();
  }
}

/**
 * Creates an account: canonical email, trimmed name, password checked and hashed with argon2id.
 * Used by POST /auth/register and by `npm run user:create` (which may give the admin role).
 *
 * @throws {ValidationError} for a malformed email, name or password.
 * @throws {UniqueConstraintError} field `email` when the canonical email is taken.
 */
export async function registerUser(
  deps: { readonly db: Kysely<DB>; readonly hasher: PasswordHasher },
  input: NewAccount,
  options: {
    /** Whose share of the hashing queue the hash counts against (see `PasswordHasher`). */
    readonly callers?: HashCallers;
    /** Who asked, for the `user.registered` event (nobody known for `npm run user:create`). */
    readonly context?: RequestContext;
    /** More work in the registration's transaction (queueing the verification email). */
    readonly inTransaction?: (trx: Kysely<DB>, user: UserRow) => Promise<void>;
  } = {},
): Promise<PublicUser> {
  const email = canonicalEmail(input.email);
  const name = normaliseName(input.name);
  assertValidPassword(input.password);
  // Hashed before the transaction: no connection is held while argon2 runs.
  const passwordHash = await deps.hasher.hash(input.password, options.callers ?? []);
  const user = await withTransaction(deps.db, async (trx) => {
    const created = await new UserRepository(trx).create({
      email,
      name,
      passwordHash,
      ...(input.role === undefined ? {} : { role: input.role }),
    });
    await recordAuditEvent(trx, 'user.registered', created.id, options.context ?? NO_CONTEXT, {
      role: created.role,
    });
    await options.inTransaction?.(trx, created);
    return created;
  });
  return toPublicUser(user);
}
