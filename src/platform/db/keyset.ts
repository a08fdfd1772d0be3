import { sql, type SelectQueryBuilder } from 'kysely';
import type { KeysetPosition } from './cursors.ts';

/**
 * Narrows a select to one keyset page, newest first: rows strictly before `after` by (`column`,
 * id), ordered by both descending, at most `limit`. Written as a row comparison, which an index
 * on (…, `column` desc, id desc) serves without a sort.
 *
 * @example
 * ```ts
 * const rows = await newestFirst(db.selectFrom('projects').selectAll().where('user_id', '=', userId), 'created_at', after, 21).execute();
 * ```
 */
export function newestFirst<DB, TB extends keyof DB, O>(
  query: SelectQueryBuilder<DB, TB, O>,
  column: string,
  after: KeysetPosition | undefined,
  limit: number,
): SelectQueryBuilder<DB, TB, O> {
  const bounded =
    after === undefined
      ? query
      : query.where(sql<boolean>`(${sql.ref(column)}, ${sql.ref('id')}) < (${after.at}, ${after.id})`);
  return bounded.orderBy(sql.ref(column), 'desc').orderBy(sql.ref('id'), 'desc').limit(limit);
}
