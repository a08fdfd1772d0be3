import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AuthConfig } from '../config.ts';
import { AuthenticationError, RateLimitError, ServiceUnavailableError } from '../errors/index.ts';
import { requestContext } from '../plugins/auth.ts';
import { canonicalEmail } from '../services/credentials.ts';
import { Email, errors, Name, Password, RefreshToken, TokenPairSchema, UserEnvelope } from './schemas.ts';

export interface AuthRoutesOptions {
  readonly config: AuthConfig;
  readonly onRateLimited?: (route: string) => void;
}

/** Token responses must not be stored by browsers or proxies. */
async function noStore(_request: FastifyRequest, reply: FastifyReply) {
  reply.header('cache-control', 'no-store');
  reply.header('pragma', 'no-cache');
}

/** The contract's /auth endpoints: register, login, refresh, logout, me, password. */
const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, opts) => {
  const { config } = opts;
  // Checked by hand (createRateLimit) rather than with app.rateLimit(), which marks a request as
  // checked after its first limiter and silently skips the per-account one on login.
  const limiter = (name: string, max: number, key: (request: FastifyRequest) => string) => {
    const check = app.createRateLimit({
      max,
      timeWindow: config.rateLimitWindowMs,
      keyGenerator: (request) => `${name}:${key(request)}`,
    });
    return async (request: FastifyRequest) => {
      const result = await check(request).catch((error: unknown) => {
        // The shared store (Redis) failed: refuse rather than let attempts through uncounted.
        throw new ServiceUnavailableError('Service unavailable', 'RATE_LIMIT_UNAVAILABLE', { cause: error });
      });
      // isAllowed is true only for allow-listed keys; a counted request is refused once it exceeds max.
      if (!result.isAllowed && result.isExceeded) {
        opts.onRateLimited?.(name);
        throw new RateLimitError('Too many attempts; try again later', {
          retryAfterSeconds: Math.max(1, result.ttlInSeconds),
        });
      }
    };
  };
  const byIp = (request: FastifyRequest) => request.ip;
  const byAccount = (request: FastifyRequest) => {
    const email = (request.body as { email?: unknown } | undefined)?.email;
    if (typeof email !== 'string') return 'none';
    try {
      return canonicalEmail(email);
    } catch {
      return email.trim().toLowerCase();
    }
  };

  app.addHook('onRequest', noStore);
  // Routes that hash a password shed load before doing anything else (no body parsing, no rate
  // limit bookkeeping) when no hashing slot is free: under overload a refusal must cost little, or
  // refusals take the CPU the hashes need.
  const shedWhenHashingIsFull = async () => {
    app.auth.assertHashCapacity();
  };

  app.post(
    '/auth/register',
    {
      onRequest: shedWhenHashingIsFull,
      preHandler: limiter('register-ip', config.registerRateLimit, byIp),
      schema: {
        tags: ['auth'],
        summary: 'Create an account',
        body: Type.Object(
          { email: Email, password: Password, name: Type.String({ minLength: 1, maxLength: 1000 }) },
          { additionalProperties: false },
        ),
        response: { 201: UserEnvelope, ...errors(400, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const user = await app.auth.register(request.body, requestContext(request));
      return reply.code(201).send({ user });
    },
  );

  app.post(
    '/auth/login',
    {
      onRequest: shedWhenHashingIsFull,
      // Per IP and per account: one address cannot try many accounts, nor many addresses one account.
      preHandler: [
        limiter('login-ip', config.loginRateLimit, byIp),
        limiter('login-account', config.loginRateLimit, byAccount),
      ],
      schema: {
        tags: ['auth'],
        summary: 'Exchange email and password for tokens',
        body: Type.Object(
          { email: Email, password: Type.String({ minLength: 1, maxLength: 1024 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ user: Type.Ref('User'), ...TokenPairSchema.properties }, { additionalProperties: false }),
          ...errors(400, 401, 413, 415, 429, 503),
        },
      },
    },
    async (request) => app.auth.login(request.body.email, request.body.password, requestContext(request)),
  );

  app.post(
    '/auth/refresh',
    {
      preHandler: limiter('refresh-ip', config.refreshRateLimit, byIp),
      schema: {
        tags: ['auth'],
        summary: 'Rotate a refresh token',
        description:
          'The presented token stops working. Presented again within REFRESH_REUSE_INTERVAL_SECONDS of its rotation it gets the same successor back; later, it ends its session.',
        body: Type.Object({ refreshToken: RefreshToken }, { additionalProperties: false }),
        response: { 200: TokenPairSchema, ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => app.auth.refresh(request.body.refreshToken, requestContext(request)),
  );

  app.post(
    '/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: "Revoke a refresh token's family",
        body: Type.Object({ refreshToken: RefreshToken }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors(400, 401, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      await app.auth.logout(request.body.refreshToken, requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/auth/me',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'The authenticated user',
        security: [{ bearerAuth: [] }],
        response: { 200: UserEnvelope, ...errors(401, 503) },
      },
    },
    async (request) => {
      // authenticate has just read this user: answering from it saves a second identical query.
      const user = request.authenticatedUser;
      if (user === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      return { user };
    },
  );

  app.post(
    '/auth/password',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'Change the password; every refresh token of the user is revoked',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { currentPassword: Type.String({ minLength: 1, maxLength: 1024 }), newPassword: Password },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors(400, 401, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      await app.auth.changePassword(
        principal,
        request.body.currentPassword,
        request.body.newPassword,
        requestContext(request),
      );
      return reply.code(204).send(null);
    },
  );

  app.patch(
    '/auth/me',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'Rename the authenticated user',
        security: [{ bearerAuth: [] }],
        body: Type.Object({ name: Name }, { additionalProperties: false }),
        response: { 200: UserEnvelope, ...errors(400, 401, 413, 415, 503) },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      return { user: await app.userAdmin.renameSelf(principal, request.body.name, requestContext(request)) };
    },
  );

  app.delete(
    '/auth/me',
    {
      onRequest: shedWhenHashingIsFull,
      preHandler: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'Erase the account: the user, their sessions and tokens; the audit log keeps the id only',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { password: Type.String({ minLength: 1, maxLength: 1024 }) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors(400, 401, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      await app.userAdmin.deleteSelf(principal, request.body.password, requestContext(request));
      return reply.code(204).send(null);
    },
  );
};

export default authRoutes;
