import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AuthConfig } from '../platform/config/auth.ts';
import { requestContext, requireAuthenticatedUser, requirePrincipal } from './plugin.ts';
import { noStore } from '../platform/http/http-edges.ts';
import type { Services } from '../services.ts';
import type { HashCallers } from './passwords.ts';
import { callerKey } from '../platform/limits/throttle.ts';
import { addressOf, attemptOf, emailAccount, flood } from '../platform/limits/floods.ts';
import {
  ACCEPTED,
  AcceptedSchema,
  DeviceToken,
  Email,
  errors,
  Name,
  Password,
  RefreshToken,
  LoginOrChallengeSchema,
  TokenPairSchema,
  UserEnvelope,
} from '../platform/http/schemas.ts';

export interface AuthRoutesOptions {
  readonly config: Pick<AuthConfig, 'registrationEnumerationSafe'>;
  readonly services: Pick<Services, 'auth' | 'userAdmin' | 'devices'>;
}

/**
 * A password hash's callers: the client address and the account it names (each gets a bounded
 * share), and the device when the request presented a valid device token (served first).
 */
function hashCallers(request: FastifyRequest, account: string, device?: string): HashCallers {
  const callers = [callerKey.address(addressOf(request)), callerKey.account(account)];
  return device === undefined ? callers : [...callers, callerKey.device(device)];
}

const RefreshTokenBody = Type.Object(
  { refreshToken: RefreshToken },
  { additionalProperties: false, examples: [{ refreshToken: 'the refreshToken of the last login or refresh' }] },
);

/** The contract's /auth endpoints: register, login, refresh, logout, me (read, rename, erase), password. */
const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, opts) => {
  const { config } = opts;
  const { auth, userAdmin, devices } = opts.services;

  app.addHook('onRequest', noStore);
  // Routes that hash a password shed load before parsing the body when no hashing slot is free:
  // under overload a refusal must cost little, or refusals take the CPU the hashes need. It runs
  // after the per-address flood cap (also before the body), so every refused request counts
  // against the address that sent it.
  const shedWhenHashingIsFull = async (request: FastifyRequest) => {
    auth.assertHashCapacity(callerKey.address(addressOf(request)));
  };

  app.post(
    '/auth/register',
    {
      onRequest: [flood('register-ip'), shedWhenHashingIsFull],
      preHandler: flood('register-account'),
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
      const callers = hashCallers(request, emailAccount(request.body.email));
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
      // A flood cap per address here; failures are throttled per account and address (or per
      // recognised device) in the handler.
      onRequest: [flood('login-ip'), shedWhenHashingIsFull],
      schema: {
        operationId: 'login',
        tags: ['auth'],
        summary: 'Exchange email and password for tokens',
        description:
          'Send back the deviceToken of your last successful login on this device: failed attempts from elsewhere ' +
          '(which slow the account down for unknown devices) then never lock this device out.',
        body: Type.Object(
          {
            email: Email,
            password: Type.String({ minLength: 1, maxLength: 1024 }),
            deviceToken: Type.Optional(DeviceToken),
          },
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
    async (request) => {
      const account = emailAccount(request.body.email);
      const device = devices.recognise(account, request.body.deviceToken);
      const signedIn = await app.throttle.guard(attemptOf(request, 'login', account, device), () =>
        auth.login(
          request.body.email,
          request.body.password,
          hashCallers(request, account, device),
          requestContext(request),
        ),
      );
      // A new token on every completed sign-in (a challenge is not one yet: POST /auth/login/mfa
      // hands it out): the device is recognised for another 90 days.
      return 'mfaRequired' in signedIn ? signedIn : { ...signedIn, deviceToken: devices.issue(account) };
    },
  );

  app.post(
    '/auth/refresh',
    {
      onRequest: flood('refresh-ip'),
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
      onRequest: flood('logout-ip'),
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
      onRequest: [flood('password-change-ip'), shedWhenHashingIsFull],
      preHandler: [app.authenticate, app.requireStepUp],
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
          [callerKey.address(addressOf(request)), callerKey.user(principal.userId)],
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
      onRequest: [flood('account-delete-ip'), shedWhenHashingIsFull],
      preHandler: [app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'deleteMe',
        tags: ['auth'],
        summary:
          'Erase the account: the user, their sessions, tokens and pending emails; the audit log keeps the id only',
        security: [{ bearerAuth: [] }],
        description:
          'Needs the password; an account without one (provider or passkey sign-in only) sends none and ' +
          'must have signed in within the last 10 minutes instead (403 FORBIDDEN otherwise).',
        body: Type.Object(
          { password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) },
          { additionalProperties: false, examples: [{ password: 'correct horse battery staple' }] },
        ),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      // Like a password change: a stolen access token must not become a way to guess the password.
      await app.throttle.guard(attemptOf(request, 'account-delete', principal.userId), () =>
        userAdmin.deleteSelf(principal, request.body.password, requestContext(request), [
          callerKey.address(addressOf(request)),
          callerKey.user(principal.userId),
        ]),
      );
      return reply.code(204).send(null);
    },
  );
};

export default authRoutes;
