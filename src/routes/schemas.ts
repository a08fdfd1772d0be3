import { Type } from 'typebox';
import { ERROR_CODE_LIST, ERROR_CODES } from '../errors/index.ts';

/** Every error `type`, once each. */
const ERROR_TYPES = [...new Set(ERROR_CODE_LIST.map((code) => ERROR_CODES[code].type))];

/** The user schema lives with the type it defines (`PublicUser`); routes reference it as `User`. */
export { UserSchema } from '../services/users.ts';

export const UserEnvelope = Type.Object({ user: Type.Ref('User') }, { additionalProperties: false });

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      type: Type.Union(ERROR_TYPES.map((type) => Type.Literal(type))),
      message: Type.String(),
      statusCode: Type.Integer(),
      code: Type.Union(
        ERROR_CODE_LIST.map((code) => Type.Literal(code)),
        {
          description: 'Switch on this: every code, its status and meaning are listed in src/errors/codes.ts',
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
