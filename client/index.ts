/**
 * The typed client of this API: openapi-fetch over the types `npm run api:client` generates from
 * the server's own OpenAPI document (client/schema.ts), plus what every caller would otherwise
 * rewrite: the bearer token, refresh-token rotation when the access token expires, typed error
 * bodies and `retry-after`. Only `fetch`, `Request`, `Response` and `Headers` are used, so it runs
 * in Node (18+) and in browsers alike; openapi-fetch is the one runtime dependency.
 *
 * @example
 * ```ts
 * const api = createApiClient({ baseUrl: 'http://127.0.0.1:3000' });
 * await api.login('ada@example.com', 'correct horse battery staple');
 * const { data, error } = await api.GET('/users/{id}', { params: { path: { id } } });
 * if (error) console.log(error.error.code); // 'NOT_FOUND' | 'FORBIDDEN' | …, typed
 * ```
 */
import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema.ts';

export type { components, operations, paths } from './schema.ts';

/** The `error` object of every error response. */
export type ApiError = components['schemas']['Error']['error'];
/** Every error `code` the server can send (the registry in src/platform/errors/): switch on it. */
export type ErrorCode = ApiError['code'];
export type User = components['schemas']['User'];

/** A finished sign-in: the tokens are kept by the client. */
export interface SignedIn {
  readonly mfaRequired: false;
  readonly user: User;
}

/** The password was right and the account has a second factor: finish with {@link ApiClient.completeLogin}. */
export interface SecondFactorRequired {
  readonly mfaRequired: true;
  readonly mfaToken: string;
  readonly methods: readonly ('totp' | 'recovery_code' | 'passkey')[];
  /** Seconds the mfaToken stays valid. */
  readonly expiresIn: number;
}

/** What {@link ApiClient.login} resolves to: narrow on `mfaRequired`. */
export type LoginOutcome = SignedIn | SecondFactorRequired;

/**
 * A passkey assertion: the `challengeId` of POST /auth/passkeys/authentication/options and the
 * credential `navigator.credentials.get()` returned, as JSON (e.g. `startAuthentication()` of
 * `@simplewebauthn/browser`).
 */
export type PasskeyAssertion = NonNullable<
  NonNullable<paths['/auth/login/mfa']['post']['requestBody']>['content']['application/json']['passkey']
>;

/** A second factor: the 6-digit code of the authenticator app, one of the recovery codes, or a passkey. */
export type SecondFactor =
  { readonly code: string } | { readonly recoveryCode: string } | { readonly passkey: PasskeyAssertion };

/** The tokens of a signed-in client: what login and refresh return. */
export interface Tokens {
  readonly accessToken: string;
  readonly refreshToken: string;
}

export interface ApiClientOptions {
  /** Where the API is, e.g. `https://api.example.com`; paths are appended to it. */
  readonly baseUrl: string;
  /** Tokens kept from an earlier session (e.g. read from storage). */
  readonly tokens?: Tokens;
  /**
   * Told whenever the tokens change: after login and every rotation (store them: the old refresh
   * token stops working), and with `undefined` after logout or a refused refresh (signed out).
   */
  readonly onTokens?: (tokens: Tokens | undefined) => void;
  /** Another fetch (tests, instrumentation); the global one by default. */
  readonly fetch?: (request: Request) => Promise<Response>;
  /**
   * The device token of this device's last login (e.g. read from storage): sent with every
   * login, so strangers' failed attempts on the account never lock this device out.
   */
  readonly deviceToken?: string;
  /** Told of each new device token (every successful login rotates it): store it with the device. */
  readonly onDeviceToken?: (deviceToken: string) => void;
}

export interface ApiClient extends Client<paths> {
  /** The current tokens; undefined when signed out. */
  readonly tokens: Tokens | undefined;
  /** The device token the next login sends; undefined before the first login on this device. */
  readonly deviceToken: string | undefined;
  /** Replaces the tokens (e.g. after a login done elsewhere); undefined signs out locally. */
  setTokens(tokens: Tokens | undefined): void;
  /**
   * POST /auth/login (with this device's token, when it has one) and keep the tokens and the new
   * device token. Resolves to the user (`mfaRequired: false`), to the
   * second-factor challenge of an account that has one (`mfaRequired: true`: then call
   * {@link completeLogin}), or to the error body (401 INVALID_CREDENTIALS, 429 RATE_LIMITED with
   * {@link ApiResult.retryAfterSeconds}, …).
   *
   * @example
   * ```ts
   * const result = await api.login(email, password);
   * if (result.ok && result.value.mfaRequired) await api.completeLogin(result.value.mfaToken, { code });
   * ```
   */
  login(email: string, password: string): Promise<ApiResult<LoginOutcome>>;
  /** POST /auth/login/mfa: finishes a sign-in with a second factor and keeps the tokens (now `aal2`). */
  completeLogin(mfaToken: string, factor: SecondFactor): Promise<ApiResult<User>>;
  /** POST /auth/mfa/step-up: raises the current session to `aal2` (needed for sensitive actions) and keeps the new tokens. */
  stepUp(factor: SecondFactor): Promise<ApiResult<null>>;
  /**
   * POST /auth/passkeys/authentication: signs in with a passkey alone (a session at `aal2`) and
   * keeps the tokens. Get the options first with `api.POST('/auth/passkeys/authentication/options', { body: {} })`.
   *
   * @example
   * ```ts
   * const { data } = await api.POST('/auth/passkeys/authentication/options', { body: {} });
   * const credential = await startAuthentication({ optionsJSON: data.options });
   * await api.signInWithPasskey({ challengeId: data.challengeId, credential });
   * ```
   */
  signInWithPasskey(assertion: PasskeyAssertion): Promise<ApiResult<User>>;
  /**
   * Where to send the browser to sign in with an identity provider (GET /auth/providers lists
   * them): open it with `window.location`, not fetch. The provider's sign-in ends at `redirectTo`
   * with `#code=…` (then call {@link exchangeProviderCode}) or `#error=<CODE>`.
   */
  providerSignInUrl(provider: string, redirectTo: string): string;
  /**
   * POST /auth/oauth/exchange: trades the one-time code of a provider sign-in's redirect for a
   * session and keeps the tokens, or resolves to the second-factor challenge (`mfaRequired: true`:
   * then call {@link completeLogin}).
   *
   * @example
   * ```ts
   * const code = new URLSearchParams(location.hash.slice(1)).get('code');
   * if (code !== null) await api.exchangeProviderCode(code);
   * ```
   */
  exchangeProviderCode(code: string): Promise<ApiResult<LoginOutcome>>;
  /** POST /auth/logout with the current refresh token (its session ends), then forget the tokens. */
  logout(): Promise<ApiResult<null>>;
}

/** A success value or the typed error body, with `retry-after` when the server sent one. */
export type ApiResult<T> =
  | { readonly ok: true; readonly value: T; readonly response: Response }
  | {
      readonly ok: false;
      readonly error: ApiError;
      readonly response: Response;
      readonly retryAfterSeconds: number | undefined;
    };

/**
 * Seconds to wait before retrying, from the response's `retry-after` (seconds or an HTTP date);
 * undefined when it has none. Sent with 429 and 503.
 */
export function retryAfterSeconds(response: Response, now: Date = new Date()): number | undefined {
  const header = response.headers.get('retry-after');
  if (header === null || header.trim() === '') return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now.getTime()) / 1000));
}

/** Whether `value` is an error body of this API (`{ error: { code, … } }`). */
export function isErrorBody(value: unknown): value is { error: ApiError } {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false;
  const error: unknown = value.error;
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string';
}

/**
 * A client for this API. Every request carries the current access token. When the server answers
 * 401 `TOKEN_EXPIRED`, the client rotates the refresh token once and repeats the request once;
 * concurrent requests that hit the expiry together share that one rotation (the contract's reuse
 * interval would make a second rotation harmless, but it would still cost a round trip and a
 * second access token). A refused rotation signs the client out and returns the original 401.
 */
export function createApiClient(options: ApiClientOptions): ApiClient {
  const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  let tokens = options.tokens;
  let deviceToken = options.deviceToken;
  let rotation: Promise<Tokens | undefined> | undefined;
  /** A copy of each request before it is sent: the body of the original is consumed by then. */
  const replays = new WeakMap<Request, Request>();

  const setTokens = (next: Tokens | undefined) => {
    tokens = next;
    options.onTokens?.(next);
  };

  const rotate = async (refreshToken: string): Promise<Tokens | undefined> => {
    const response = await send(
      new Request(`${baseUrl}/auth/refresh`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refreshToken }),
      }),
    );
    if (!response.ok) {
      // Another rotation (a login, another tab through onTokens) may have replaced the tokens meanwhile.
      if (tokens?.refreshToken === refreshToken) setTokens(undefined);
      return undefined;
    }
    const pair = (await response.json()) as Tokens;
    setTokens({ accessToken: pair.accessToken, refreshToken: pair.refreshToken });
    return tokens;
  };

  /** Fresh tokens after `expired` was refused: a rotation already done or running, or a new one. */
  const renewed = async (expired: string): Promise<Tokens | undefined> => {
    if (tokens !== undefined && tokens.accessToken !== expired) return tokens;
    if (rotation === undefined) {
      const refreshToken = tokens?.refreshToken;
      if (refreshToken === undefined) return undefined;
      rotation = rotate(refreshToken).finally(() => {
        rotation = undefined;
      });
    }
    return rotation;
  };

  const auth: Middleware = {
    onRequest({ request }) {
      if (tokens !== undefined && !request.headers.has('authorization'))
        request.headers.set('authorization', `Bearer ${tokens.accessToken}`);
      replays.set(request, request.clone());
      return request;
    },
    async onResponse({ request, response }) {
      const replay = replays.get(request);
      replays.delete(request);
      const used = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')?.[1];
      if (response.status !== 401 || used === undefined || replay === undefined) return response;
      const body: unknown = await response
        .clone()
        .json()
        .catch(() => undefined);
      if (!isErrorBody(body) || body.error.code !== 'TOKEN_EXPIRED') return response;
      const next = await renewed(used);
      if (next === undefined) return response;
      replay.headers.set('authorization', `Bearer ${next.accessToken}`);
      // Sent directly, not through the client: a second expiry is answered, not retried again.
      return send(replay);
    },
  };

  const client = createClient<paths>({ baseUrl, fetch: send });
  client.use(auth);

  /** Every completed sign-in rotates this device's token: the next login sends the new one. */
  const keepDeviceToken = (next: string) => {
    deviceToken = next;
    options.onDeviceToken?.(next);
  };

  const login = async (email: string, password: string): Promise<ApiResult<LoginOutcome>> => {
    const body = deviceToken === undefined ? { email, password } : { email, password, deviceToken };
    const { data, error, response } = await client.POST('/auth/login', { body });
    if (data === undefined) return failure(error, response);
    if ('mfaRequired' in data) return { ok: true, value: data, response };
    setTokens({ accessToken: data.accessToken, refreshToken: data.refreshToken });
    keepDeviceToken(data.deviceToken);
    return { ok: true, value: { mfaRequired: false, user: data.user }, response };
  };

  const completeLogin = async (mfaToken: string, factor: SecondFactor): Promise<ApiResult<User>> => {
    const body = deviceToken === undefined ? { mfaToken, ...factor } : { mfaToken, ...factor, deviceToken };
    const { data, error, response } = await client.POST('/auth/login/mfa', { body });
    if (data === undefined) return failure(error, response);
    // A second factor never answers with another challenge; the schema shares the login's.
    if ('mfaRequired' in data) throw new Error('The server asked for another factor');
    setTokens({ accessToken: data.accessToken, refreshToken: data.refreshToken });
    keepDeviceToken(data.deviceToken);
    return { ok: true, value: data.user, response };
  };

  const stepUp = async (factor: SecondFactor): Promise<ApiResult<null>> => {
    const { data, error, response } = await client.POST('/auth/mfa/step-up', { body: { ...factor } });
    if (data === undefined) return failure(error, response);
    setTokens({ accessToken: data.accessToken, refreshToken: data.refreshToken });
    return { ok: true, value: null, response };
  };

  const signInWithPasskey = async (assertion: PasskeyAssertion): Promise<ApiResult<User>> => {
    const { data, error, response } = await client.POST('/auth/passkeys/authentication', { body: assertion });
    if (data === undefined) return failure(error, response);
    setTokens({ accessToken: data.accessToken, refreshToken: data.refreshToken });
    return { ok: true, value: data.user, response };
  };

  const providerSignInUrl = (provider: string, redirectTo: string): string =>
    `${baseUrl}/auth/oauth/${encodeURIComponent(provider)}/authorize?redirectTo=${encodeURIComponent(redirectTo)}`;

  const exchangeProviderCode = async (code: string): Promise<ApiResult<LoginOutcome>> => {
    const { data, error, response } = await client.POST('/auth/oauth/exchange', { body: { code } });
    if (data === undefined) return failure(error, response);
    if ('mfaRequired' in data) return { ok: true, value: data, response };
    setTokens({ accessToken: data.accessToken, refreshToken: data.refreshToken });
    keepDeviceToken(data.deviceToken);
    return { ok: true, value: { mfaRequired: false, user: data.user }, response };
  };

  const logout = async (): Promise<ApiResult<null>> => {
    const refreshToken = tokens?.refreshToken;
    if (refreshToken === undefined) throw new Error('Not signed in: there is no refresh token to revoke');
    const { error, response } = await client.POST('/auth/logout', { body: { refreshToken } });
    if (!response.ok) return failure(error, response);
    setTokens(undefined);
    return { ok: true, value: null, response };
  };

  // openapi-fetch's methods are closures over the client, not `this`: spreading them keeps them working.
  return {
    ...client,
    get tokens() {
      return tokens;
    },
    get deviceToken() {
      return deviceToken;
    },
    setTokens,
    login,
    completeLogin,
    stepUp,
    signInWithPasskey,
    providerSignInUrl,
    exchangeProviderCode,
    logout,
  };
}

function failure(error: unknown, response: Response): ApiResult<never> {
  return { ok: false, error: errorOf(error, response), response, retryAfterSeconds: retryAfterSeconds(response) };
}

function errorOf(error: unknown, response: Response): ApiError {
  if (isErrorBody(error)) return error.error;
  // Not this API's error shape (a proxy's or load balancer's page): an internal failure for the caller.
  const type: ApiError['type'] = 'InternalError';
  const code: ErrorCode = 'INTERNAL';
  return {
    type,
    code,
    message: `Unexpected ${response.status} response`,
    statusCode: response.status,
    requestId: response.headers.get('x-request-id') ?? '',
  };
}
