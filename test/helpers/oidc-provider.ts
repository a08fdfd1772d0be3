import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import Provider from 'oidc-provider';

/** A user of the test identity provider: the claims it asserts about them. */
export interface ProviderAccount {
  readonly email?: string;
  readonly email_verified?: boolean;
  readonly name?: string;
}

export interface TestIdentityProvider {
  /** `http://127.0.0.1:<port>`: the issuer our API discovers. */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** The provider's users by `sub`; a test adds the ones it signs in with. */
  readonly accounts: Map<string, ProviderAccount>;
  /**
   * From now on, the ID token of each token response is rewritten: `claims` edits its payload and
   * it is signed again with the provider's own key, or with a key its JWKS does not publish
   * (`signer: 'stranger'`). A provider gone wrong, or someone answering in its place; `undefined`
   * stops it.
   */
  rewriteIdTokens(rewrite: IdTokenRewrite | undefined): void;
  /** Stops answering (connections refused from now on); idempotent. */
  stop(): Promise<void>;
}

export interface IdTokenRewrite {
  readonly claims?: (claims: JWTPayload) => JWTPayload;
  readonly signer?: 'own' | 'stranger';
}

const KEY_ID = 'test-provider-key';

/**
 * A real OpenID Provider (the `oidc-provider` package, a certified implementation) on a local
 * port, with one confidential client whose redirect URIs are `redirectUris`. Its users are
 * `accounts`; sign-in and consent go through its development interactions, driven over HTTP by
 * {@link signInAtProvider}. ID tokens are signed with its own keys, so our API verifies them
 * against its JWKS as it would Google's.
 *
 * @example
 * ```ts
 * const idp = await startOidcProvider({ redirectUris: ['http://api.test/auth/oauth/idp/callback'] });
 * idp.accounts.set('alice', { email: 'alice@example.com', email_verified: true });
 * ```
 */
export async function startOidcProvider(options: {
  readonly redirectUris: readonly string[];
  readonly clientId?: string;
  /** More clients with the same secret and redirect URIs (another application at the same provider). */
  readonly otherClientIds?: readonly string[];
  /** A port of its own choosing (a provider back on the port of one that stopped); any free one by default. */
  readonly port?: number;
  readonly clientSecret?: string;
}): Promise<TestIdentityProvider> {
  const accounts = new Map<string, ProviderAccount>();
  // Its signing key is ours to know, so a test can sign a token as the provider would.
  const own = await generateKeyPair('RS256', { extractable: true });
  const stranger = await generateKeyPair('RS256');
  const rewriting: { current?: IdTokenRewrite } = {};
  const clientId = options.clientId ?? 'our-api';
  const clientSecret = options.clientSecret ?? randomBytes(24).toString('base64url');
  // The issuer names the port, so the provider is built once the server listens.
  const routing: { handler?: (request: IncomingMessage, response: ServerResponse) => void } = {};
  const server: Server = createServer((request, response) => {
    if (routing.handler === undefined) {
      response.statusCode = 503;
      response.end();
      return;
    }
    routing.handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  // Its start-up warnings (in-memory storage, development keys and interactions) are what a test
  // provider is; they are not the test's output.
  const warn = console.warn;
  console.warn = () => {};
  let provider: Provider;
  try {
    provider = new Provider(issuer, {
      clients: [clientId, ...(options.otherClientIds ?? [])].map((id) => ({
        client_id: id,
        client_secret: clientSecret,
        redirect_uris: [...options.redirectUris],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_post',
      })),
      findAccount: (_context: unknown, id: string) => {
        const account = accounts.get(id);
        if (account === undefined) return undefined;
        return { accountId: id, claims: () => ({ sub: id, ...account }) };
      },
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
      cookies: { keys: [randomBytes(24).toString('base64url')] },
      features: { devInteractions: { enabled: true } },
      jwks: { keys: [{ ...(await exportJWK(own.privateKey)), kid: KEY_ID, use: 'sig', alg: 'RS256' }] },
      ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 },
    });
  } finally {
    console.warn = warn;
  }
  // Errors the provider answers with (a 500 to us) are logged by it; the test sees the answer.
  provider.on('server_error', () => {});
  provider.use(async (context, next) => {
    await next();
    const rewrite = rewriting.current;
    const body = context.body as { id_token?: unknown } | undefined;
    if (rewrite === undefined || context.path !== '/token' || typeof body?.id_token !== 'string') return;
    const claims = (rewrite.claims ?? ((same) => same))(decodeJwt(body.id_token));
    body.id_token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: KEY_ID, typ: 'JWT' })
      .sign(rewrite.signer === 'stranger' ? stranger.privateKey : own.privateKey);
  });
  routing.handler = provider.callback();
  let stopped: Promise<void> | undefined;
  return {
    issuer,
    clientId,
    clientSecret,
    accounts,
    rewriteIdTokens: (rewrite) => {
      rewriting.current = rewrite;
    },
    stop: () => {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}

/**
 * A browser at the identity provider: its own cookie jar, redirects followed by hand.
 * Signs `accountId` in and consents, from the provider's authorization URL until the provider
 * redirects back to the client. @returns that redirect (our API's callback URL with code and state).
 */
export async function signInAtProvider(
  authorizationUrl: string,
  accountId: string,
  options: { readonly cancel?: boolean } = {},
): Promise<URL> {
  const jar = new Map<string, string>();
  const providerOrigin = new URL(authorizationUrl).origin;
  const send = async (url: string, form?: Record<string, string>) => {
    const response = await fetch(url, {
      method: form === undefined ? 'GET' : 'POST',
      redirect: 'manual',
      headers: {
        cookie: [...jar].map(([name, value]) => `${name}=${value}`).join('; '),
        ...(form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
      },
      ...(form === undefined ? {} : { body: new URLSearchParams(form).toString() }),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const index = pair.indexOf('=');
      const name = pair.slice(0, index).trim();
      const value = pair.slice(index + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    return response;
  };
  let url = authorizationUrl;
  for (let step = 0; step < 20; step++) {
    const response = await send(url);
    const location = response.headers.get('location');
    if (location !== null) {
      const next = new URL(location, url);
      if (next.origin !== providerOrigin) return next;
      url = next.href;
      continue;
    }
    const page = await response.text();
    if (response.status !== 200) throw new Error(`The provider answered ${response.status}: ${page.slice(0, 500)}`);
    if (options.cancel === true) {
      // The user cancels at the provider (its abort link): the provider answers access_denied.
      url = new URL(`${new URL(url).pathname}/abort`, url).href;
      continue;
    }
    const prompt = /name="prompt" value="(\w+)"/.exec(page)?.[1];
    const form: Record<string, string> =
      prompt === 'login' ? { prompt, login: accountId, password: 'any' } : { prompt: prompt ?? 'consent' };
    const submitted = await send(url, form);
    const resumed = submitted.headers.get('location');
    if (resumed === null) throw new Error(`The provider did not accept the ${prompt ?? 'consent'} step`);
    url = new URL(resumed, url).href;
  }
  throw new Error('The provider never redirected back');
}
