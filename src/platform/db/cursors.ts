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

/** Where a keyset page starts: strictly after this (timestamp, id), newest first. */
export interface KeysetPosition {
  readonly at: Date;
  readonly id: string;
}

/** One page of a keyset-paginated listing and the cursor of the next page (null on the last). */
export interface KeysetPage<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

/**
 * A page of `limit` rows after `cursor`: decodes the cursor, asks `fetch` for one row more than
 * the page (which tells whether another page exists, without a count query) and encodes the
 * position of the page's last row as the next cursor.
 *
 * @throws {ValidationError} field `cursor` for a cursor this did not make.
 * @example
 * ```ts
 * const page = await keysetPage(20, cursor, (limit, after) => projects.listOfUser(userId, limit, after),
 *   (row) => ({ at: row.created_at, id: row.id }));
 * ```
 */
export async function keysetPage<Row>(
  limit: number,
  cursor: string | undefined,
  fetch: (limit: number, after: KeysetPosition | undefined) => Promise<readonly Row[]>,
  positionOf: (row: Row) => KeysetPosition,
): Promise<KeysetPage<Row>> {
  const rows = await fetch(limit + 1, cursor === undefined ? undefined : decodeKeysetCursor(cursor));
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  const next = rows.length > limit && last !== undefined ? positionOf(last) : undefined;
  return { items, nextCursor: next === undefined ? null : encodeKeysetCursor(next.at, next.id) };
}
