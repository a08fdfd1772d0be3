import type { ResourceNames } from '../names.ts';

/** The repository of the resource's table: one query per method, each scoped to its owner. */
export function repository(n: ResourceNames): string {
  return `import { sql, type Kysely, type Selectable } from 'kysely';
import type { DB, ${n.Plural} } from '../../db-types/index.ts';
import type { KeysetPosition } from '../platform/db/cursors.ts';
import { uuidv7 } from '../platform/db/ids.ts';
import { newestFirst } from '../platform/db/keyset.ts';

export type ${n.Singular}Row = Selectable<${n.Plural}>;

export interface New${n.Singular} {
  readonly userId: string;
  readonly name: string;
}

/** What an update may change; absent fields stay as they are. */
export interface ${n.Singular}Changes {
  readonly name?: string;
}

/**
 * The ${n.table} table. Every read and write names the owner, so another user's row is simply
 * not found. Works on the root database or any transaction.
 *
 * @example
 * \`\`\`ts
 * const ${n.plural} = new ${n.Singular}Repository(db);
 * const ${n.singular} = await ${n.plural}.create({ userId, name: 'First' });
 * await ${n.plural}.findOwn(userId, ${n.singular}.id);
 * \`\`\`
 */
export class ${n.Singular}Repository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async create(${n.singular}: New${n.Singular}): Promise<${n.Singular}Row> {
    return this.#db
      .insertInto('${n.table}')
      .values({ id: uuidv7(), user_id: ${n.singular}.userId, name: ${n.singular}.name })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** @returns the row, or undefined when there is none or it is another user's. */
  async findOwn(userId: string, id: string): Promise<${n.Singular}Row | undefined> {
    return this.#db
      .selectFrom('${n.table}')
      .selectAll()
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
  }

  /** One page of the user's rows, newest first (created_at, then id), strictly after \`after\`. */
  async listOfUser(userId: string, limit: number, after?: KeysetPosition): Promise<${n.Singular}Row[]> {
    const query = this.#db.selectFrom('${n.table}').selectAll().where('user_id', '=', userId);
    return newestFirst(query, 'created_at', after, limit).execute();
  }

  /** @returns the row after the change, or undefined when there is none or it is another user's. */
  async update(userId: string, id: string, changes: ${n.Singular}Changes): Promise<${n.Singular}Row | undefined> {
    return this.#db
      .updateTable('${n.table}')
      .set({ ...changes, updated_at: sql<Date>\`now()\` })
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .returningAll()
      .executeTakeFirst();
  }

  /** @returns whether the row existed and was the user's. */
  async delete(userId: string, id: string): Promise<boolean> {
    const deleted = await this.#db
      .deleteFrom('${n.table}')
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return deleted.numDeletedRows > 0n;
  }
}
`;
}
