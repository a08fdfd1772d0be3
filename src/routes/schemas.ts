import { Type } from 'typebox';

/** Serialised as an ISO 8601 string in UTC; handlers return Date objects. */
const Timestamp = Type.Unsafe<Date>({ type: 'string', format: 'date-time' });

export const UserSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    email: Type.String(),
    name: Type.String(),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
    status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
    createdAt: Timestamp,
    lastLoginAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'User', additionalProperties: false },
);

export const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')]);
export const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);

/** A name as received; the service trims it and applies the contract's rules (1 to 100 characters). */
export const Name = Type.String({ minLength: 1, maxLength: 1000 });

export const SessionSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    createdAt: Timestamp,
    lastUsedAt: Timestamp,
    expiresAt: Timestamp,
    userAgent: Type.Union([Type.String(), Type.Null()]),
    ipAddress: Type.Union([Type.String(), Type.Null()]),
    current: Type.Boolean({ description: 'The session of the access token that asked' }),
  },
  { additionalProperties: false },
);

export const AuditEventSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    type: Type.String({ description: 'user.registered, login.succeeded, login.failed, session.ended, …' }),
    occurredAt: Timestamp,
    userId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    actorId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    sessionId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    ipAddress: Type.Union([Type.String(), Type.Null()]),
    userAgent: Type.Union([Type.String(), Type.Null()]),
    details: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

export const AuditPage = Type.Object(
  { items: Type.Array(AuditEventSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) },
  { additionalProperties: false },
);

/** limit and cursor of a keyset-paginated listing. */
export const PageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'nextCursor of the previous page' })),
};

export const UserEnvelope = Type.Object({ user: Type.Ref('User') }, { additionalProperties: false });

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      type: Type.String(),
      message: Type.String(),
      statusCode: Type.Integer(),
      code: Type.String(),
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
export const RefreshToken = Type.String({ minLength: 1, maxLength: 512 });
