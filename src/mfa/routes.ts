import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ValidationError } from '../platform/errors/index.ts';
import { requestContext, requirePrincipal, requireSessionId } from '../auth/plugin.ts';
import { optionalName } from '../auth/credentials.ts';
import { noStore } from '../platform/http/http-edges.ts';
import type { MfaService, SecondFactor } from './service.ts';
import type { DeviceTokens } from '../auth/device-tokens.ts';
import type { PasskeyAssertion } from '../passkeys/service.ts';
import { attemptOf, flood } from '../platform/limits/floods.ts';
import { PasskeyAssertionSchema } from '../passkeys/routes.ts';
import { DeviceToken, errors, LoginOrChallengeSchema, Timestamp, TokenPairSchema } from '../platform/http/schemas.ts';

export interface MfaRoutesOptions {
  readonly mfa: MfaService;
  /** A completed sign-in hands out a device token, like a login without a second factor. */
  readonly devices: DeviceTokens;
}

const Code = Type.String({ pattern: '^[0-9]{6}$', description: 'The 6-digit TOTP code shown now' });
const RecoveryCode = Type.String({ minLength: 10, maxLength: 32, description: 'One of the ten recovery codes' });
const FactorId = Type.Object({ id: Type.String({ format: 'uuid' }) });

const Factor = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    type: Type.Literal('totp'),
    name: Type.String(),
    createdAt: Timestamp(),
    lastUsedAt: Type.Union([Timestamp(), Type.Null()]),
    verified: Type.Boolean(),
  },
  { additionalProperties: false },
);

/** A second factor in a body: exactly one of `code`, `recoveryCode` and `passkey`. */
const SecondFactorFields = {
  code: Type.Optional(Code),
  recoveryCode: Type.Optional(RecoveryCode),
  passkey: Type.Optional(PasskeyAssertionSchema),
};

function secondFactorOf(body: {
  code?: string | undefined;
  recoveryCode?: string | undefined;
  passkey?: PasskeyAssertion | undefined;
}): SecondFactor {
  const given = [body.code, body.recoveryCode, body.passkey].filter((field) => field !== undefined).length;
  if (given !== 1) throw new ValidationError('Send exactly one of code, recoveryCode and passkey', { field: 'code' });
  if (body.code !== undefined) return { code: body.code };
  if (body.recoveryCode !== undefined) return { recoveryCode: body.recoveryCode };
  if (body.passkey !== undefined) return { passkey: body.passkey };
  throw new ValidationError('Send exactly one of code, recoveryCode and passkey', { field: 'code' });
}

/**
 * Second factors (api.md "Second factor"): completing a sign-in, step-up, TOTP enrolment, factor
 * removal, recovery codes. Wrong codes are throttled per account and client address like passwords.
 */
const mfaRoutes: FastifyPluginAsyncTypebox<MfaRoutesOptions> = async (app, opts) => {
  const { mfa } = opts;
  const { devices } = opts;
  const limit = flood('mfa-ip');
  const caller = (request: FastifyRequest) => requirePrincipal(request).userId;
  app.addHook('onRequest', noStore);

  app.post(
    '/auth/login/mfa',
    {
      preHandler: flood('mfa-login-ip'),
      schema: {
        operationId: 'loginMfa',
        tags: ['mfa'],
        summary: 'Complete a sign-in with a TOTP code, a recovery code or a passkey: a session at aal2',
        body: Type.Object(
          {
            mfaToken: Type.String({ minLength: 1, maxLength: 128 }),
            ...SecondFactorFields,
            deviceToken: Type.Optional(DeviceToken),
          },
          { additionalProperties: false, examples: [{ mfaToken: 'the mfaToken of POST /auth/login', code: '123456' }] },
        ),
        response: { 200: LoginOrChallengeSchema, ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const factor = secondFactorOf(request.body);
      const account = await mfa.accountOfChallenge(request.body.mfaToken);
      // Like a password: wrong codes from elsewhere never lock out a device that signed in before.
      const device = devices.recognise(account, request.body.deviceToken);
      const signedIn = await app.throttle.guard(attemptOf(request, 'mfa', account, device), () =>
        mfa.completeLogin(request.body.mfaToken, factor, requestContext(request)),
      );
      // The device token of this account (its canonical email, as the login binds it).
      return 'mfaRequired' in signedIn ? signedIn : { ...signedIn, deviceToken: devices.issue(signedIn.user.email) };
    },
  );

  app.post(
    '/auth/mfa/step-up',
    {
      preHandler: [app.authenticate, limit],
      schema: {
        operationId: 'mfaStepUp',
        tags: ['mfa'],
        summary: "Raise the caller's session to aal2 with a second factor: a new token pair for it",
        security: [{ bearerAuth: [] }],
        body: Type.Object(SecondFactorFields, { additionalProperties: false, examples: [{ code: '123456' }] }),
        response: { 200: TokenPairSchema, ...errors(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const factor = secondFactorOf(request.body);
      return app.throttle.guard(attemptOf(request, 'mfa', caller(request)), () =>
        mfa.stepUp(requirePrincipal(request), requireSessionId(request), factor, requestContext(request)),
      );
    },
  );

  app.get(
    '/auth/mfa',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'mfaStatus',
        tags: ['mfa'],
        summary: "The caller's second factors and how many recovery codes are left",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object(
            { factors: Type.Array(Factor), recoveryCodesRemaining: Type.Integer() },
            { additionalProperties: false },
          ),
          ...errors(401, 503),
        },
      },
    },
    async (request) => mfa.status(caller(request)),
  );

  app.post(
    '/auth/mfa/totp',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'mfaEnrolTotp',
        tags: ['mfa'],
        summary:
          'Start enrolling a TOTP factor: the secret and otpauth URI, shown once (a QR code is the client’s job)',
        security: [{ bearerAuth: [] }],
        body: Type.Optional(
          Type.Object(
            { name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) },
            { additionalProperties: false },
          ),
        ),
        response: {
          201: Type.Object(
            { factor: Factor, secret: Type.String(), otpauthUri: Type.String() },
            { additionalProperties: false },
          ),
          ...errors(400, 401, 403, 409, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      // The body is optional: a POST without one enrols a factor with a default name.
      const body = request.body as { name?: string } | undefined;
      const enrolled = await mfa.enrolTotp(requirePrincipal(request), optionalName(body?.name));
      return reply.code(201).send(enrolled);
    },
  );

  app.post(
    '/auth/mfa/totp/:id/verify',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'mfaVerifyTotp',
        tags: ['mfa'],
        summary: 'Activate a TOTP factor with its first code; the session becomes aal2 (new tokens)',
        description: 'The first factor also returns ten recovery codes, shown this once.',
        security: [{ bearerAuth: [] }],
        params: FactorId,
        body: Type.Object({ code: Code }, { additionalProperties: false, examples: [{ code: '123456' }] }),
        response: {
          200: Type.Object(
            {
              factor: Factor,
              recoveryCodes: Type.Optional(Type.Array(Type.String())),
              ...TokenPairSchema.properties,
            },
            { additionalProperties: false },
          ),
          ...errors(400, 401, 403, 404, 413, 415, 429, 503),
        },
      },
    },
    async (request) =>
      app.throttle.guard(attemptOf(request, 'mfa', caller(request)), () =>
        mfa.verifyTotp(
          requirePrincipal(request),
          requireSessionId(request),
          request.params.id.toLowerCase(),
          request.body.code,
          requestContext(request),
        ),
      ),
  );

  app.delete(
    '/auth/mfa/factors/:id',
    {
      preHandler: [app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'mfaRemoveFactor',
        tags: ['mfa'],
        summary: 'Remove a factor (the last one takes the recovery codes with it)',
        security: [{ bearerAuth: [] }],
        params: FactorId,
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      await mfa.removeFactor(
        requirePrincipal(request),
        requireSessionId(request),
        request.params.id.toLowerCase(),
        requestContext(request),
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/auth/mfa/recovery-codes',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'mfaRecoveryCodes',
        tags: ['mfa'],
        summary: 'A new set of ten recovery codes; the previous set stops working',
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ recoveryCodes: Type.Array(Type.String()) }, { additionalProperties: false }),
          ...errors(401, 403, 404, 429, 503),
        },
      },
    },
    async (request) => ({
      recoveryCodes: await mfa.regenerateRecoveryCodes(
        requirePrincipal(request),
        requireSessionId(request),
        requestContext(request),
      ),
    }),
  );

  app.delete(
    '/users/:id/mfa',
    {
      preHandler: [app.authenticate, app.requireRole('admin'), app.requireStepUp],
      schema: {
        operationId: 'resetUserMfa',
        tags: ['users'],
        summary: 'Remove every factor and recovery code of a user who lost their device; their sessions end',
        security: [{ bearerAuth: [] }],
        params: FactorId,
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      await mfa.resetByAdmin(request.params.id.toLowerCase(), requestContext(request));
      return reply.code(204).send(null);
    },
  );
};

export default mfaRoutes;
