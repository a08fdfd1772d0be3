import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AuthConfig } from '../platform/config/auth.ts';
import { AuthenticationError, ValidationError } from '../platform/errors/index.ts';
import { noStore } from '../platform/http/http-edges.ts';
import type { AuthService } from '../auth/service.ts';
import type { SigningKeyStore } from './signing-keys.ts';
import { errors } from '../platform/http/schemas.ts';

export interface KeyRoutesOptions {
  readonly config: AuthConfig;
  readonly keys: SigningKeyStore | undefined;
  readonly auth: Pick<AuthService, 'authenticate'>;
  /** Told of each introspection's outcome (metrics count them). */
  readonly onIntrospection?: (outcome: 'active' | 'inactive' | 'unauthorized') => void;
}

const Jwk = Type.Object(
  {
    kid: Type.String(),
    alg: Type.Union([Type.Literal('EdDSA'), Type.Literal('ES256')]),
    use: Type.Literal('sig'),
    kty: Type.String(),
    crv: Type.String(),
    x: Type.String(),
    y: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const Introspection = Type.Object(
  {
    active: Type.Boolean(),
    sub: Type.Optional(Type.String({ format: 'uuid' })),
    sid: Type.Optional(Type.String({ format: 'uuid', description: 'The session the token belongs to' })),
    exp: Type.Optional(Type.Integer()),
    iat: Type.Optional(Type.Integer()),
    iss: Type.Optional(Type.String()),
    aud: Type.Optional(Type.String()),
    aal: Type.Optional(Type.Union([Type.Literal('aal1'), Type.Literal('aal2')])),
    amr: Type.Optional(Type.Array(Type.String())),
    token_type: Type.Optional(Type.Literal('Bearer')),
  },
  { additionalProperties: false },
);

/** The longest access token worth verifying (a real one is under 1 KB). */
const TOKEN_MAX = 4096;

/**
 * What other services verify tokens with: the public keys (`GET /.well-known/jwks.json`) and,
 * for those that need a session's end to count at once, RFC 7662 introspection (only when
 * INTROSPECTION_TOKEN is set; the route does not exist otherwise).
 */
const keyRoutes: FastifyPluginAsyncTypebox<KeyRoutesOptions> = async (app, opts) => {
  const { config, keys } = opts;

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'jwks',
        tags: ['keys'],
        summary: 'The public keys that verify access tokens (JWKS)',
        description:
          'Every key that may have signed a live access token, and the next key once a rotation published it. ' +
          'Cache it for at most its max-age; fetch it again when a token names an unknown kid.',
        response: { 200: Type.Object({ keys: Type.Array(Jwk) }, { additionalProperties: false }) },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', `public, max-age=${config.jwksMaxAgeSeconds}`);
      return keys === undefined ? { keys: [] } : keys.jwks();
    },
  );

  if (config.introspectionTokens.length === 0) return;
  const accepted = config.introspectionTokens.map(digest);

  // RFC 7662 clients send a form; JSON is the API's own convention. Both are read here.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    const params = new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8'));
    const tokens = params.getAll('token');
    if (tokens.length > 1) {
      done(new ValidationError('token appears more than once', { field: 'token' }), undefined);
      return;
    }
    done(null, Object.fromEntries(params));
  });

  app.post(
    '/auth/introspect',
    {
      onRequest: noStore,
      preHandler: async (request) => {
        if (!presentsIntrospectionToken(request, accepted)) {
          opts.onIntrospection?.('unauthorized');
          throw new AuthenticationError('Missing or wrong introspection token', 'INVALID_TOKEN');
        }
      },
      schema: {
        operationId: 'introspect',
        tags: ['keys'],
        summary: 'Whether an access token is active now (RFC 7662)',
        description:
          'Authenticated with `Authorization: Bearer <INTROSPECTION_TOKEN>`. Answers `{active: false}` for an ' +
          'expired, forged or malformed token and for one whose session ended or whose user was disabled.',
        security: [{ introspectionToken: [] }],
        body: Type.Object(
          {
            token: Type.String({ minLength: 1, maxLength: TOKEN_MAX }),
            token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
          },
          { additionalProperties: false, examples: [{ token: 'an access token' }] },
        ),
        response: { 200: Introspection, ...errors(400, 401, 413, 415, 503) },
      },
    },
    async (request) => {
      let claims;
      try {
        claims = await app.accessTokens.verify(request.body.token);
        await opts.auth.authenticate(claims.sub, claims.sid);
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        opts.onIntrospection?.('inactive');
        return { active: false };
      }
      opts.onIntrospection?.('active');
      const { sub, sid, exp, iat, aal, amr } = claims;
      return {
        active: true,
        sub,
        sid,
        exp,
        iat,
        iss: config.jwtIssuer,
        aud: config.jwtAudience,
        aal,
        amr: [...amr],
        token_type: 'Bearer' as const,
      };
    },
  );
};

export default keyRoutes;

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Compared as SHA-256 digests in constant time, so neither the secret's length nor its prefix leaks. */
function presentsIntrospectionToken(request: FastifyRequest, accepted: readonly Buffer[]): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '');
  if (match?.[1] === undefined) return false;
  const presented = digest(match[1]);
  let found = false;
  for (const secret of accepted) found = timingSafeEqual(presented, secret) || found;
  return found;
}
