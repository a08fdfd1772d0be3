import {
  AppError,
  DatabaseError,
  ForeignKeyError,
  SerializationError,
  ServiceUnavailableError,
  UniqueConstraintError,
  ValidationError,
} from '../errors/index.ts';

/**
 * Which API field a constraint protects. The one place that knows constraint names: a
 * migration that adds a unique, check or foreign key constraint a client can trip adds its row here.
 */
const CONSTRAINT_FIELDS: Readonly<Record<string, string>> = {
  users_email_unique: 'email',
  users_email_length: 'email',
  users_name_length: 'name',
  users_role_check: 'role',
  refresh_tokens_token_hash_unique: 'refreshToken',
  refresh_tokens_user_id_fkey: 'userId',
};

/** The parts of a `pg` DatabaseError (or a Node socket error) that translation reads. */
interface DriverErrorFields {
  readonly code?: unknown;
  readonly constraint?: unknown;
  readonly column?: unknown;
  readonly table?: unknown;
  readonly detail?: unknown;
  readonly message?: unknown;
}

const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** Messages the `pg` driver and pool use for a lost or unobtainable connection (they carry no code). */
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'Connection terminated due to connection timeout',
];

/**
 * Turns any error thrown by the driver into an {@link AppError}, keeping the original as `cause`.
 * An error that is already an AppError passes through unchanged.
 *
 * @example
 * ```ts
 * try {
 *   await db.insertInto('users').values(row).execute();
 * } catch (error) {
 *   throw translateDatabaseError(error); // 23505 on users_email_unique → UniqueConstraintError, field "email"
 * }
 * ```
 */
export function translateDatabaseError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const fields: DriverErrorFields = typeof error === 'object' && error !== null ? error : {};
  const code = typeof fields.code === 'string' ? fields.code : '';
  const message = typeof fields.message === 'string' ? fields.message : '';
  const options = { cause: error };

  switch (code) {
    case '23505': {
      const field = fieldOf(fields);
      return new UniqueConstraintError(`Duplicate value for ${field ?? 'a unique field'}`, { ...options, field });
    }
    case '23503': {
      const field = fieldOf(fields);
      return new ForeignKeyError(
        field === undefined
          ? 'Referenced record does not exist or is still referenced'
          : `Invalid reference in ${field}`,
        { ...options, field },
      );
    }
    case '23502': {
      const field = typeof fields.column === 'string' ? camelCase(fields.column) : undefined;
      return new ValidationError(`${field ?? 'A required value'} must not be null`, { ...options, field });
    }
    case '23514': {
      const field = fieldOf(fields);
      return new ValidationError(`Invalid value for ${field ?? 'a checked field'}`, { ...options, field });
    }
    case '40001':
    case '40P01':
      return new SerializationError(undefined, options);
    case '57014':
      return new ServiceUnavailableError('The query took too long', 'QUERY_TIMEOUT', options);
    case '53300':
    case '57P01':
    case '57P02':
    case '57P03':
      return new ServiceUnavailableError('The database is unavailable', 'DATABASE_UNAVAILABLE', options);
    default:
      break;
  }

  if (code.startsWith('22')) {
    // data exceptions: malformed uuid (22P02), value too long (22001), out of range (22003), …
    return new ValidationError('Invalid value', options);
  }
  if (code.startsWith('08') || UNAVAILABLE_NODE_CODES.has(code)) {
    return new ServiceUnavailableError('The database is unavailable', 'DATABASE_UNAVAILABLE', options);
  }
  if (message === 'timeout exceeded when trying to connect') {
    return new ServiceUnavailableError('No database connection was free in time', 'POOL_EXHAUSTED', options);
  }
  if (UNAVAILABLE_MESSAGES.some((known) => message.startsWith(known))) {
    return new ServiceUnavailableError('The database is unavailable', 'DATABASE_UNAVAILABLE', options);
  }
  return new DatabaseError(undefined, options);
}

/**
 * True when the connection that raised `error` is gone or going: a FATAL/PANIC from the server
 * (a terminated backend, a server shutting down) or a lost socket. Such a connection must be
 * destroyed, never handed out again.
 */
export function isConnectionLost(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { severity, code, message }: { severity?: unknown; code?: unknown; message?: unknown } = error;
  if (severity === 'FATAL' || severity === 'PANIC') return true;
  if (typeof code === 'string' && (code.startsWith('08') || UNAVAILABLE_NODE_CODES.has(code))) return true;
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((known) => message.startsWith(known));
}

/** True for errors the outermost transaction should retry (serialization failure, deadlock). */
export function isRetryableTransactionError(error: unknown): boolean {
  return error instanceof SerializationError;
}

function fieldOf(fields: DriverErrorFields): string | undefined {
  if (typeof fields.constraint === 'string') {
    const known = CONSTRAINT_FIELDS[fields.constraint];
    if (known !== undefined) return known;
  }
  // Fallback for constraints nobody mapped: the detail names the column, e.g. `Key (email)=(…) already exists.`
  if (typeof fields.detail === 'string') {
    const match = /^Key \((?:lower\()?"?([a-z_][a-z0-9_]*)"?\)?\)?=/i.exec(fields.detail);
    if (match?.[1] !== undefined) return camelCase(match[1]);
  }
  return undefined;
}

function camelCase(column: string): string {
  return column.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}
