import type { Kysely } from 'kysely';
import { Type, type Static } from 'typebox';
import type { DB } from '../platform/db/database.ts';
import type { ReadDatabase } from '../platform/db/replicas.ts';
import { AuthorizationError, NotFoundError } from '../platform/errors/index.ts';
import { UserRepository, type UserFilter, type UserRow } from './users.repository.ts';
import type { Principal } from '../auth/service.ts';
import { keysetPage } from '../platform/db/cursors.ts';
import { Timestamp } from '../platform/http/common-schemas.ts';

/**
 * A user as clients see it, never a password or its hash: the one definition both the response
 * schema (`$id: 'User'` in the OpenAPI document) and the {@link PublicUser} type come from.
 */
export const UserSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    email: Type.String(),
    name: Type.String(),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
    /** A disabled account cannot log in and has no live sessions. */
    status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
    /** When the owner proved the address (a verification link or a password reset); null until then. */
    emailVerifiedAt: Type.Union([Timestamp(), Type.Null()]),
    createdAt: Timestamp(),
    lastLoginAt: Type.Union([Timestamp(), Type.Null()]),
  },
  { $id: 'User', additionalProperties: false },
);

/** A user as clients see it (derived from {@link UserSchema}, so the two cannot drift apart). */
export type PublicUser = Readonly<Static<typeof UserSchema>>;

export interface UserServiceDeps {
  readonly db: Kysely<DB>;
  /**
   * Where reads that may be slightly stale run: a read replica when one is up and within its lag
   * bound. Only the listing uses it; reading one user goes to `db`, the primary.
   */
  readonly staleReads?: Pick<ReadDatabase, 'read'> | undefined;
}

/** One page of users and the cursor of the next page (null on the last). */
export interface UserPage {
  readonly items: PublicUser[];
  readonly nextCursor: string | null;
}

/**
 * The user directory: reading one user and listing them, with who may see what.
 *
 * @example
 * ```ts
 * const users = new UserService({ db });
 * const { items, nextCursor } = await users.list(adminPrincipal, 20, undefined);
 * ```
 */
export class UserService {
  readonly #deps: UserServiceDeps;

  constructor(deps: UserServiceDeps) {
    this.#deps = deps;
  }

  /** @throws {AuthorizationError} unless the principal is an admin or the user themself; {@link NotFoundError}. */
  async get(principal: Principal, id: string): Promise<PublicUser> {
    if (principal.role !== 'admin' && principal.userId !== id) throw new AuthorizationError();
    const user = await new UserRepository(this.#deps.db).findById(id);
    if (user === undefined) throw new NotFoundError('User not found');
    return toPublicUser(user);
  }

  /** One page of users, newest first (admins only), optionally filtered (see `UserRepository.list`). */
  async list(
    principal: Principal,
    limit: number,
    cursor: string | undefined,
    filter: UserFilter = {},
  ): Promise<UserPage> {
    if (principal.role !== 'admin') throw new AuthorizationError();
    // A listing may lag the primary by the replica bound: a user registered a moment ago may
    // appear a moment later.
    const page = await keysetPage(
      limit,
      cursor,
      (rows, after) => {
        const list = (db: Kysely<DB>) => new UserRepository(db).list(rows, after, filter);
        return this.#deps.staleReads?.read(list) ?? list(this.#deps.db);
      },
      (row) => ({ at: row.created_at, id: row.id }),
    );
    return { items: page.items.map(toPublicUser), nextCursor: page.nextCursor };
  }
}

/** The client's view of a user row. */
export function toPublicUser(user: UserRow): PublicUser {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role,
    status: user.status,
    emailVerifiedAt: user.email_verified_at,
    createdAt: user.created_at,
    lastLoginAt: user.last_login_at,
  };
}
