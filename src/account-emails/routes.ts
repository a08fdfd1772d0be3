import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AuthenticationError } from '../platform/errors/index.ts';
import { requestContext, requirePrincipal } from '../auth/plugin.ts';
import type { Services } from '../services.ts';
import { noStore } from '../platform/http/http-edges.ts';
import { canonicalEmail } from '../auth/credentials.ts';
import { callerKey } from '../platform/limits/throttle.ts';
import { addressOf, attemptOf, flood, floodCaller } from '../platform/limits/floods.ts';
import {
  ACCEPTED,
  AcceptedSchema,
  Email,
  EmailToken,
  errors,
  Password,
  UserEnvelope,
} from '../platform/http/schemas.ts';

export interface AccountEmailRoutesOptions {
  readonly services: Pick<Services, 'accountEmails' | 'auth' | 'emailChange'>;
}

const EmailChangeOutcomeSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('awaiting_other'), Type.Literal('changed')], {
      description:
        '`awaiting_other`: this link was used, the other one has not been yet; `changed`: the address has moved',
    }),
    user: Type.Ref('User'),
  },
  { additionalProperties: false },
);

/**
 * Email verification and password reset: POST /auth/email/verify, /auth/email/verification,
 * /auth/password/forgot and /auth/password/reset; the email change: POST /auth/email/change and
 * /auth/email/change/confirm. Emails are queued, never sent in the request.
 */
const accountEmailRoutes: FastifyPluginAsyncTypebox<AccountEmailRoutesOptions> = async (app, opts) => {
  const { accountEmails: service, auth, emailChange } = opts.services;
  // Flood caps per client address, and per account where there is one (src/platform/limits/floods.ts).

  app.addHook('onRequest', noStore);

  app.post(
    '/auth/email/verify',
    {
      onRequest: flood('email-verify-ip'),
      schema: {
        tags: ['auth'],
        summary: 'Verify the email address with the token from the verification link',
        description:
          'The token is single use and lives 24 hours; a newer verification email makes older links stop working.',
        body: Type.Object({ token: EmailToken }, { additionalProperties: false }),
        response: { 200: UserEnvelope, ...errors(400, 413, 415, 429, 503) },
      },
    },
    async (request) => ({ user: await service.verifyEmail(request.body.token, requestContext(request)) }),
  );

  app.post(
    '/auth/email/verification',
    {
      onRequest: flood('email-resend-ip'),
      preHandler: [app.authenticate, flood('email-resend-account')],
      schema: {
        tags: ['auth'],
        summary: 'Send a new verification email',
        description:
          'Queues a new verification email; earlier links stop working. Nothing is sent when the address is already verified.',
        security: [{ bearerAuth: [] }],
        response: { 202: AcceptedSchema, ...errors(401, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
      await service.requestVerification(principal.userId);
      return reply.code(202).send(ACCEPTED);
    },
  );

  app.post(
    '/auth/password/forgot',
    {
      onRequest: flood('password-forgot-ip'),
      schema: {
        tags: ['auth'],
        summary: 'Ask for a password-reset email',
        description:
          'Always 202 with the same body, whether or not an account has this address; a reset link (valid 1 hour) is emailed only to an active account.',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: { 202: AcceptedSchema, ...errors(400, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      // Past the account's cap the request is answered like any other but sends nothing: a refusal
      // would let whoever floods an address stop its owner from asking for a link. An address that
      // is not one is still a 400, over the cap or not.
      canonicalEmail(request.body.email);
      const { allowed } = await app.floods.take(
        'password-forgot-account',
        floodCaller(request, app.floods.limit('password-forgot-account').per),
      );
      if (allowed) await service.requestPasswordReset(request.body.email, requestContext(request));
      return reply.code(202).send(ACCEPTED);
    },
  );

  app.post(
    '/auth/password/reset',
    {
      onRequest: [
        flood('password-reset-ip'),
        async (request) => {
          auth.assertHashCapacity(callerKey.address(addressOf(request)));
        },
      ],
      schema: {
        tags: ['auth'],
        summary: 'Set a new password with the token from the reset link',
        description:
          'Every session of the account ends at once, the address counts as verified, and the token is used up.',
        body: Type.Object({ token: EmailToken, newPassword: Password }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors(400, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      await service.resetPassword(request.body.token, request.body.newPassword, requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/auth/email/change',
    {
      onRequest: [
        flood('email-change-ip'),
        async (request) => {
          auth.assertHashCapacity(callerKey.address(addressOf(request)));
        },
      ],
      preHandler: [app.authenticate, app.requireStepUp, flood('email-change-account')],
      schema: {
        operationId: 'requestEmailChange',
        tags: ['auth'],
        summary: 'Ask to move the account to another email address',
        description:
          'Needs the password; an account without one (provider or passkey sign-in only) sends none and must ' +
          'have signed in within the last 10 minutes instead. Sends a confirmation link to the new address and one to the current address ' +
          '(only to the new one when the current address was never verified); each works once, for 24 hours, ' +
          'and a newer request makes them stop working. The change takes effect once both were used.',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { newEmail: Email, password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) },
          {
            additionalProperties: false,
            examples: [{ newEmail: 'ada@new.example.com', password: 'correct horse battery staple' }],
          },
        ),
        response: { 202: AcceptedSchema, ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      // Like a password change: a stolen access token must not become a way to guess the password.
      await app.throttle.guard(attemptOf(request, 'email-change', principal.userId), () =>
        emailChange.request(
          { principal, sessionId: request.sessionId },
          request.body.newEmail,
          request.body.password,
          [callerKey.address(addressOf(request)), callerKey.user(principal.userId)],
          requestContext(request),
        ),
      );
      return reply.code(202).send(ACCEPTED);
    },
  );

  app.post(
    '/auth/email/change/confirm',
    {
      onRequest: flood('email-change-confirm-ip'),
      schema: {
        operationId: 'confirmEmailChange',
        tags: ['auth'],
        summary: 'Use a link of an email change (from the new or the current address)',
        description:
          'Answers `awaiting_other` until both links were used, then `changed`: the address moves, counts as ' +
          'verified, every session but the one that asked ends, and the old address is told. When another ' +
          'account took the new address meanwhile, nothing changes (409).',
        body: Type.Object({ token: EmailToken }, { additionalProperties: false }),
        response: { 200: EmailChangeOutcomeSchema, ...errors(400, 409, 413, 415, 429, 503) },
      },
    },
    async (request) => emailChange.confirm(request.body.token, requestContext(request)),
  );
};

export default accountEmailRoutes;
