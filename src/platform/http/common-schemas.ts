import { Type, type TSchema } from 'typebox';

// The shapes every feature's schemas build on. A leaf module (schemas.ts re-exports it), so the
// users feature, which schemas.ts itself re-exports, can use them without an import cycle.

/**
 * A point in time, serialised as an ISO 8601 string in UTC; services hand out Date objects.
 *
 * @example
 * ```ts
 * Type.Object({ createdAt: Timestamp(), lastUsedAt: Type.Union([Timestamp(), Type.Null()]) });
 * ```
 */
export function Timestamp(options: { readonly description?: string } = {}) {
  return Type.Unsafe<Date>({ type: 'string', format: 'date-time', ...options });
}

/**
 * One page of a keyset-paginated listing: its items and the cursor of the next page (null on the
 * last), as `keysetPage()` (src/platform/db/cursors.ts) returns it.
 *
 * @example
 * ```ts
 * response: { 200: Page(ProjectSchema) }
 * ```
 */
export function Page<T extends TSchema>(item: T) {
  return Type.Object(
    { items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) },
    { additionalProperties: false },
  );
}
