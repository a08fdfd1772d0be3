import type { Principal } from './auth.ts';

/** Who is about to do something sensitive: the caller and the session (`sid`) they are using. */
export interface StepUpCaller {
  readonly principal: Principal;
  readonly sessionId: string | null;
}

/**
 * The one check point of api.md v3's "`aal2` when a factor exists": the actions it guards (email
 * change today; password change, account deletion, factor and identity changes once they exist)
 * call it after the password check.
 *
 * No second factor exists yet (issue 29), so every caller passes. When factors land, this throws
 * `AuthorizationError('…', 'MFA_REQUIRED')` for an account with a verified factor whose session is
 * not at `aal2`; its callers need no change.
 *
 * @example
 * ```ts
 * await requireRecentStrongAuth({ principal, sessionId });
 * ```
 */
export async function requireRecentStrongAuth(caller: StepUpCaller): Promise<void> {
  // Nothing to check until accounts can have a second factor.
  await Promise.resolve(caller);
}
