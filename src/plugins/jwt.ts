import fastifyJwt from '@fastify/jwt';
import fp from 'fastify-plugin';
import type { AuthConfig } from '../config.ts';
import { AuthenticationError } from '../errors/index.ts';
import { keyRing, type AccessTokenClaims, type AccessTokenSigner, type KeyRing } from '../services/tokens.ts';

/** Signs access tokens and verifies them back to their subject. */
export interface AccessTokens extends AccessTokenSigner {
  /**
   * The subject and session of a valid access token.
   *
   * @throws {AuthenticationError} `TOKEN_EXPIRED` or `INVALID_TOKEN` for every other failure.
   */
  verify(token: string): { sub: string; sid: string };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The access-token codec: the auth service signs with it, the auth plugin verifies with it. */
    accessTokens: AccessTokens;
  }
}

export interface JwtPluginOptions {
  readonly config: AuthConfig;
  /** At least 32 bytes; resolved by the caller (configured, or generated under DATA_DIR). */
  readonly jwtSecret: string;
}

const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'iss', 'aud', 'typ', 'sid'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Access tokens through @fastify/jwt with verification pinned: HS256 only, `exp`/`iat`/`sub`/
 * `iss`/`aud`/`typ`/`sid` required, issuer and audience checked. Every verification failure —
 * whatever fast-jwt calls it — is a 401 of the error family, never a 500.
 *
 * Keys rotate as shared configuration: tokens are signed with JWT_SECRET and name it in their
 * `kid` header; a token is verified with the key its `kid` names, JWT_SECRET or one of
 * JWT_PREVIOUS_SECRETS (the overlap), and an unknown `kid` is a 401. A token without `kid`
 * (signed before key ids existed) is verified with JWT_SECRET only.
 */
export default fp<JwtPluginOptions>(
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

    app.decorate('accessTokens', {
      sign: (claims: AccessTokenClaims) => app.jwt.sign({ ...claims }),
      expiresIn: opts.config.accessTokenTtlSeconds,
      verify: (token: string) =>
        verifyAccessToken(token, (presented) => {
          const key = verificationKey(ring, presented);
          // The signing key's verifier is built once; a previous key's only while tokens signed with it live.
          return key === ring.signing.secret ? app.jwt.verify(presented) : app.jwt.verify(presented, { key });
        }),
    } satisfies AccessTokens);
  },
  { name: 'jwt' },
);

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
