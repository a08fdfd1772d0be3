import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ValidationError } from '../platform/errors/index.ts';
import { requestContext, requirePrincipal, requireSessionId } from '../auth/plugin.ts';
import { normaliseName, optionalName } from '../auth/credentials.ts';
import { noStore } from '../platform/http/http-edges.ts';
import type { AssertionPurpose, PasskeyService } from './service.ts';
import type { DeviceTokens } from '../auth/device-tokens.ts';
import { attemptOf, flood } from '../platform/limits/floods.ts';
import { canonicalId, Email, errors, Id, LoginSchema, Timestamp } from '../platform/http/schemas.ts';

export interface PasskeyRoutesOptions {
  readonly passkeys: PasskeyService;
  /** Issues the device token a completed sign-in returns (as a password sign-in does). */
  readonly devices: DeviceTokens;
}

// The W3C Level 3 JSON forms of the browser's credentials (what `PublicKeyCredential.toJSON()`
// and @simplewebauthn/browser produce), bounded: the library verifies what they contain.
const B64 = Type.String({ minLength: 1, maxLength: 16_384, pattern: '^[A-Za-z0-9_-]*={0,2}$' });
const CredentialFields = {
  id: Type.String({ minLength: 1, maxLength: 1024 }),
  rawId: Type.String({ minLength: 1, maxLength: 1024 }),
  type: Type.Literal('public-key'),
  authenticatorAttachment: Type.Optional(Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')])),
  clientExtensionResults: Type.Object({}, { additionalProperties: true }),
};
const Transports = Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 });

/** A registration (attestation) credential, `navigator.credentials.create()` as JSON. */
export const RegistrationCredentialSchema = Type.Unsafe<RegistrationResponseJSON>(
  Type.Object(
    {
      ...CredentialFields,
      response: Type.Object(
        {
          clientDataJSON: B64,
          attestationObject: B64,
          authenticatorData: Type.Optional(B64),
          transports: Type.Optional(Transports),
          publicKeyAlgorithm: Type.Optional(Type.Integer()),
          publicKey: Type.Optional(B64),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false, description: 'The credential navigator.credentials.create() returned, as JSON' },
  ),
);

/** An authentication (assertion) credential, `navigator.credentials.get()` as JSON. */
export const AuthenticationCredentialSchema = Type.Unsafe<AuthenticationResponseJSON>(
  Type.Object(
    {
      ...CredentialFields,
      response: Type.Object(
        {
          clientDataJSON: B64,
          authenticatorData: B64,
          signature: B64,
          userHandle: Type.Optional(Type.Union([Type.String({ maxLength: 1024 }), Type.Null()])),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false, description: 'The credential navigator.credentials.get() returned, as JSON' },
  ),
);

/** `{challengeId, credential}`: an assertion answering the challenge of POST /auth/passkeys/authentication/options. */
export const PasskeyAssertionSchema = Type.Object(
  { challengeId: Id, credential: AuthenticationCredentialSchema },
  { additionalProperties: false },
);

const Passkey = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    createdAt: Timestamp(),
    lastUsedAt: Type.Union([Timestamp(), Type.Null()]),
    backedUp: Type.Boolean({ description: 'Synced to other devices by its provider (a multi-device passkey)' }),
    transports: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);
const PasskeyEnvelope = Type.Object({ passkey: Passkey }, { additionalProperties: false });
const PasskeyName = Type.String({ minLength: 1, maxLength: 100 });

const CreationOptions = Type.Unsafe<PublicKeyCredentialCreationOptionsJSON>(
  Type.Object(
    {},
    { additionalProperties: true, description: 'PublicKeyCredentialCreationOptionsJSON (W3C WebAuthn Level 3)' },
  ),
);
const RequestOptions = Type.Unsafe<PublicKeyCredentialRequestOptionsJSON>(
  Type.Object(
    {},
    { additionalProperties: true, description: 'PublicKeyCredentialRequestOptionsJSON (W3C WebAuthn Level 3)' },
  ),
);

/**
 * Passkeys (api.md "Passkeys"): registration by a signed-in user (`aal2` once they have a
 * factor), sign-in with or without an email, and the options of the assertions the second factor
 * and step-up take (POST /auth/login/mfa and /auth/mfa/step-up `{passkey}`). Failed sign-ins are
 * throttled per account and client address like passwords.
 */
const passkeyRoutes: FastifyPluginAsyncTypebox<PasskeyRoutesOptions> = async (app, opts) => {
  const { passkeys, devices } = opts;
  const limit = flood('passkey-ip');
  const signInLimit = flood('passkey-login-ip');
  app.addHook('onRequest', noStore);
  // Options are open to anyone (a sign-in has no account yet) or a signed-in caller (step-up).
  const authenticateIfBearer = async (request: FastifyRequest) => {
    if (request.headers.authorization !== undefined) await app.authenticate(request);
  };

  app.post(
    '/auth/passkeys/registration/options',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'passkeyRegistrationOptions',
        tags: ['passkeys'],
        summary: 'Creation options for a new passkey of the caller (navigator.credentials.create)',
        description: 'A discoverable credential with user verification; the challenge is single use for 5 minutes.',
        security: [{ bearerAuth: [] }],
        response: { 200: CreationOptions, ...errors(401, 403, 429, 503) },
      },
    },
    async (request) => passkeys.registrationOptions(requirePrincipal(request)),
  );

  app.post(
    '/auth/passkeys/registration',
    {
      preHandler: [app.authenticate, limit, app.requireStepUp],
      schema: {
        operationId: 'passkeyRegister',
        tags: ['passkeys'],
        summary: 'Verify and keep a new passkey; it counts as a second factor from now on',
        security: [{ bearerAuth: [] }],
        body: Type.Object(
          { credential: RegistrationCredentialSchema, name: Type.Optional(PasskeyName) },
          { additionalProperties: false },
        ),
        response: { 201: PasskeyEnvelope, ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const passkey = await passkeys.register(
        requirePrincipal(request),
        requireSessionId(request),
        request.body.credential,
        // Shown on account and security screens: the rules of a user's name (no bidi overrides).
        optionalName(request.body.name),
        requestContext(request),
      );
      return reply.code(201).send({ passkey });
    },
  );

  app.get(
    '/auth/passkeys',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'passkeyList',
        tags: ['passkeys'],
        summary: "The caller's passkeys, oldest first",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ items: Type.Array(Passkey) }, { additionalProperties: false }),
          ...errors(401, 503),
        },
      },
    },
    async (request) => ({ items: await passkeys.list(requirePrincipal(request).userId) }),
  );

  app.patch(
    '/auth/passkeys/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'passkeyRename',
        tags: ['passkeys'],
        summary: 'Rename one of the caller’s passkeys',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        body: Type.Object({ name: PasskeyName }, { additionalProperties: false }),
        response: { 200: PasskeyEnvelope, ...errors(400, 401, 404, 413, 415, 503) },
      },
    },
    async (request) => {
      const name = normaliseName(request.body.name);
      const passkey = await passkeys.rename(
        requirePrincipal(request),
        canonicalId(request.params.id),
        name,
        requestContext(request),
      );
      return { passkey };
    },
  );

  app.delete(
    '/auth/passkeys/:id',
    {
      preHandler: [app.authenticate, app.requireStepUp],
      schema: {
        operationId: 'passkeyRemove',
        tags: ['passkeys'],
        summary: 'Remove a passkey (not the last way to sign in: 409 LAST_SIGN_IN_METHOD)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      await passkeys.remove(
        requirePrincipal(request),
        requireSessionId(request),
        canonicalId(request.params.id),
        requestContext(request),
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/auth/passkeys/authentication/options',
    {
      preHandler: [signInLimit, authenticateIfBearer],
      schema: {
        operationId: 'passkeyAuthenticationOptions',
        tags: ['passkeys'],
        summary: 'Request options for a passkey assertion (navigator.credentials.get), with its challengeId',
        description:
          'No body or `{}`: a sign-in with a discoverable credential (no email typed). `{email}`: the ' +
          "account's passkeys are listed. `{mfaToken}`: the second factor after a password. A bearer " +
          'token: step-up of that session. The challenge is single use for 5 minutes.',
        body: Type.Optional(
          Type.Object(
            { email: Type.Optional(Email), mfaToken: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) },
            { additionalProperties: false },
          ),
        ),
        response: {
          200: Type.Object({ challengeId: Type.String({ format: 'uuid' }), options: RequestOptions }),
          ...errors(400, 401, 413, 415, 429, 503),
        },
      },
    },
    async (request) => {
      // The body is optional: a POST without one asks for a discoverable-credential sign-in.
      const body = (request.body as { email?: string; mfaToken?: string } | undefined) ?? {};
      if (body.email !== undefined && body.mfaToken !== undefined) {
        throw new ValidationError('Send at most one of email and mfaToken', { field: 'mfaToken' });
      }
      let purpose: AssertionPurpose | { kind: 'login'; email: string } = { kind: 'login' };
      if (body.mfaToken !== undefined) purpose = { kind: 'mfa', mfaToken: body.mfaToken };
      else if (request.principal !== null) purpose = { kind: 'step_up', userId: request.principal.userId };
      else if (body.email !== undefined) purpose = { kind: 'login', email: body.email };
      return passkeys.authenticationOptions(purpose);
    },
  );

  app.post(
    '/auth/passkeys/authentication',
    {
      preHandler: signInLimit,
      schema: {
        operationId: 'passkeyAuthenticate',
        tags: ['passkeys'],
        summary: 'Sign in with a passkey: a session at aal2 (user verification is required)',
        description: 'An unknown credential gets the same 401 INVALID_CREDENTIALS as a wrong password.',
        body: PasskeyAssertionSchema,
        response: { 200: LoginSchema, ...errors(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const account = await passkeys.accountOfCredential(request.body.credential.id);
      const signedIn = await app.throttle.guard(attemptOf(request, 'passkey', account), () =>
        passkeys.signIn(request.body, requestContext(request)),
      );
      return { ...signedIn, deviceToken: devices.issue(signedIn.user.email) };
    },
  );
};

export default passkeyRoutes;
