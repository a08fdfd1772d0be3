import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import * as client from 'openid-client';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import {
  AuthorizationError,
  InvalidTokenError,
  ServiceUnavailableError,
  UniqueConstraintError,
  ValidationError,
} from '../platform/errors/index.ts';
import { UserRepository } from '../users/users.repository.ts';
import type { RequestContext } from '../audit/service.ts';
import type { AuthService, Principal } from '../auth/service.ts';
import type { VerificationEmails } from '../auth/registration.ts';
import type { LoginResult, SecondFactorChallenges } from '../auth/sign-in.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { resolveLink, resolveSignIn, type Resolution } from './accounts.ts';
import { ExchangeCodeRepository, OAuthFlowRepository, type OAuthFlowRow } from './oauth-flows.repository.ts';
import { OidcProviders, ProviderResponseError, type ProviderClaims } from './providers.ts';
import type { OAuthEvents, SignInOutcome } from './metrics.ts';
import { isAllowedRedirect } from './redirects.ts';

/** A flow (state, nonce, PKCE verifier) is single use and lives this long (api.md). */
export const FLOW_TTL_SECONDS = 600;
/** The one-time code of a callback's redirect lives this long. */
export const EXCHANGE_CODE_TTL_SECONDS = 60;
/** A link's authorize URL opens only this soon after it was asked for: sent to someone else, it goes stale. */
export const LINK_OPEN_SECONDS = 60;
/** Expired rows deleted, at most, by each new flow: the tables stay small between maintenance runs. */
const CLEANUP_BATCH = 100;

export interface OAuthServiceDeps {
  readonly db: Kysely<DB>;
  readonly clock: () => Date;
  readonly providers: OidcProviders;
  readonly auth: AuthService;
  /** Accounts with a second factor get its challenge from the exchange instead of tokens. */
  readonly secondFactor: SecondFactorChallenges;
  /** Origins a `redirectTo` may point at. */
  readonly redirectOrigins: readonly string[];
  /** Where the link flow's browser starts: `API_URL`. */
  readonly apiUrl: string;
  /** AUTH_REQUIRE_VERIFIED_EMAIL: an unverified account gets 403 EMAIL_NOT_VERIFIED from the exchange. */
  readonly requireVerifiedEmail?: boolean | undefined;
  /** Queues the verification email of a new account whose email the provider did not verify. */
  readonly verificationEmails?: VerificationEmails | undefined;
  /** Called once a transaction that queued an email committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
  readonly events?: OAuthEvents | undefined;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const random = () => randomBytes(32).toString('base64url');

/**
 * Sign-in through other identity providers (api.md v3): flows that start in a browser, callbacks
 * that resolve the account and hand the client a one-time code in the redirect's fragment, and
 * the exchange of that code for a session (or the second-factor challenge). The state is bound to
 * the browser that started the flow by a cookie whose value only this browser has (`browserKey`):
 * a callback replayed in another browser is refused.
 *
 * @example
 * ```ts
 * const location = await oauth.startSignIn('google', 'https://app.example.com/signed-in', browserKey);
 * const { location: back } = await oauth.callback('google', rawQuery, browserKey, context);
 * const session = await oauth.exchange(codeFromTheFragment, context);
 * ```
 */
export class OAuthService {
  readonly #deps: OAuthServiceDeps;

  constructor(deps: OAuthServiceDeps) {
    this.#deps = deps;
  }

  providers(): { id: string; name: string }[] {
    return this.#deps.providers.list();
  }

  /** A new browser key: the value of the binding cookie. */
  newBrowserKey(): string {
    return random();
  }

  /**
   * Starts a sign-in: the flow is stored and bound to `browserKey`; the answer is the provider's
   * authorization URL.
   *
   * @throws {ValidationError} for an unknown provider or a `redirectTo` off the allow-list.
   * @throws {ServiceUnavailableError} PROVIDER_UNAVAILABLE when the provider cannot be discovered.
   */
  async startSignIn(provider: string, redirectTo: string, browserKey: string): Promise<string> {
    this.#assertStartable(provider, redirectTo);
    const state = client.randomState();
    const flow = await this.#newFlow(state, provider, redirectTo, browserKey, undefined);
    return this.#deps.providers.authorizationUrl(provider, {
      state,
      nonce: flow.nonce,
      codeVerifier: flow.code_verifier,
    });
  }

  /**
   * Starts linking an identity to the signed-in caller's session: the answer is this API's authorize
   * URL with the flow's ticket; the browser that opens it is bound then ({@link openLink}).
   */
  async startLink(principal: Principal, sid: string, provider: string, redirectTo: string): Promise<string> {
    this.#assertStartable(provider, redirectTo);
    // Discovered now, so a provider that is down is a 503 here rather than in the browser.
    await this.#deps.providers.discover(provider);
    const state = client.randomState();
    await this.#newFlow(state, provider, redirectTo, null, { userId: principal.userId, sessionId: sid });
    const url = new URL(`${this.#deps.apiUrl}/auth/oauth/${provider}/authorize`);
    url.searchParams.set('link', state);
    return url.href;
  }

  /** Opens a link flow in the browser that follows its authorize URL. @returns the provider's URL. */
  async openLink(provider: string, ticket: string, browserKey: string): Promise<string> {
    const now = this.#deps.clock();
    const flow = await new OAuthFlowRepository(this.#deps.db).bindBrowser(sha256(ticket), sha256(browserKey), {
      now,
      startedAfter: new Date(now.getTime() - LINK_OPEN_SECONDS * 1000),
    });
    if (flow?.provider !== provider) throw new InvalidTokenError('The link request is invalid or has expired');
    return this.#deps.providers.authorizationUrl(provider, {
      state: ticket,
      nonce: flow.nonce,
      codeVerifier: flow.code_verifier,
    });
  }

  /**
   * The provider's redirect back: the flow is used up (whatever follows), must be this browser's,
   * and its code is exchanged and validated. The answer is where to send the browser: the flow's
   * `redirectTo` with `#code=` (a sign-in), `#linked=` (a link), or `#error=<CODE>`.
   *
   * @throws {InvalidTokenError} when the state is unknown, used, expired or another browser's
   *   (there is no `redirectTo` to trust then).
   */
  async callback(
    provider: string,
    query: string,
    browserKey: string | undefined,
    context: RequestContext,
  ): Promise<{ location: string }> {
    const now = this.#deps.clock();
    const state = new URLSearchParams(query).get('state');
    const flow =
      state === null || state.length > 512
        ? undefined
        : await new OAuthFlowRepository(this.#deps.db).consume(sha256(state), now);
    if (state === null || flow?.provider !== provider || !sameBrowser(flow, browserKey)) {
      throw new InvalidTokenError('The sign-in request is invalid, used, expired or was started in another browser');
    }
    const back = (fragment: Record<string, string>) => ({
      location: `${flow.redirect_to.split('#')[0] ?? ''}#${new URLSearchParams(fragment).toString()}`,
    });
    const refuse = (error: string, outcome: SignInOutcome) => {
      this.#deps.events?.onCallback?.(provider, outcome);
      return back({ error });
    };
    let claims: ProviderClaims;
    try {
      claims = await this.#deps.providers.complete(provider, query, {
        state,
        nonce: flow.nonce,
        codeVerifier: flow.code_verifier,
      });
    } catch (error) {
      if (error instanceof ServiceUnavailableError) return refuse('PROVIDER_UNAVAILABLE', 'unavailable');
      if (error instanceof ProviderResponseError) return refuse('INVALID_OR_EXPIRED_TOKEN', 'invalid');
      throw error;
    }
    const code = random();
    const outcome = await this.#resolve(flow, provider, claims, code, context, now);
    if (outcome.kind === 'refused') return refuse(outcome.error, 'refused');
    if (outcome.linked || outcome.created) this.#deps.onEmailQueued?.();
    if (flow.user_id !== null) {
      this.#deps.events?.onCallback?.(provider, 'linked');
      return back({ linked: provider });
    }
    this.#deps.events?.onCallback?.(provider, outcome.created ? 'signed_up' : 'signed_in');
    return back({ code });
  }

  /**
   * Resolves the account and, for a sign-in, stores the exchange code, in one transaction. A sign-in
   * that took the email or identity first (a unique violation) is answered as if it had committed first.
   */
  async #resolve(
    flow: OAuthFlowRow,
    provider: string,
    claims: ProviderClaims,
    code: string,
    context: RequestContext,
    now: Date,
  ): Promise<Resolution> {
    try {
      return await withTransaction(this.#deps.db, async (trx): Promise<Resolution> => {
        const resolution =
          flow.user_id === null
            ? await resolveSignIn(trx, provider, claims, context, now, async (user) => {
                await this.#deps.verificationEmails?.queue(trx, user, now);
              })
            : await resolveLink(
                trx,
                { user_id: flow.user_id, session_id: flow.session_id },
                provider,
                claims,
                context,
                now,
              );
        if (resolution.kind === 'ok' && flow.user_id === null) {
          await new ExchangeCodeRepository(trx).insert({
            id: uuidv7(),
            code_hash: sha256(code),
            user_id: resolution.user.id,
            provider,
            created_at: now,
            expires_at: new Date(now.getTime() + EXCHANGE_CODE_TTL_SECONDS * 1000),
          });
        }
        return resolution;
      });
    } catch (error) {
      if (!(error instanceof UniqueConstraintError)) throw error;
      return { kind: 'refused', error: error.field === 'email' ? 'ACCOUNT_EXISTS' : 'IDENTITY_IN_USE' };
    }
  }

  /**
   * Trades a callback's one-time code for the login body, or for the second-factor challenge of
   * an account that has one. A session from a provider alone is `aal1`, `amr: ["oidc:<id>"]`.
   *
   * @throws {InvalidTokenError} for a code that is unknown, used or expired.
   */
  async exchange(code: string, context: RequestContext): Promise<LoginResult> {
    const now = this.#deps.clock();
    const used =
      code.length > 512 ? undefined : await new ExchangeCodeRepository(this.#deps.db).consume(sha256(code), now);
    if (used === undefined) throw new InvalidTokenError('The sign-in code is invalid, used or expired');
    const user = await new UserRepository(this.#deps.db).findById(used.user_id);
    if (user?.status !== 'active') throw new AuthorizationError('This account cannot sign in', 'FORBIDDEN');
    if (this.#deps.requireVerifiedEmail === true && user.email_verified_at === null) {
      throw new AuthorizationError('Verify your email address before logging in', 'EMAIL_NOT_VERIFIED');
    }
    const method = `oidc:${used.provider}`;
    if (user.mfa_enabled) return this.#deps.secondFactor.challenge(user, method, context);
    return this.#deps.auth.openSession(user, context, { aal: 'aal1', amr: [method] });
  }

  #assertStartable(provider: string, redirectTo: string): void {
    if (!this.#deps.providers.has(provider)) {
      throw new ValidationError(`No identity provider "${provider}" is configured`, { field: 'provider' });
    }
    if (!isAllowedRedirect(redirectTo, this.#deps.redirectOrigins)) {
      throw new ValidationError('redirectTo is not on the allow-list of this API', { field: 'redirectTo' });
    }
  }

  async #newFlow(
    state: string,
    provider: string,
    redirectTo: string,
    browserKey: string | null,
    /** The signed-in caller and session a link flow is for; undefined for a sign-in. */
    link: { readonly userId: string; readonly sessionId: string } | undefined,
  ): Promise<OAuthFlowRow> {
    const now = this.#deps.clock();
    const flows = new OAuthFlowRepository(this.#deps.db);
    await flows.deleteExpired(now, CLEANUP_BATCH);
    await new ExchangeCodeRepository(this.#deps.db).deleteExpired(now, CLEANUP_BATCH);
    const flow = {
      id: uuidv7(),
      state_hash: sha256(state),
      browser_hash: browserKey === null ? null : sha256(browserKey),
      provider,
      purpose: link === undefined ? 'sign_in' : 'link',
      user_id: link?.userId ?? null,
      session_id: link?.sessionId ?? null,
      nonce: client.randomNonce(),
      code_verifier: client.randomPKCECodeVerifier(),
      redirect_to: redirectTo,
      created_at: now,
      expires_at: new Date(now.getTime() + FLOW_TTL_SECONDS * 1000),
      used_at: null,
    };
    await flows.insert(flow);
    return flow;
  }
}

/** Whether the callback comes from the browser the flow is bound to (constant-time compare). */
function sameBrowser(flow: OAuthFlowRow, browserKey: string | undefined): boolean {
  if (flow.browser_hash === null || browserKey === undefined) return false;
  return timingSafeEqual(Buffer.from(flow.browser_hash), Buffer.from(sha256(browserKey)));
}
