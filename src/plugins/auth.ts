import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { AuthConfig } from '../config.ts';
import { AuthenticationError, AuthorizationError } from '../errors/index.ts';
import type { UserRole } from '../repositories/users.ts';
import { AuthService, type AuthEvents, type Principal } from '../services/auth.ts';
import type { PasswordHasher } from '../services/passwords.ts';
import type { AccessTokenClaims, AccessTokenSigner } from '../services/tokens.ts';

declare module 'fastify' {
  interface FastifyInstance {
    auth: AuthService;
    /** preHandler: verifies the bearer access token and sets `request.principal`. */
    authenticate: (request: FastifyRequest) => Promise<void>;
    /** preHandler factory: 403 unless the authenticated principal has one of `roles`. */
    requireRole: (...roles: UserRole[]) => (request: FastifyRequest) => Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export interface AuthPluginOptions {
  readonly config: AuthConfig;
  /** At least 32 bytes; resolved by the caller (configured, or generated under DATA_DIR). */
  readonly jwtSecret: string;
  readonly hasher: PasswordHasher;
  readonly clock: () => Date;
  readonly events?: AuthEvents;
}

const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'iss', 'aud', 'typ'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Access tokens through @fastify/jwt with verification pinned: HS256 only, `exp`/`iat`/`sub`/
 * `iss`/`aud`/`typ` required, issuer and audience checked. Every verification failure —
 * whatever fast-jwt calls it — is a 401 of the error family, never a 500.
 */
export default fp<AuthPluginOptions>(
  async (app, opts) => {
    if (Buffer.byteLength(opts.jwtSecret) < 32) throw new Error('The JWT secret must be at least 32 bytes');
    await app.register(fastifyJwt, {
      secret: opts.jwtSecret,
      sign: {
        algorithm: 'HS256',
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
    const auth = new AuthService({
      db: app.db,
      hasher: opts.hasher,
      signer,
      clock: opts.clock,
      refreshTokenTtlSeconds: opts.config.refreshTokenTtlSeconds,
      ...(opts.events === undefined ? {} : { events: opts.events }),
    });

    app.decorate('auth', auth);
    app.decorateRequest('principal', null);
    app.decorate('authenticate', async (request: FastifyRequest) => {
      const claims = verifyAccessToken(bearerToken(request), (token) => app.jwt.verify(token));
      request.principal = (await auth.principalOf(claims.sub)).principal;
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

function verifyAccessToken(token: string, verify: (token: string) => unknown): { sub: string } {
  let payload: unknown;
  try {
    payload = verify(token);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'FAST_JWT_EXPIRED') throw new AuthenticationError('Access token has expired', 'TOKEN_EXPIRED', { cause: error });
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN', { cause: error });
  }
  const claims = payload as { typ?: unknown; sub?: unknown };
  if (claims.typ !== 'access' || typeof claims.sub !== 'string' || !UUID.test(claims.sub)) {
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN');
  }
  return { sub: claims.sub };
}
