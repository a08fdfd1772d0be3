import { ValidationError } from '../errors/index.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A keyset position (a timestamp and an id, newest first) as an opaque cursor.
 *
 * @example
 * ```ts
 * const cursor = encodeKeysetCursor(row.created_at, row.id);
 * decodeKeysetCursor(cursor); // { at: row.created_at, id: row.id }
 * ```
 */
export function encodeKeysetCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify([at.toISOString(), id])).toString('base64url');
}

/** @throws {ValidationError} field `cursor` for anything {@link encodeKeysetCursor} did not make. */
export function decodeKeysetCursor(cursor: string): { at: Date; id: string } {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(decoded) && decoded.length === 2) {
      const [at, id] = decoded as [unknown, unknown];
      const date = typeof at === 'string' ? new Date(at) : undefined;
      if (date !== undefined && !Number.isNaN(date.getTime()) && typeof id === 'string' && UUID.test(id)) {
        return { at: date, id: id.toLowerCase() };
      }
    }
  } catch {
    // fall through: not base64url JSON
  }
  throw new ValidationError('Invalid cursor', { field: 'cursor' });
}
