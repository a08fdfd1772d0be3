import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AuthenticationError, AuthorizationError } from '../platform/errors/index.ts';
import type { UserRole } from '../users/users.repository.ts';
import type { RequestContext } from '../audit/service.ts';
import type { AuthenticatedUser, Principal } from './service.ts';
import { clientAddress } from '../platform/http/client-address.ts';
import type { Assurance } from '../keys/tokens.ts';
import type { PublicUser } from '../users/service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler: verifies the bearer access token and sets `request.principal`. */
    authenticate: (request: FastifyRequest) => Promise<void>;
    /** preHandler factory: 403 unless the authenticated principal has one of `roles`. */
    requireRole: (...roles: UserRole[]) => (request: FastifyRequest) => Promise<void>;
    /** preHandler: 403 MFA_REQUIRED when the caller has a second factor and the session is not `aal2`. */
    requireStepUp: (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    /** Set by `app.authenticate`; read it through {@link requirePrincipal} in handlers. */
    principal: Principal | null;
    /**
     * The user row authentication read to check the principal (as the database held it then):
     * handlers that answer with the caller's own user reuse it instead of querying again.
     */
    authenticatedUser: PublicUser | null;
    /** The access token's session (`sid`), once authenticated. */
    sessionId: string | null;
    /** What the access token's session proved at sign-in (`aal`, `amr`), once authenticated. */
    assurance: Assurance | null;
  }
}

export interface AuthPluginOptions {
  /** Who a verified token's subject is now, if its session is live (`AuthService.authenticate`). */
  readonly authenticator: { authenticate(userId: string, sid: string): Promise<AuthenticatedUser> };
  /** MFA_REQUIRED_ROLES: these roles must enrol a second factor before anything else works. */
  readonly mfaRequiredRoles?: readonly UserRole[];
}

/** What a user of a role that must enrol may still reach (api.md "Second factor"). */
const ENROLMENT_ROUTES = /^\/auth\/(me|mfa|mfa\/.*|passkeys|passkeys\/.*)$/;

/**
 * Authentication of requests: the bearer access token is verified (`app.accessTokens`, the jwt
 * plugin) and its subject resolved to a principal with the role the database holds now.
 */
export default fp<AuthPluginOptions>(
  async (app, opts) => {
    app.decorateRequest('principal', null);
    app.decorateRequest('authenticatedUser', null);
    app.decorateRequest('sessionId', null);
    app.decorateRequest('assurance', null);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const claims = await app.accessTokens.verify(bearerToken(request));
      const { principal, user } = await opts.authenticator.authenticate(claims.sub, claims.sid);
      request.principal = principal;
      request.authenticatedUser = user;
      request.sessionId = claims.sid;
      request.assurance = { aal: claims.aal, amr: claims.amr };
      if (
        !principal.mfaEnabled &&
        opts.mfaRequiredRoles?.includes(principal.role) === true &&
        !ENROLMENT_ROUTES.test(request.routeOptions.url ?? '')
      ) {
        throw new AuthorizationError(
          `Your role (${principal.role}) must enrol a second factor first: POST /auth/mfa/totp or a passkey (POST /auth/passkeys/registration/options)`,
          'MFA_REQUIRED',
        );
      }
    });
    app.decorate('requireStepUp', async (request: FastifyRequest) => {
      if (requirePrincipal(request).mfaEnabled && request.assurance?.aal !== 'aal2') {
        throw new AuthorizationError(
          'This action needs a session verified with your second factor: POST /auth/mfa/step-up',
          'MFA_REQUIRED',
        );
      }
    });
    app.decorate('requireRole', (...roles: UserRole[]) => async (request: FastifyRequest) => {
      if (!roles.includes(requirePrincipal(request).role)) throw new AuthorizationError();
    });
  },
  { name: 'auth', dependencies: ['jwt'] },
);

/**
 * The principal of a request that went through `app.authenticate`.
 *
 * @throws {AuthenticationError} when the route did not authenticate (a wiring mistake answers 401, never 500).
 */
export function requirePrincipal(request: FastifyRequest): Principal {
  if (request.principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
  return request.principal;
}

/** The caller's own user as authentication read it (see {@link requirePrincipal}). */
export function requireAuthenticatedUser(request: FastifyRequest): PublicUser {
  if (request.authenticatedUser === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
  return request.authenticatedUser;
}

/** The caller's session (the access token's `sid`) of a request that went through `app.authenticate`. */
export function requireSessionId(request: FastifyRequest): string {
  if (request.sessionId === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
  return request.sessionId;
}

/**
 * Where a request came from and who made it, for the audit log: the client address (as
 * `trustProxy` resolves it, when it is an IP address; else the socket's), the user agent, and the caller and their session once authenticated.
 */
export function requestContext(request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent'];
  return {
    ipAddress: clientAddress(request),
    userAgent: typeof userAgent === 'string' && userAgent !== '' ? userAgent : null,
    sessionId: request.sessionId,
    actorId: request.principal?.userId ?? null,
  };
}

function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  if (match?.[1] === undefined) throw new AuthenticationError('Missing or malformed bearer token', 'INVALID_TOKEN');
  return match[1];
}
