import { withTransaction } from '../platform/db/transactions.ts';
import { AuthenticationError, AuthorizationError, InvalidTokenError } from '../platform/errors/index.ts';
import { UserRepository } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import type { TokenPair } from '../auth/service.ts';
import type { PublicUser } from '../users/service.ts';
import { verifyAssertion } from './assertion.ts';
import type { PasskeyAssertion, PasskeyServiceDeps } from './service.ts';

/**
 * A complete sign-in with a passkey: user verification is required, so the session is `aal2`
 * on its own. An unknown credential, a failed verification and a disabled account all answer
 * the 401 a wrong password gets.
 */
export async function signIn(
  deps: PasskeyServiceDeps,
  assertion: PasskeyAssertion,
  context: RequestContext,
): Promise<{ user: PublicUser } & TokenPair> {
  const outcome = await withTransaction(deps.db, (trx) =>
    verifyAssertion(deps, trx, assertion, { kind: 'login' }, context),
  );
  if (outcome.kind === 'invalid_challenge') {
    throw new InvalidTokenError('The passkey challenge is invalid or has expired');
  }
  if (outcome.kind === 'failed') return failSignIn(deps, outcome.userId, outcome.reason, context);
  const user = await new UserRepository(deps.db).findById(outcome.passkey.user_id);
  if (user === undefined) return failSignIn(deps, null, 'unknown_passkey', context);
  if (user.status !== 'active') return failSignIn(deps, user.id, 'disabled', context);
  if (deps.requireVerifiedEmail === true && user.email_verified_at === null) {
    await withTransaction(deps.db, (trx) =>
      recordAuditEvent(trx, 'login.failed', user.id, context, { reason: 'email_not_verified', method: 'passkey' }),
    );
    throw new AuthorizationError('Verify your email address before logging in', 'EMAIL_NOT_VERIFIED');
  }
  return deps.auth.openSession(user, context, { aal: 'aal2', amr: [outcome.method] });
}

/** Records the failure (committed on its own) and answers exactly like a wrong password. */
async function failSignIn(
  deps: PasskeyServiceDeps,
  userId: string | null,
  reason: string,
  context: RequestContext,
): Promise<never> {
  await withTransaction(deps.db, (trx) =>
    recordAuditEvent(trx, 'login.failed', userId, context, { reason, method: 'passkey' }),
  );
  throw new AuthenticationError('Invalid email or password', 'INVALID_CREDENTIALS');
}
