import * as client from 'openid-client';
import { ServiceUnavailableError } from '../platform/errors/index.ts';
import { isLocalHost, type OAuthConfig, type OidcProviderConfig } from './config.ts';

/** What a provider asserted about the user, from a validated ID token (and its userinfo). */
export interface ProviderClaims {
  readonly subject: string;
  /** Lower-cased as asserted; null when the provider gave none. */
  readonly email: string | null;
  /** Only `email_verified: true` (boolean or the string some providers send) counts. */
  readonly emailVerified: boolean;
  readonly name: string | null;
}

/** The checks of one flow, kept server-side between the redirect and the callback. */
export interface FlowChecks {
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
}

/** How far the provider's clock may be from ours when its token's `exp`, `nbf` and `iat` are read. */
const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * A provider sent something that does not validate (state, ID token signature, issuer, audience,
 * nonce, expiry, a refused code): the sign-in is refused.
 */
export class ProviderResponseError extends Error {
  override readonly name = 'ProviderResponseError';
}

/**
 * The configured identity providers, discovered lazily: a provider down when the API starts does
 * not stop it; the first flow that needs the provider discovers it (within the HTTP timeout), and
 * a failed discovery is tried again by the next one. `openid-client` does the protocol: PKCE S256,
 * state, nonce, and the ID token's checks (signature from the provider's JWKS, issuer, audience,
 * nonce, expiry, with its 30 s clock tolerance).
 *
 * @example
 * ```ts
 * const providers = new OidcProviders(config.oauth);
 * const url = await providers.authorizationUrl('google', checks);
 * const claims = await providers.complete('google', callbackUrl, checks);
 * ```
 */
export class OidcProviders {
  readonly #config: OAuthConfig;
  readonly #byId: ReadonlyMap<string, OidcProviderConfig>;
  readonly #discovered = new Map<string, Promise<client.Configuration>>();

  constructor(config: OAuthConfig) {
    this.#config = config;
    this.#byId = new Map(config.providers.map((provider) => [provider.id, provider]));
  }

  /** The providers a sign-in page offers, in configuration order. */
  list(): { id: string; name: string }[] {
    return this.#config.providers.map(({ id, name }) => ({ id, name }));
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Where the provider sends the browser back: `API_URL/auth/oauth/<id>/callback`. */
  callbackUrl(id: string): string {
    return `${this.#config.apiUrl}/auth/oauth/${id}/callback`;
  }

  /**
   * Discovers the provider now (or reuses what was discovered).
   *
   * @throws {ServiceUnavailableError} PROVIDER_UNAVAILABLE when discovery fails or times out.
   */
  async discover(id: string): Promise<void> {
    await this.#configuration(id);
  }

  /**
   * The provider's authorization URL for a flow (code flow, PKCE S256, state, nonce).
   *
   * @throws {ServiceUnavailableError} PROVIDER_UNAVAILABLE when discovery fails or times out.
   */
  async authorizationUrl(id: string, checks: FlowChecks): Promise<string> {
    const { provider, configuration } = await this.#configuration(id);
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.callbackUrl(id),
      response_type: 'code',
      scope: provider.scopes.join(' '),
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(checks.codeVerifier),
      code_challenge_method: 'S256',
    });
    return url.href;
  }

  /**
   * Completes a flow: exchanges the code from the callback's query (with the PKCE verifier),
   * validates the ID token against the flow's state and nonce, and reads the user's claims
   * (from userinfo as well when the ID token carries no email).
   *
   * @throws {ServiceUnavailableError} PROVIDER_UNAVAILABLE when the provider cannot be reached in time.
   * @throws {ProviderResponseError} for anything that does not validate.
   */
  async complete(id: string, query: string, checks: FlowChecks): Promise<ProviderClaims> {
    const { configuration } = await this.#configuration(id);
    const current = new URL(this.callbackUrl(id));
    current.search = query;
    try {
      const tokens = await client.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: checks.codeVerifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      });
      const idToken = tokens.claims();
      if (idToken === undefined) throw new ProviderResponseError('The provider returned no ID token');
      // openid-client bounds `exp` (and `nbf`) but takes any `iat`: one from the future is refused too.
      if (idToken.iat > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS) {
        throw new ProviderResponseError('The ID token was issued in the future');
      }
      let claims: Record<string, unknown> = idToken;
      if (typeof idToken.email !== 'string' && configuration.serverMetadata().userinfo_endpoint !== undefined) {
        claims = { ...(await client.fetchUserInfo(configuration, tokens.access_token, idToken.sub)), ...idToken };
      }
      return claimsOf(idToken.sub, claims);
    } catch (error) {
      throw classify(error);
    }
  }

  async #configuration(id: string): Promise<{ provider: OidcProviderConfig; configuration: client.Configuration }> {
    const provider = this.#byId.get(id);
    if (provider === undefined) throw new Error(`No identity provider "${id}" is configured`);
    let pending = this.#discovered.get(id);
    if (pending === undefined) {
      pending = this.#discover(provider);
      this.#discovered.set(id, pending);
      // A failure is not kept: the next flow tries again.
      pending.catch(() => this.#discovered.delete(id));
    }
    try {
      return { provider, configuration: await pending };
    } catch (error) {
      throw classify(error);
    }
  }

  async #discover(provider: OidcProviderConfig): Promise<client.Configuration> {
    const issuer = new URL(provider.issuer);
    const insecure =
      issuer.protocol === 'http:' && isLocalHost(issuer.hostname) && this.#config.allowInsecureLocalIssuers;
    return client.discovery(
      issuer,
      provider.clientId,
      { client_secret: provider.clientSecret, [client.clockTolerance]: CLOCK_TOLERANCE_SECONDS },
      client.ClientSecretPost(provider.clientSecret),
      {
        timeout: this.#config.httpTimeoutMs / 1000,
        execute: [
          // The ID token's signature is checked against the provider's JWKS, not only its TLS origin.
          client.enableNonRepudiationChecks,
          // Only for an http://localhost issuer outside production (development and the tests' provider).
          // eslint-disable-next-line @typescript-eslint/no-deprecated
          ...(insecure ? [client.allowInsecureRequests] : []),
        ],
      },
    );
  }
}

/** A provider that cannot be reached (or answers 5xx) is unavailable; anything else is a refusal. */
function classify(error: unknown): Error {
  if (error instanceof ServiceUnavailableError || error instanceof ProviderResponseError) return error;
  const unavailable = () =>
    new ServiceUnavailableError('The identity provider cannot be reached', 'PROVIDER_UNAVAILABLE', { cause: error });
  // fetch() failing (connection refused, DNS, TLS) is a TypeError.
  if (error instanceof TypeError) return unavailable();
  if (error instanceof client.ResponseBodyError) {
    return error.status >= 500 ? unavailable() : new ProviderResponseError(error.message, { cause: error });
  }
  if (error instanceof client.ClientError) {
    const transient = ['OAUTH_TIMEOUT', 'OAUTH_ABORT', 'OAUTH_RESPONSE_IS_NOT_CONFORM', 'OAUTH_RESPONSE_IS_NOT_JSON'];
    if (error.code !== undefined && transient.includes(error.code)) return unavailable();
    if (error.cause instanceof TypeError) return unavailable();
  }
  return new ProviderResponseError(error instanceof Error ? error.message : 'The provider response was refused', {
    cause: error,
  });
}

function claimsOf(subject: string, claims: Record<string, unknown>): ProviderClaims {
  const email = typeof claims.email === 'string' && claims.email.trim() !== '' ? claims.email.trim() : null;
  return {
    subject,
    email,
    emailVerified: email !== null && (claims.email_verified === true || claims.email_verified === 'true'),
    name: typeof claims.name === 'string' ? claims.name : null,
  };
}
