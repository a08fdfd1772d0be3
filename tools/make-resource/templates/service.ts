import type { ResourceNames } from '../names.ts';
import { capitalised } from './migration.ts';

/** The feature's rules: names trimmed and bounded, rows only ever their owner's. */
export function service(n: ResourceNames): string {
  return `import type { Kysely } from 'kysely';
import { Type, type Static } from 'typebox';
import type { DB } from '../platform/db/database.ts';
import { keysetPage, type KeysetPage } from '../platform/db/cursors.ts';
import { normaliseName } from '../auth/credentials.ts';
import { NotFoundError } from '../platform/errors/index.ts';
import { Timestamp } from '../platform/http/schemas.ts';
import { ${n.Singular}Repository, type ${n.Singular}Row } from './${n.kebab}.repository.ts';

/** A ${n.words} as clients see it: the one definition of the response schema and of {@link Public${n.Singular}}. */
export const ${n.Singular}Schema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    createdAt: Timestamp(),
    updatedAt: Timestamp(),
  },
  { additionalProperties: false },
);

export type Public${n.Singular} = Static<typeof ${n.Singular}Schema>;

/**
 * ${capitalised(n.pluralWords)} of the signed-in user: another user's ${n.words} is a 404, never a 403, so
 * its existence is not revealed.
 *
 * @example
 * \`\`\`ts
 * const ${n.plural} = new ${n.Singular}Service(db);
 * const ${n.singular} = await ${n.plural}.create(userId, { name: 'First' });
 * const { items, nextCursor } = await ${n.plural}.list(userId, 20, undefined);
 * \`\`\`
 */
export class ${n.Singular}Service {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** @throws {ValidationError} field \`name\` unless it is 1 to 100 characters once trimmed (as the table's check says). */
  async create(userId: string, input: { readonly name: string }): Promise<Public${n.Singular}> {
    const row = await new ${n.Singular}Repository(this.#db).create({ userId, name: normaliseName(input.name) });
    return toPublic${n.Singular}(row);
  }

  /** One page of the user's ${n.pluralWords}, newest first. @throws {ValidationError} field \`cursor\`. */
  async list(userId: string, limit: number, cursor: string | undefined): Promise<KeysetPage<Public${n.Singular}>> {
    const page = await keysetPage(
      limit,
      cursor,
      (rows, after) => new ${n.Singular}Repository(this.#db).listOfUser(userId, rows, after),
      (row) => ({ at: row.created_at, id: row.id }),
    );
    return { items: page.items.map(toPublic${n.Singular}), nextCursor: page.nextCursor };
  }

  /** @throws {NotFoundError} when the user has no such ${n.words}. */
  async get(userId: string, id: string): Promise<Public${n.Singular}> {
    return toPublic${n.Singular}(found(await new ${n.Singular}Repository(this.#db).findOwn(userId, id)));
  }

  /** @throws {NotFoundError} when the user has no such ${n.words}; {@link ValidationError} field \`name\`. */
  async update(userId: string, id: string, changes: { readonly name?: string }): Promise<Public${n.Singular}> {
    const name = changes.name === undefined ? undefined : normaliseName(changes.name);
    const row = await new ${n.Singular}Repository(this.#db).update(userId, id, name === undefined ? {} : { name });
    return toPublic${n.Singular}(found(row));
  }

  /** @throws {NotFoundError} when the user has no such ${n.words}. */
  async delete(userId: string, id: string): Promise<void> {
    if (!(await new ${n.Singular}Repository(this.#db).delete(userId, id))) throw notFound();
  }
}

function found(row: ${n.Singular}Row | undefined): ${n.Singular}Row {
  if (row === undefined) throw notFound();
  return row;
}

function notFound(): NotFoundError {
  return new NotFoundError('${capitalised(n.words)} not found');
}

function toPublic${n.Singular}(row: ${n.Singular}Row): Public${n.Singular} {
  return { id: row.id, name: row.name, createdAt: row.created_at, updatedAt: row.updated_at };
}
`;
}
