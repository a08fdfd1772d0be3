import { createHash } from 'node:crypto';
import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { AuthConfig } from '../config.ts';
import { AuthenticationError, AuthorizationError } from '../errors/index.ts';
import type { UserRole } from '../repositories/users.ts';
import {
  AuthService,
  type AuthenticatedUser,
  type AuthEvents,
  type Principal,
  type PublicUser,
} from '../services/auth.ts';
import { AuditLog, type RequestContext } from '../services/audit-log.ts';
import type { PrincipalCache } from '../services/principal-cache.ts';
import { SessionService, type LiveSession, type SessionEvents } from '../services/sessions.ts';
import { UserAdministration, type AdminEvents } from '../services/user-admin.ts';
import type { PasswordHasher } from '../services/passwords.ts';
import { keyRing, type AccessTokenClaims, type AccessTokenSigner, type KeyRing } from '../services/tokens.ts';
import type { ReadDatabase } from '../db/replicas.ts';

declare module 'fastify' {
  interface FastifyInstance {
    auth: AuthService;
    sessions: SessionService;
    audit: AuditLog;
    userAdmin: UserAdministration;
    /** preHandler: verifies the bearer access token and sets `request.principal`. */
    authenticate: (request: FastifyRequest) => Promise<void>;
    /** preHandler factory: 403 unless the authenticated principal has one of `roles`. */
    requireRole: (...roles: UserRole[]) => (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal | null;
    /**
     * The user row authentication read to check the principal (as the database held it then):
     * handlers that answer with the caller's own user reuse it instead of querying again.
     */
    authenticatedUser: PublicUser | null;
    /** The access token's session (`sid`), once authenticated. */
    sessionId: string | null;
  }
}

export interface AuthPluginOptions {
  readonly config: AuthConfig;
  /** At least 32 bytes; resolved by the caller (configured, or generated under DATA_DIR). */
  readonly jwtSecret: string;
  /** Where reads that may be slightly stale go (a replica when one is healthy); the primary otherwise. */
  readonly readDb?: ReadDatabase | undefined;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly events?: AuthEvents;
  readonly principals?: PrincipalCache<AuthenticatedUser> | undefined;
  /** Live sessions as last read, kept fresh like `principals`; without it each request reads its session. */
  readonly liveSessions?: PrincipalCache<LiveSession> | undefined;
  readonly sessionEvents?: SessionEvents | undefined;
  readonly adminEvents?: AdminEvents | undefined;
}

const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'iss', 'aud', 'typ', 'sid'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Access tokens through @fastify/jwt with verification pinned: HS256 only, `exp`/`iat`/`sub`/
 * `iss`/`aud`/`typ` required, issuer and audience checked. Every verification failure —
 * whatever fast-jwt calls it — is a 401 of the error family, never a 500.
 *
 * Keys rotate as shared configuration: tokens are signed with JWT_SECRET and name it in their
 * `kid` header; a token is verified with the key its `kid` names, JWT_SECRET or one of
 * JWT_PREVIOUS_SECRETS (the overlap), and an unknown `kid` is a 401. A token without `kid`
 * (signed before key ids existed) is verified with JWT_SECRET only.
 */
export default fp<AuthPluginOptions>(
  async (app, opts) => {
    const previousSecrets = opts.config.jwtPreviousSecrets;
    if ([opts.jwtSecret, ...previousSecrets].some((secret) => Buffer.byteLength(secret) < 32)) {
      throw new Error('Every JWT secret must be at least 32 bytes');
    }
    const ring = keyRing(opts.jwtSecret, previousSecrets);
    await app.register(fastifyJwt, {
      secret: ring.signing.secret,
      sign: {
        algorithm: 'HS256',
        kid: ring.signing.kid,
        iss: opts.config.jwtIssuer,
        aud: opts.config.jwtAudience,
        // @fastify/jwt reads a number as seconds (jsonwebtoken style) and converts it for fast-jwt.
        expiresIn: opts.config.accessTokenTtlSeconds,
      },
      verify: {
        algorithms: ['HS256'],
        allowedIss: opts.config.jwtIssuer,
        allowedAud: opts.config.jwtAudience,
        requiredClaims: REQUIRED_CLAIMS,
      },
    });

    const signer: AccessTokenSigner = {
      sign: (claims: AccessTokenClaims) => app.jwt.sign({ ...claims }),
      expiresIn: opts.config.accessTokenTtlSeconds,
    };
    const audit = new AuditLog(app.db);
    const sessions = new SessionService({
      db: app.db,
      clock: opts.clock,
      audit,
      cache: opts.liveSessions,
      events: opts.sessionEvents,
    });
    const auth = new AuthService({
      db: app.db,
      audit,
      sessions,
      refreshReuseIntervalSeconds: opts.config.refreshReuseIntervalSeconds,
      // Its own key, derived: the JWT secret itself never keys anything but signatures.
      refreshSuccessorKey: createHash('sha256').update('refresh-successor\0').update(opts.jwtSecret).digest('hex'),
      hasher: opts.hasher,
      signer,
      clock: opts.clock,
      refreshTokenTtlSeconds: opts.config.refreshTokenTtlSeconds,
      ...(opts.events === undefined ? {} : { events: opts.events }),
      ...(opts.readDb === undefined ? {} : { staleReads: opts.readDb }),
      ...(opts.principals === undefined ? {} : { principals: opts.principals }),
    });

    app.decorate('auth', auth);
    app.decorate('sessions', sessions);
    app.decorate('audit', audit);
    app.decorate(
      'userAdmin',
      new UserAdministration({
        db: app.db,
        hasher: opts.hasher,
        clock: opts.clock,
        audit,
        sessions,
        principals: opts.principals,
        events: opts.adminEvents,
      }),
    );
    app.decorateRequest('principal', null);
    app.decorateRequest('authenticatedUser', null);
    app.decorateRequest('sessionId', null);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const claims = verifyAccessToken(bearerToken(request), (token) => {
        const key = verificationKey(ring, token);
        // The signing key's verifier is built once; a previous key's only while tokens signed with it live.
        return key === ring.signing.secret ? app.jwt.verify(token) : app.jwt.verify(token, { key });
      });
      const { principal, user } = await auth.principalOf(claims.sub, claims.sid);
      request.principal = principal;
      request.authenticatedUser = user;
      request.sessionId = claims.sid;
    });
    app.decorate('requireRole', (...roles: UserRole[]) => async (request: FastifyRequest) => {
      if (request.principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      if (!roles.includes(request.principal.role)) throw new AuthorizationError();
    });
  },
  { name: 'auth', dependencies: ['database'] },
);

function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  if (match?.[1] === undefined) throw new AuthenticationError('Missing or malformed bearer token', 'INVALID_TOKEN');
  return match[1];
}

/**
 * The key a token's `kid` header names. The header is read before the signature is checked only
 * to pick the key; the signature then covers it. No `kid`: the signing key (tokens signed before
 * key ids). A `kid` naming no accepted key: 401.
 */
function verificationKey(ring: KeyRing, token: string): string {
  const kid = headerOf(token)?.kid;
  if (kid === undefined) return ring.signing.secret;
  const key = typeof kid === 'string' ? ring.verifying.get(kid) : undefined;
  if (key === undefined) throw new AuthenticationError('Access token signed with an unknown key', 'INVALID_TOKEN');
  return key;
}

/** The decoded JOSE header, or undefined when it is not a JSON object (verification then rejects the token). */
function headerOf(token: string): { kid?: unknown } | undefined {
  const encoded = token.split('.', 1)[0] ?? '';
  try {
    const header: unknown = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) ? header : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where a request came from and who made it, for the audit log: the client address (as
 * `trustProxy` resolves it), the user agent, and the caller and their session once authenticated.
 */
export function requestContext(request: FastifyRequest): RequestContext {
  const userAgent = request.headers['user-agent'];
  return {
    ipAddress: request.ip,
    userAgent: typeof userAgent === 'string' && userAgent !== '' ? userAgent : null,
    sessionId: request.sessionId,
    actorId: request.principal?.userId ?? null,
  };
}

function verifyAccessToken(token: string, verify: (token: string) => unknown): { sub: string; sid: string } {
  let payload: unknown;
  try {
    payload = verify(token);
  } catch (error) {
    if (error instanceof AuthenticationError) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === 'FAST_JWT_EXPIRED')
      throw new AuthenticationError('Access token has expired', 'TOKEN_EXPIRED', { cause: error });
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN', { cause: error });
  }
  const claims = payload as { typ?: unknown; sub?: unknown; sid?: unknown };
  if (
    claims.typ !== 'access' ||
    typeof claims.sub !== 'string' ||
    !UUID.test(claims.sub) ||
    typeof claims.sid !== 'string' ||
    !UUID.test(claims.sid)
  ) {
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN');
  }
  return { sub: claims.sub.toLowerCase(), sid: claims.sid.toLowerCase() };
}
