import cookie from '@fastify/cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ValidationError } from '../platform/errors/index.ts';
import { requestContext, requirePrincipal, requireSessionId } from '../auth/plugin.ts';
import { noStore } from '../platform/http/http-edges.ts';
import { flood } from '../platform/limits/floods.ts';
import { canonicalId, errors, Id, LoginOrChallengeSchema } from '../platform/http/schemas.ts';
import type { DeviceTokens } from '../auth/device-tokens.ts';
import type { IdentityService } from './identities.ts';
import { FLOW_TTL_SECONDS, type OAuthService } from './service.ts';

export interface OAuthRoutesOptions {
  readonly oauth: OAuthService;
  readonly identities: IdentityService;
  readonly devices: DeviceTokens;
  /** The binding cookie is `Secure` (production). */
  readonly secureCookies: boolean;
}

/** The cookie binding a flow to the browser that started it (only its hash is stored). */
const BROWSER_COOKIE = 'oauth_browser';
const BROWSER_KEY = /^[A-Za-z0-9_-]{43}$/;

const ProviderParam = Type.Object({ provider: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$' }) });
const RedirectTo = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: "Where the browser goes back to: an absolute URL on APP_URL's origin or OAUTH_REDIRECT_ALLOWLIST's",
});
const Timestamp = Type.Unsafe<Date>({ type: 'string', format: 'date-time' });
const Identity = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    provider: Type.String(),
    email: Type.Union([Type.String(), Type.Null()], { description: 'As the provider asserted it' }),
    createdAt: Timestamp,
  },
  { additionalProperties: false },
);
const Redirect = Type.Null({ description: 'Redirect: see the location header' });

/**
 * Sign-in through other identity providers (api.md "Sign-in through other identity providers"):
 * the providers offered, the browser's authorize and callback legs, the exchange of the callback's
 * one-time code for a session, and the signed-in caller's linked identities.
 */
const oauthRoutes: FastifyPluginAsyncTypebox<OAuthRoutesOptions> = async (app, opts) => {
  const { oauth, identities, devices } = opts;
  await app.register(cookie);
  app.addHook('onRequest', noStore);
  const limit = flood('oauth-ip');

  /** This browser's key: its binding cookie's value, or a new one (several tabs share one). */
  const browserKey = (request: FastifyRequest): string => {
    const existing = request.cookies[BROWSER_COOKIE];
    return existing !== undefined && BROWSER_KEY.test(existing) ? existing : oauth.newBrowserKey();
  };
  /** Sets (or renews) the binding cookie for the flow's lifetime, once a flow was started. */
  const bind = (reply: FastifyReply, key: string): void => {
    reply.setCookie(BROWSER_COOKIE, key, {
      path: '/auth/oauth',
      httpOnly: true,
      sameSite: 'lax',
      secure: opts.secureCookies,
      maxAge: FLOW_TTL_SECONDS,
    });
  };

  app.get(
    '/auth/providers',
    {
      schema: {
        operationId: 'listProviders',
        tags: ['oauth'],
        summary: 'The identity providers this API can sign in with',
        response: {
          200: Type.Object(
            {
              items: Type.Array(
                Type.Object({ id: Type.String(), name: Type.String() }, { additionalProperties: false }),
              ),
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async () => ({ items: oauth.providers() }),
  );

  app.get(
    '/auth/oauth/:provider/authorize',
    {
      preHandler: limit,
      schema: {
        operationId: 'oauthAuthorize',
        tags: ['oauth'],
        summary: 'Start a sign-in with a provider: 302 to the provider (open it in the browser, not with fetch)',
        description:
          'Stores the flow (state, nonce, PKCE S256; single use, 10 minutes) and binds it to this browser with an ' +
          'HttpOnly cookie. `link` is the ticket in the authorizeUrl of POST /auth/identities/{provider}/link.',
        params: ProviderParam,
        querystring: Type.Object({
          redirectTo: Type.Optional(RedirectTo),
          link: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
        }),
        response: { 302: Redirect, ...errors(400, 429, 503) },
      },
    },
    async (request, reply) => {
      const { provider } = request.params;
      const { redirectTo, link } = request.query;
      const key = browserKey(request);
      let location: string;
      if (link !== undefined) {
        location = await oauth.openLink(provider, link, key);
      } else if (redirectTo === undefined) {
        throw new ValidationError('redirectTo is required', { field: 'redirectTo' });
      } else {
        location = await oauth.startSignIn(provider, redirectTo, key);
      }
      bind(reply, key);
      return reply.redirect(location, 302);
    },
  );

  app.get(
    '/auth/oauth/:provider/callback',
    {
      preHandler: limit,
      schema: {
        operationId: 'oauthCallback',
        tags: ['oauth'],
        summary: "The provider's redirect back: 302 to redirectTo with #code=… (or #linked=…, #error=CODE)",
        description:
          'Not for clients to call. A state that is unknown, used, expired or from another browser is a 400 (there ' +
          'is nowhere safe to send the browser); anything after that ends at redirectTo with `#error=<CODE>`.',
        params: ProviderParam,
        querystring: Type.Object({}, { additionalProperties: true }),
        response: { 302: Redirect, ...errors(400, 429) },
      },
    },
    async (request, reply) => {
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      const { location } = await oauth.callback(
        request.params.provider,
        query,
        request.cookies[BROWSER_COOKIE],
        requestContext(request),
      );
      return reply.redirect(location, 302);
    },
  );

  app.post(
    '/auth/oauth/exchange',
    {
      preHandler: limit,
      schema: {
        operationId: 'oauthExchange',
        tags: ['oauth'],
        summary: "Trade the callback's one-time code (60 s) for the login body, or the MFA challenge",
        body: Type.Object({ code: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }),
        response: { 200: LoginOrChallengeSchema, ...errors(400, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const signedIn = await oauth.exchange(request.body.code, requestContext(request));
      return 'mfaRequired' in signedIn ? signedIn : { ...signedIn, deviceToken: devices.issue(signedIn.user.email) };
    },
  );

  app.post(
    '/auth/identities/:provider/link',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'identityLink',
        tags: ['oauth'],
        summary: "Start linking an identity at a provider to the caller's account",
        description:
          'Open `authorizeUrl` in the browser at once (single use; it opens within 60 s, then the flow has 10 minutes): the flow ends at redirectTo with ' +
          '`#linked=<provider>`, or `#error=IDENTITY_IN_USE` when the identity belongs to another account, ' +
          '`#error=INVALID_TOKEN` when the session that asked has ended, `#error=MFA_REQUIRED` when the account ' +
          'gained a second factor and that session is not aal2.',
        security: [{ bearerAuth: [] }],
        params: ProviderParam,
        body: Type.Object({ redirectTo: RedirectTo }, { additionalProperties: false }),
        response: {
          200: Type.Object({ authorizeUrl: Type.String() }, { additionalProperties: false }),
          ...errors(400, 401, 403, 413, 415, 429, 503),
        },
      },
    },
    async (request) => ({
      authorizeUrl: await oauth.startLink(
        requirePrincipal(request),
        requireSessionId(request),
        request.params.provider,
        request.body.redirectTo,
      ),
    }),
  );

  app.get(
    '/auth/identities',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'identityList',
        tags: ['oauth'],
        summary: "The caller's linked identities, oldest first",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ items: Type.Array(Identity) }, { additionalProperties: false }),
          ...errors(401, 503),
        },
      },
    },
    async (request) => ({ items: await identities.list(requirePrincipal(request).userId) }),
  );

  app.delete(
    '/auth/identities/:id',
    {
      preHandler: [app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'identityUnlink',
        tags: ['oauth'],
        summary: 'Unlink one of the caller’s identities (not the last way to sign in: 409 LAST_SIGN_IN_METHOD)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      await identities.unlink(
        requirePrincipal(request),
        requireSessionId(request),
        canonicalId(request.params.id),
        requestContext(request),
      );
      return reply.code(204).send(null);
    },
  );
};

export default oauthRoutes;
