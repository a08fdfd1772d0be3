import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AuthenticationError } from '../errors/index.ts';
import { requestContext } from '../plugins/auth.ts';
import type { Services } from '../services/index.ts';
import { noStore } from '../plugins/http-edges.ts';
import { addressOf, credentialLimits, emailAccount } from './limits.ts';
import { Email, EmailToken, errors, Password, UserEnvelope } from './schemas.ts';

export interface AccountEmailRoutesOptions {
  readonly services: Pick<Services, 'accountEmails' | 'auth'>;
  /** Requests per route per client address, and per account where there is one, per window. */
  readonly rateLimit: number;
  readonly rateLimitWindowMs: number;
  readonly onRateLimited?: (limiter: string) => void;
}

/** The same body for every accepted request, whatever happened (or did not) behind it. */
const ACCEPTED = { status: 'accepted' } as const;
const AcceptedSchema = Type.Object({ status: Type.Literal('accepted') }, { additionalProperties: false });

/**
 * Email verification and password reset: POST /auth/email/verify, /auth/email/verification,
 * /auth/password/forgot and /auth/password/reset. Emails are queued, never sent in the request.
 */
const accountEmailRoutes: FastifyPluginAsyncTypebox<AccountEmailRoutesOptions> = async (app, opts) => {
  const { accountEmails: service, auth } = opts.services;
  // The flood caps of routes/auth.ts: per client address keyed canonically (IPv6 by /64,
  // IPv4-mapped as IPv4), and per account where there is one.
  const { flood } = credentialLimits(app, { windowMs: opts.rateLimitWindowMs, onLimited: opts.onRateLimited });
  const limiter = (name: string, key: (request: FastifyRequest) => string) => flood(name, opts.rateLimit, key);
  const byIp = addressOf;
  const byPrincipal = (request: FastifyRequest) => request.principal?.userId ?? 'none';
  const byEmail = (request: FastifyRequest) =>
    emailAccount((request.body as { email?: unknown } | undefined)?.email) || 'none';

  app.addHook('onRequest', noStore);

  app.post(
    '/auth/email/verify',
    {
      preHandler: limiter('email-verify-ip', byIp),
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
      preHandler: [app.authenticate, limiter('email-resend-ip', byIp), limiter('email-resend-account', byPrincipal)],
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
      preHandler: [limiter('password-forgot-ip', byIp), limiter('password-forgot-account', byEmail)],
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
      await service.requestPasswordReset(request.body.email, requestContext(request));
      return reply.code(202).send(ACCEPTED);
    },
  );

  app.post(
    '/auth/password/reset',
    {
      onRequest: async () => {
        auth.assertHashCapacity();
      },
      preHandler: limiter('password-reset-ip', byIp),
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
};

export default accountEmailRoutes;
