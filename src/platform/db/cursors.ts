import { ValidationError } from '../errors/index.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$/;

/**
 * A keyset position (a timestamp and an id, newest first) as an opaque cursor: the user listing's
 * and the audit log's.
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
      // Only the form encodeKeysetCursor writes: years 0000 to 9999, which PostgreSQL can compare
      // (a date such as -271821-04-20 is valid in JavaScript and not in timestamptz).
      const date = typeof at === 'string' && ISO_INSTANT.test(at) ? new Date(at) : undefined;
      if (date !== undefined && !Number.isNaN(date.getTime()) && typeof id === 'string' && UUID.test(id)) {
        return { at: date, id: id.toLowerCase() };
      }
    }
  } catch {
    // fall through: not base64url JSON
  }
  throw new ValidationError('Invalid cursor', { field: 'cursor' });
}
