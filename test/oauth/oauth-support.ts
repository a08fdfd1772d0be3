import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { App } from '../../src/app.ts';
import { signInAtProvider, type TestIdentityProvider } from '../helpers/oidc-provider.ts';
import { postJson } from '../helpers/http.ts';

/** Our API's public URL in these tests (never listened on: requests are injected). */
export const API_URL = 'http://api.test';
/** The client application: the allowed origin of `redirectTo`. */
export const APP_URL = 'http://app.test';
export const REDIRECT_TO = `${APP_URL}/signed-in`;

/** The callback our API registers at a provider with this id. */
export function callbackOf(id: string): string {
  return `${API_URL}/auth/oauth/${id}/callback`;
}

/** The environment configuring `providers` (id → running provider) for the test app. */
export function oauthEnv(
  providers: Readonly<Record<string, Pick<TestIdentityProvider, 'issuer' | 'clientId' | 'clientSecret'>>>,
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    OIDC_PROVIDERS: Object.keys(providers).join(','),
    API_URL,
    APP_URL,
    OIDC_HTTP_TIMEOUT_MS: '2000',
  };
  for (const [id, provider] of Object.entries(providers)) {
    const prefix = `OIDC_${id.toUpperCase()}_`;
    env[`${prefix}ISSUER`] = provider.issuer;
    env[`${prefix}CLIENT_ID`] = provider.clientId;
    env[`${prefix}CLIENT_SECRET`] = provider.clientSecret;
  }
  return { ...env, ...extra };
}

/** A browser as our API sees it: the flow-binding cookie it was given, if any. */
export class ApiBrowser {
  cookie: string | undefined;

  headers(): Record<string, string> {
    return this.cookie === undefined ? {} : { cookie: `oauth_browser=${this.cookie}` };
  }

  /** Follows a URL of our API in this browser, keeping the cookie it sets. */
  async get(app: App, url: string): Promise<LightMyRequestResponse> {
    const { pathname, search } = new URL(url, API_URL);
    const response = await app.inject({ method: 'GET', url: pathname + search, headers: this.headers() });
    const set = response.cookies.find((cookie) => cookie.name === 'oauth_browser');
    if (set !== undefined) this.cookie = set.value;
    return response;
  }
}

/** `/auth/oauth/<provider>/authorize?redirectTo=…` in `browser`. */
export async function authorize(
  app: App,
  browser: ApiBrowser,
  provider = 'idp',
  redirectTo = REDIRECT_TO,
): Promise<LightMyRequestResponse> {
  return browser.get(app, `/auth/oauth/${provider}/authorize?redirectTo=${encodeURIComponent(redirectTo)}`);
}

/** Where the browser was sent, and the fragment's parameters. */
export function landing(response: LightMyRequestResponse): { url: URL; fragment: URLSearchParams } {
  expect(response.statusCode, response.body).toBe(302);
  const url = new URL(String(response.headers.location));
  return { url, fragment: new URLSearchParams(url.hash.slice(1)) };
}

/**
 * The whole browser leg: authorize at our API, sign `accountId` in at the provider (and consent),
 * follow the provider's redirect to our callback. @returns our callback's answer.
 */
export async function signInThrough(
  app: App,
  accountId: string,
  options: { browser?: ApiBrowser; provider?: string } = {},
): Promise<LightMyRequestResponse> {
  const browser = options.browser ?? new ApiBrowser();
  const started = await authorize(app, browser, options.provider ?? 'idp');
  expect(started.statusCode, started.body).toBe(302);
  const back = await signInAtProvider(String(started.headers.location), accountId);
  return browser.get(app, back.href);
}

/** {@link signInThrough}, expecting a code, then POST /auth/oauth/exchange with it. */
export async function signInAndExchange(
  app: App,
  accountId: string,
  provider = 'idp',
): Promise<LightMyRequestResponse> {
  const { fragment } = landing(await signInThrough(app, accountId, { provider }));
  const code = fragment.get('code');
  expect(code, fragment.toString()).not.toBeNull();
  return postJson(app, '/auth/oauth/exchange', { code });
}
