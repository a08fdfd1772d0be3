import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { UserRepository, type UserRow } from '../users/users.repository.ts';
import { recordAuditEvent, type RequestContext } from '../audit/service.ts';
import { canonicalEmail, normaliseName } from '../auth/credentials.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { IdentityRepository } from './identities.repository.ts';
import { stepUpRefusal } from '../sessions/step-up.ts';
import type { ProviderClaims } from './providers.ts';

/** Why a callback ends without a session: the `error` of the redirect's fragment. */
export type ResolutionError =
  'ACCOUNT_EXISTS' | 'IDENTITY_IN_USE' | 'FORBIDDEN' | 'VALIDATION_FAILED' | 'INVALID_TOKEN' | 'MFA_REQUIRED';

export type Resolution =
  | { readonly kind: 'ok'; readonly user: UserRow; readonly created: boolean; readonly linked: boolean }
  | { readonly kind: 'refused'; readonly error: ResolutionError };

/**
 * The account a provider sign-in lands in (api.md "Sign-in through other identity providers"),
 * in the caller's transaction. Nothing is written unless the outcome is `ok`:
 *
 * 1. an identity already linked signs in its account (its last use and asserted email recorded);
 * 2. an account with the asserted email is linked automatically only when the provider asserts
 *    the email verified **and** the account's own email is verified; otherwise `ACCOUNT_EXISTS`.
 *    Linking on an unverified side would let whoever controls that side take the account over;
 * 3. otherwise a new account, without a password, its email verified only when the provider says so.
 *
 * A disabled account is `FORBIDDEN` whichever way it was found.
 */
export async function resolveSignIn(
  trx: Kysely<DB>,
  provider: string,
  claims: ProviderClaims,
  context: RequestContext,
  now: Date,
  /** Queues the verification email of a new account whose email is not verified yet. */
  verifyEmail: (user: UserRow) => Promise<void> = async () => {},
): Promise<Resolution> {
  const identities = new IdentityRepository(trx);
  const users = new UserRepository(trx);
  const linked = await identities.findBySubject(provider, claims.subject);
  if (linked !== undefined) {
    const user = await users.lockForUpdate(linked.user_id);
    if (user?.status !== 'active') return { kind: 'refused', error: 'FORBIDDEN' };
    await identities.recordUse(linked.id, claims.email, claims.emailVerified, now);
    return { kind: 'ok', user, created: false, linked: false };
  }
  const email = emailOf(claims);
  if (email === undefined) return { kind: 'refused', error: 'VALIDATION_FAILED' };
  const existing = await users.findByEmail(email);
  if (existing !== undefined) {
    const user = await users.lockForUpdate(existing.id);
    if (user === undefined) return { kind: 'refused', error: 'ACCOUNT_EXISTS' };
    if (!claims.emailVerified || user.email_verified_at === null) return { kind: 'refused', error: 'ACCOUNT_EXISTS' };
    if (user.status !== 'active') return { kind: 'refused', error: 'FORBIDDEN' };
    await linkIdentity(trx, user, provider, claims, { ...context, actorId: user.id }, now, 'automatic');
    return { kind: 'ok', user, created: false, linked: true };
  }
  const created = await users.create({ email, passwordHash: '', name: nameOf(claims, email) });
  const userContext = { ...context, actorId: created.id };
  let user = created;
  if (claims.emailVerified) {
    await users.markEmailVerified(created.id, now);
    user = { ...created, email_verified_at: now };
  } else {
    await verifyEmail(user);
  }
  await recordAuditEvent(trx, 'user.registered', user.id, userContext, { role: user.role, provider });
  await linkIdentity(trx, user, provider, claims, userContext, now, 'sign_up');
  return { kind: 'ok', user, created: true, linked: true };
}

/**
 * Links the identity to the signed-in `userId` (a link flow), in the caller's transaction:
 * `IDENTITY_IN_USE` when it belongs to another account; nothing to do when it is theirs already.
 */
export async function resolveLink(
  trx: Kysely<DB>,
  flow: { readonly user_id: string; readonly session_id: string | null },
  provider: string,
  claims: ProviderClaims,
  context: RequestContext,
  now: Date,
): Promise<Resolution> {
  const user = await new UserRepository(trx).lockForUpdate(flow.user_id);
  if (user?.status !== 'active') return { kind: 'refused', error: 'FORBIDDEN' };
  // The session that started the link must still be live, and at aal2 once the account has a factor.
  const refusal = await stepUpRefusal(trx, user, flow.session_id, now);
  if (refusal !== undefined) return { kind: 'refused', error: refusal };
  const linked = await new IdentityRepository(trx).findBySubject(provider, claims.subject);
  if (linked !== undefined && linked.user_id !== user.id) return { kind: 'refused', error: 'IDENTITY_IN_USE' };
  if (linked !== undefined) return { kind: 'ok', user, created: false, linked: false };
  await linkIdentity(trx, user, provider, claims, { ...context, actorId: user.id }, now, 'signed_in');
  return { kind: 'ok', user, created: false, linked: true };
}

async function linkIdentity(
  trx: Kysely<DB>,
  user: UserRow,
  provider: string,
  claims: ProviderClaims,
  context: RequestContext,
  now: Date,
  how: 'automatic' | 'sign_up' | 'signed_in',
): Promise<void> {
  const identity = await new IdentityRepository(trx).insert({
    id: uuidv7(),
    user_id: user.id,
    provider,
    subject: claims.subject,
    email: claims.email,
    email_verified: claims.emailVerified,
    created_at: now,
    last_used_at: how === 'signed_in' ? null : now,
  });
  await recordAuditEvent(trx, 'identity.linked', user.id, context, { identityId: identity.id, provider, how });
  // A new account's own creation is no news to its owner.
  if (how !== 'sign_up') await queueSecurityNotice(trx, user, 'identity_linked', now);
}

/** The asserted email in canonical form, or undefined when there is none or it is not an address. */
function emailOf(claims: ProviderClaims): string | undefined {
  if (claims.email === null) return undefined;
  try {
    return canonicalEmail(claims.email);
  } catch {
    return undefined;
  }
}

/** The provider's display name when it is a valid name here, else the email's local part. */
function nameOf(claims: ProviderClaims, email: string): string {
  for (const candidate of [claims.name, email.split('@')[0], 'User']) {
    if (candidate === null || candidate === undefined) continue;
    try {
      return normaliseName(candidate.slice(0, 100));
    } catch {
      // Try the next one.
    }
  }
  return 'User';
}
