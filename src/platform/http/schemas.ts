import { Type } from 'typebox';
import { ERROR_CODE_LIST, ERROR_CODES } from '../errors/index.ts';
import { Page, Timestamp } from './common-schemas.ts';

export { Page, Timestamp };

/** Every error `type`, once each. */
const ERROR_TYPES = [...new Set(ERROR_CODE_LIST.map((code) => ERROR_CODES[code].type))];

/** The user schema lives with the type it defines (`PublicUser`); routes reference it as `User`. */
export { UserSchema } from '../../users/service.ts';

/** The same body for every accepted request, whatever happened (or did not) behind it. */
export const ACCEPTED = { status: 'accepted' } as const;
export const AcceptedSchema = Type.Object({ status: Type.Literal('accepted') }, { additionalProperties: false });

export const UserEnvelope = Type.Object({ user: Type.Ref('User') }, { additionalProperties: false });

export const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')]);
export const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);

/** A name as received; the service trims it and applies the contract's rules (1 to 100 characters). */
export const Name = Type.String({ minLength: 1, maxLength: 1000 });

export const SessionSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    createdAt: Timestamp(),
    lastUsedAt: Timestamp({ description: 'Moves on every refresh' }),
    expiresAt: Timestamp(),
    userAgent: Type.Union([Type.String(), Type.Null()], { description: 'Of the login, truncated to 256 characters' }),
    ipAddress: Type.Union([Type.String(), Type.Null()], { description: 'Of the login' }),
    current: Type.Boolean({ description: 'The session of the access token that asked' }),
  },
  { additionalProperties: false },
);

export const AuditEventSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    type: Type.String({
      description:
        'user.registered, login.succeeded, login.failed, login.throttled, session.ended, refresh.reused, refresh.reuse_interval, ' +
        'password.changed, password.reset_requested, password.reset, email.verified, user.updated, user.deleted, ' +
        'email.change_requested, email.changed, mfa.enrolled, mfa.removed, mfa.challenge_failed, ' +
        'mfa.recovery_code_used, mfa.recovery_codes_regenerated, mfa.reset_by_admin',
    }),
    occurredAt: Timestamp(),
    userId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    actorId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    sessionId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
      description: "The actor's session; in GET /auth/events, null on an event someone else (an admin) caused",
    }),
    ipAddress: Type.Union([Type.String(), Type.Null()], {
      description: "The actor's; in GET /auth/events, null on an event someone else (an admin) caused",
    }),
    userAgent: Type.Union([Type.String(), Type.Null()], {
      description: "The actor's; in GET /auth/events, null on an event someone else (an admin) caused",
    }),
    details: Type.Record(Type.String(), Type.Unknown(), { description: 'Never a password, token or hash' }),
  },
  { additionalProperties: false },
);

export const AuditPage = Page(AuditEventSchema);

/** limit and cursor of a keyset-paginated listing. */
export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'nextCursor of the previous page' })),
};

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      type: Type.Union(ERROR_TYPES.map((type) => Type.Literal(type))),
      message: Type.String(),
      statusCode: Type.Integer(),
      code: Type.Union(
        ERROR_CODE_LIST.map((code) => Type.Literal(code)),
        {
          description: 'Switch on this: every code, its status and meaning are listed in src/platform/errors/codes.ts',
        },
      ),
      requestId: Type.String(),
      field: Type.Optional(Type.String()),
      details: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
    }),
  },
  { $id: 'Error' },
);

const ErrorRef = Type.Ref('Error');

/** The error responses a route documents, by status code. */
export function errors(...statuses: number[]): Record<number, typeof ErrorRef> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorRef]));
}

export const TokenPairSchema = Type.Object(
  {
    accessToken: Type.String(),
    refreshToken: Type.String(),
    tokenType: Type.Literal('Bearer'),
    expiresIn: Type.Integer({ description: 'Access token lifetime in seconds' }),
  },
  { additionalProperties: false },
);

/**
 * A device token (api.md "Abuse resistance"): opaque, issued by every successful login for that
 * account. A login may send back any string here; one that is not a live token of the account is
 * simply an unknown device, never an error.
 */
export const DeviceToken = Type.String({
  minLength: 1,
  maxLength: 256,
  description:
    'Opaque token recognising this device for this account (issued by each successful login, valid 90 days). ' +
    'Logins that present it are throttled for this device only.',
});

/** A completed sign-in: the user and the new session's tokens. */
export const LoginSchema = Type.Object(
  { user: Type.Ref('User'), ...TokenPairSchema.properties, deviceToken: DeviceToken },
  { additionalProperties: false },
);

/** A correct first factor of an account with a second factor: no session yet (POST /auth/login/mfa completes it). */
export const MfaChallengeSchema = Type.Object(
  {
    mfaRequired: Type.Literal(true),
    mfaToken: Type.String({ description: 'Single use, for POST /auth/login/mfa, valid expiresIn seconds' }),
    methods: Type.Array(Type.Union([Type.Literal('totp'), Type.Literal('recovery_code'), Type.Literal('passkey')])),
    expiresIn: Type.Integer(),
  },
  { additionalProperties: false },
);

/** POST /auth/login and every other first factor: the session, or the second-factor challenge. */
export const LoginOrChallengeSchema = Type.Union([LoginSchema, MfaChallengeSchema]);

// Input limits are generous here; the services apply the contract's exact rules after trimming and
// normalising (which a JSON schema cannot express) and answer with the same ValidationError shape.
export const Email = Type.String({
  minLength: 1,
  maxLength: 320,
  description: 'Compared case-insensitively after trim + NFKC',
});
export const Password = Type.String({
  minLength: 8,
  maxLength: 256,
  description: '8 to 256 Unicode code points, taken as typed',
});
/**
 * An id as the API writes it: a UUID in its plain hyphenated form, either case (ids compare
 * case-insensitively). `urn:uuid:…`, braces and hyphenless forms are a 400 naming the field, not
 * something for PostgreSQL to refuse.
 */
export const Id = Type.String({
  pattern: '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$',
  description: 'A UUID (compared case-insensitively)',
});

/** The canonical (lower-case) form of an id that passed {@link Id}. */
export function canonicalId(id: string): string {
  return id.toLowerCase();
}

export const RefreshToken = Type.String({ minLength: 1, maxLength: 512 });

/**
 * A single-use email token. Any string is accepted here and checked by the service, so a
 * malformed or over-long one is the same 400 INVALID_OR_EXPIRED_TOKEN as an unknown one (a
 * `maxLength` would answer VALIDATION_FAILED instead and tell the two apart); the body limit of
 * /auth/* (16 KiB, 413 past it) bounds its length.
 */
export const EmailToken = Type.String({
  description:
    'The token from the link in the email (its `token` query parameter). A string of any other shape is answered 400 INVALID_OR_EXPIRED_TOKEN.',
});
