import type { Kysely, Selectable } from 'kysely';
import type { DB, Users } from '../../db-types/index.ts';
import { fixedQuery } from '../platform/db/compiled-query.ts';
import { NotFoundError } from '../platform/errors/index.ts';

export type UserRow = Selectable<Users>;
export type UserRole = UserRow['role'];
export type UserStatus = UserRow['status'];

/** What an admin may change about a user; absent fields stay as they are. */
export interface UserChanges {
  readonly name?: string;
  readonly role?: UserRole;
  readonly status?: UserStatus;
}

/** Filters of the admin listing; `q` is a prefix of the email or the name, any case. */
export interface UserFilter {
  readonly q?: string;
  readonly role?: UserRole;
  readonly status?: UserStatus;
}

export interface NewUser {
  /** Already canonical: trimmed, NFKC-normalised, lower-cased. */
  readonly email: string;
  readonly passwordHash: string;
  readonly name: string;
  readonly role?: UserRole;
}

/** A user as authentication reads them: their row, and the access token's session if it is theirs. */
export interface UserWithSession {
  readonly user: UserRow;
  /** Undefined when there is no such session, or it is another user's. */
  readonly session: { readonly expiresAt: Date; readonly endedAt: Date | null } | undefined;
}

/** Position after the last item of a page, newest first. */
export interface UserCursor {
  readonly createdAt: Date;
  readonly id: string;
}

// The fixed-shape queries are compiled once (see fixedQuery); the others are built per call.
const insert = fixedQuery((db, email: string, passwordHash: string, name: string) =>
  db.insertInto('users').values({ email, password_hash: passwordHash, name }).returningAll(),
);
// The role is left out above so the column default decides it.
const insertWithRole = fixedQuery((db, email: string, passwordHash: string, name: string, role: UserRole) =>
  db.insertInto('users').values({ email, password_hash: passwordHash, name, role }).returningAll(),
);
const byId = fixedQuery((db, id: string) => db.selectFrom('users').selectAll().where('id', '=', id));
const byEmail = fixedQuery((db, email: string) =>
  db
    .selectFrom('users')
    .selectAll()
    .where((eb) => eb(eb.fn('lower', ['email']), '=', email)),
);
// One statement for both checks of an authenticated request: a request holds one connection.
const byIdWithSession = fixedQuery((db, id: string, sid: string) =>
  db
    .selectFrom('users')
    .leftJoin('sessions', (join) => join.onRef('sessions.user_id', '=', 'users.id').on('sessions.id', '=', sid))
    .selectAll('users')
    .select([
      'sessions.id as session_id',
      'sessions.expires_at as session_expires_at',
      'sessions.ended_at as session_ended_at',
    ])
    .where('users.id', '=', id),
);
const lockById = fixedQuery((db, id: string) => db.selectFrom('users').selectAll().where('id', '=', id).forUpdate());
const setLastLogin = fixedQuery((db, id: string, at: Date) =>
  db.updateTable('users').set({ last_login_at: at }).where('id', '=', id),
);
const setPasswordHash = fixedQuery((db, id: string, passwordHash: string, at: Date) =>
  db.updateTable('users').set({ password_hash: passwordHash, updated_at: at }).where('id', '=', id),
);
const setEmailVerified = fixedQuery((db, id: string, at: Date) =>
  db
    .updateTable('users')
    .set({ email_verified_at: at, updated_at: at })
    .where('id', '=', id)
    .where('email_verified_at', 'is', null),
);
const setEmail = fixedQuery((db, id: string, email: string, verifiedAt: Date | null, at: Date) =>
  db
    .updateTable('users')
    .set({ email, email_verified_at: verifiedAt, updated_at: at })
    .where('id', '=', id)
    .returningAll(),
);
const deleteById = fixedQuery((db, id: string) => db.deleteFrom('users').where('id', '=', id));
// Every active admin, locked: a change that could remove the last one takes these first, so two
// such changes run one after the other and the second sees the first's result. The partial index
// users_active_admins_idx (migration 20261201160300) finds them without reading the table.
const lockActiveAdmins = fixedQuery((db) =>
  db
    .selectFrom('users')
    .select('id')
    .where('role', '=', 'admin')
    .where('status', '=', 'active')
    .orderBy('id')
    .forUpdate(),
);

/** `%`, `_` and `\` match themselves in a LIKE pattern built from user input. */
function likePrefix(text: string): string {
  return `${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * The users table. Works on the root database or any transaction; database failures arrive as
 * AppErrors (a taken email is a UniqueConstraintError with field `email`).
 *
 * @example
 * ```ts
 * const users = new UserRepository(db);
 * const user = await users.create({ email: 'ada@example.com', passwordHash, name: 'Ada' });
 * await users.findById(user.id);
 * ```
 */
export class UserRepository {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  async create(user: NewUser): Promise<UserRow> {
    const { email, passwordHash, name, role } = user;
    return role === undefined
      ? insert.takeOne(this.#db, email, passwordHash, name)
      : insertWithRole.takeOne(this.#db, email, passwordHash, name, role);
  }

  async findById(id: string): Promise<UserRow | undefined> {
    return byId.takeFirst(this.#db, id);
  }

  /**
   * The user and, when it is theirs, the session `sid` (live or not), in one statement: what
   * authenticating a request reads when its caches cannot answer.
   */
  async findWithSession(id: string, sid: string): Promise<UserWithSession | undefined> {
    const row = await byIdWithSession.takeFirst(this.#db, id, sid);
    if (row === undefined) return undefined;
    const { session_id, session_expires_at, session_ended_at, ...user } = row;
    return {
      user,
      session:
        session_id === null || session_expires_at === null
          ? undefined
          : { expiresAt: session_expires_at, endedAt: session_ended_at },
    };
  }

  /** Looks up by the canonical email, through the unique index on lower(email). */
  async findByEmail(email: string): Promise<UserRow | undefined> {
    return byEmail.takeFirst(this.#db, email.toLowerCase());
  }

  /**
   * Locks the user's row until the transaction ends (`SELECT … FOR UPDATE`): units of work that
   * change a user's sessions (refresh, logout, password change) take it first, so they run one
   * after another per user and each sees what the previous one committed.
   *
   * @returns the user as locked, or undefined when there is none.
   */
  async lockForUpdate(id: string): Promise<UserRow | undefined> {
    return lockById.takeFirst(this.#db, id);
  }

  /** @throws {NotFoundError} when no user has this id. */
  async updateLastLogin(id: string, at: Date): Promise<void> {
    if ((await setLastLogin.affectedRows(this.#db, id, at)) === 0n) throw new NotFoundError('User not found');
  }

  /** Whether the user has a verified second factor (kept beside the factors, in the same transaction). */
  async setMfaEnabled(id: string, enabled: boolean): Promise<void> {
    await this.#db.updateTable('users').set({ mfa_enabled: enabled }).where('id', '=', id).execute();
  }

  /** @throws {NotFoundError} when no user has this id. */
  async updatePasswordHash(id: string, passwordHash: string, at: Date): Promise<void> {
    if ((await setPasswordHash.affectedRows(this.#db, id, passwordHash, at)) === 0n)
      throw new NotFoundError('User not found');
  }

  /** Sets `email_verified_at` unless it is already set (the first proof counts). @returns whether it changed. */
  async markEmailVerified(id: string, at: Date): Promise<boolean> {
    return (await setEmailVerified.affectedRows(this.#db, id, at)) > 0n;
  }

  /**
   * Moves the account to another (canonical) address, verified at `verifiedAt` (null: not yet).
   *
   * @returns the row after the change, or undefined when there is no such user.
   * @throws {UniqueConstraintError} field `email` when another account has the address.
   */
  async changeEmail(id: string, email: string, verifiedAt: Date | null, at: Date): Promise<UserRow | undefined> {
    return setEmail.takeFirst(this.#db, id, email, verifiedAt, at);
  }

  /**
   * Applies an admin's changes. @returns the row after the change, or undefined when there is
   * no such user.
   */
  async update(id: string, changes: UserChanges, at: Date): Promise<UserRow | undefined> {
    return this.#db
      .updateTable('users')
      .set({ ...changes, updated_at: at })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
  }

  /** Locks every active admin's row until the transaction ends. @returns their ids. */
  async lockActiveAdmins(): Promise<string[]> {
    return (await lockActiveAdmins.execute(this.#db)).rows.map((row) => row.id);
  }

  /**
   * One page, newest first (created_at, then id, descending), strictly after `cursor`. `q` is
   * matched as a prefix of the email or of lower(name), in the form the prefix indexes
   * (`text_pattern_ops` on email and on lower(name), migration 20261201140000) can serve.
   */
  async list(limit: number, cursor?: UserCursor, filter: UserFilter = {}): Promise<UserRow[]> {
    let query = this.#db.selectFrom('users').selectAll();
    if (filter.q !== undefined) {
      const pattern = likePrefix(filter.q.toLowerCase());
      query = query.where((eb) => eb.or([eb('email', 'like', pattern), eb(eb.fn('lower', ['name']), 'like', pattern)]));
    }
    if (filter.role !== undefined) query = query.where('role', '=', filter.role);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (cursor !== undefined) {
      query = query.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(cursor.createdAt, cursor.id)));
    }
    return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
  }

  /** @returns whether a user was deleted. */
  async delete(id: string): Promise<boolean> {
    return (await deleteById.affectedRows(this.#db, id)) > 0n;
  }
}
