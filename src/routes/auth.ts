import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AuthConfig } from '../config.ts';
import { requestContext, requireAuthenticatedUser, requirePrincipal } from '../plugins/auth.ts';
import { noStore } from '../plugins/http-edges.ts';
import type { Services } from '../services/index.ts';
import type { HashCallers } from '../services/passwords.ts';
import { addressOf, attemptOf, credentialLimits, emailAccount } from './limits.ts';
import {
  ACCEPTED,
  AcceptedSchema,
  Email,
  errors,
  Name,
  Password,
  RefreshToken,
  LoginOrChallengeSchema,
  TokenPairSchema,
  UserEnvelope,
} from './schemas.ts';

export interface AuthRoutesOptions {
  readonly config: AuthConfig;
  readonly services: Pick<Services, 'auth' | 'userAdmin'>;
  readonly onRateLimited?: (route: string) => void;
}

/** A password hash's callers: the account it names and the client address (each gets a bounded share). */
function hashCallers(request: FastifyRequest, email: string): HashCallers {
  return [`account:${emailAccount(email)}`, `address:${addressOf(request)}`];
}

const RefreshTokenBody = Type.Object(
  { refreshToken: RefreshToken },
  { additionalProperties: false, examples: [{ refreshToken: 'the refreshToken of the last login or refresh' }] },
);

/** The contract's /auth endpoints: register, login, refresh, logout, me (read, rename, erase), password. */
const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, opts) => {
  const { config } = opts;
  const { auth, userAdmin } = opts.services;
  const { flood } = credentialLimits(app, { windowMs: config.rateLimitWindowMs, onLimited: opts.onRateLimited });
  const byEmail = (request: FastifyRequest) =>
    `account:${emailAccount((request.body as { email?: unknown } | undefined)?.email)}`;

  app.addHook('onRequest', noStore);
  // Routes that hash a password shed load before doing anything else (no body parsing, no rate
  // limit bookkeeping) when no hashing slot is free: under overload a refusal must cost little, or
  // refusals take the CPU the hashes need.
  const shedWhenHashingIsFull = async () => {
    auth.assertHashCapacity();
  };

  app.post(
    '/auth/register',
    {
      onRequest: shedWhenHashingIsFull,
      preHandler: [
        flood('register-ip', config.registerRateLimit),
        flood('register-account', config.registerRateLimit, byEmail),
      ],
      schema: {
        operationId: 'register',
        tags: ['auth'],
        summary: 'Create an account',
        description:
          'Answers 201 `{user}` (409 for a taken address). With REGISTRATION_ENUMERATION_SAFE=true it answers ' +
          '202 `{status: "accepted"}` for a new and a taken address alike: the new one is registered and gets its ' +
          'verification email, the owner of a taken one gets a notice instead, and no 409 tells them apart.',
        body: Type.Object(
          { email: Email, password: Password, name: Type.String({ minLength: 1, maxLength: 1000 }) },
          {
            additionalProperties: false,
            examples: [{ email: 'ada@example.com', password: 'correct horse battery staple', name: 'Ada Lovelace' }],
          },
        ),
        response: { 201: UserEnvelope, 202: AcceptedSchema, ...errors(400, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const callers = hashCallers(request, request.body.email);
      if (config.registrationEnumerationSafe) {
        await auth.registerWithoutDisclosure(request.body, callers, requestContext(request));
        return reply.code(202).send(ACCEPTED);
      }
      const user = await auth.register(request.body, callers, requestContext(request));
      return reply.code(201).send({ user });
    },
  );

  app.post(
    '/auth/login',
    {
      onRequest: shedWhenHashingIsFull,
      // A flood cap per address here; failures are throttled per account and address in the handler.
      preHandler: flood('login-ip', config.loginRateLimit),
      schema: {
        operationId: 'login',
        tags: ['auth'],
        summary: 'Exchange email and password for tokens',
        body: Type.Object(
          { email: Email, password: Type.String({ minLength: 1, maxLength: 1024 }) },
          {
            additionalProperties: false,
            examples: [{ email: 'ada@example.com', password: 'correct horse battery staple' }],
          },
        ),
        response: {
          200: LoginOrChallengeSchema,
          ...errors(400, 401, 413, 415, 429, 503),
        },
      },
    },
    async (request) =>
      app.throttle.guard(attemptOf(request, 'login', emailAccount(request.body.email)), () =>
        auth.login(
          request.body.email,
          request.body.password,
          hashCallers(request, request.body.email),
          requestContext(request),
        ),
      ),
  );

  app.post(
    '/auth/refresh',
    {
      preHandler: flood('refresh-ip', config.refreshRateLimit),
      schema: {
        operationId: 'refresh',
        tags: ['auth'],
        summary: 'Rotate a refresh token',
        description:
          'The presented token stops working. Presented again within REFRESH_REUSE_INTERVAL_SECONDS of its rotation, ' +
          'it gets the same successor back (with a fresh access token); later, it ends its session.',
        body: RefreshTokenBody,
        response: { 200: TokenPairSchema, ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => auth.refresh(request.body.refreshToken, requestContext(request)),
  );

  app.post(
    '/auth/logout',
    {
      preHandler: flood('logout-ip', config.logoutRateLimit),
      schema: {
        operationId: 'logout',
        tags: ['auth'],
        summary: "End a refresh token's session: its access tokens fail at once, on every instance",
        body: RefreshTokenBody,
        response: { 204: Type.Null(), ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      await auth.logout(request.body.refreshToken, requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/auth/me',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'getMe',
        tags: ['auth'],
        summary: 'The authenticated user',
        security: [{ bearerAuth: [] }],
        response: { 200: UserEnvelope, ...errors(401, 503) },
      },
    },
    async (request) => {
      // authenticate has just read this user: answering from it saves a second identical query.
      return { user: requireAuthenticatedUser(request) };
    },
  );

  app.post(
    '/auth/password',
    {
      onRequest: shedWhenHashingIsFull,
      preHandler: [flood('password-change-ip', config.credentialRateLimit), app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'changePassword',
        tags: ['auth'],
        summary: 'Change the password; every other session of the user ends',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { currentPassword: Type.String({ minLength: 1, maxLength: 1024 }), newPassword: Password },
          {
            additionalProperties: false,
            examples: [{ currentPassword: 'correct horse battery staple', newPassword: 'a new and longer passphrase' }],
          },
        ),
        response: { 204: Type.Null(), ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      // A stolen access token must not become a way to guess the current password.
      await app.throttle.guard(attemptOf(request, 'password-change', principal.userId), () =>
        auth.changePassword(
          principal,
          request.body.currentPassword,
          request.body.newPassword,
          [`account:${principal.userId}`, `address:${addressOf(request)}`],
          requestContext(request),
        ),
      );
      return reply.code(204).send(null);
    },
  );

  app.patch(
    '/auth/me',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'updateMe',
        tags: ['auth'],
        summary: 'Rename the authenticated user',
        security: [{ bearerAuth: [] }],
        body: Type.Object({ name: Name }, { additionalProperties: false, examples: [{ name: 'Ada King' }] }),
        response: { 200: UserEnvelope, ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => ({
      user: await userAdmin.renameSelf(requirePrincipal(request), request.body.name, requestContext(request)),
    }),
  );

  app.delete(
    '/auth/me',
    {
      onRequest: shedWhenHashingIsFull,
      preHandler: [flood('account-delete-ip', config.credentialRateLimit), app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'deleteMe',
        tags: ['auth'],
        summary:
          'Erase the account: the user, their sessions, tokens and pending emails; the audit log keeps the id only',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { password: Type.String({ minLength: 1, maxLength: 1024 }) },
          { additionalProperties: false, examples: [{ password: 'correct horse battery staple' }] },
        ),
        response: { 204: Type.Null(), ...errors(400, 401, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      // Like a password change: a stolen access token must not become a way to guess the password.
      await app.throttle.guard(attemptOf(request, 'account-delete', principal.userId), () =>
        userAdmin.deleteSelf(principal, request.body.password, requestContext(request), [
          `account:${principal.userId}`,
          `address:${addressOf(request)}`,
        ]),
      );
      return reply.code(204).send(null);
    },
  );
};

export default authRoutes;
