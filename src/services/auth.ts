import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/database.ts';
import { withTransaction } from '../db/transactions.ts';
import { AuthenticationError } from '../errors/index.ts';
import { RefreshTokenRepository, type RefreshTokenRow } from '../repositories/refresh-tokens.ts';
import { UserRepository, type UserRole, type UserRow } from '../repositories/users.ts';
import { assertValidPassword, canonicalEmail, normaliseName } from './credentials.ts';
import type { PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from './principal-cache.ts';
import { hashRefreshToken, newRefreshToken, type AccessTokenSigner } from './tokens.ts';
import { toPublicUser, type PublicUser } from './users.ts';

export interface TokenPair {
  readonly accessToken: string;
  readonly refreshToken: string;
  readonly tokenType: 'Bearer';
  readonly expiresIn: number;
}

/** Who is asking: the subject of a verified access token, with the role the database holds now. */
export interface Principal {
  readonly userId: string;
  readonly role: UserRole;
}

export interface AuthServiceDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly signer: AccessTokenSigner;
  readonly clock: () => Date;
  readonly refreshTokenTtlSeconds: number;
  /** Told of security-relevant outcomes (metrics count them). */
  readonly events?: AuthEvents;
  /**
   * Principals as last read, kept fresh by the database's change notifications (see
   * `PrincipalCache`); without it every authenticated request reads the user's row.
   */
  readonly principals?: PrincipalCache<AuthenticatedUser>;
}

/** What authentication learns about the caller: who they are, and their row as read then. */
export interface AuthenticatedUser {
  readonly principal: Principal;
  readonly user: PublicUser;
}

export interface AuthEvents {
  onLogin?(outcome: 'success' | 'failure'): void;
  onRefresh?(outcome: 'rotated' | 'reused' | 'rejected'): void;
  /** Where an authenticated request's user row came from. */
  onPrincipalLookup?(source: 'cache' | 'database'): void;
}

const INVALID_CREDENTIALS = 'Invalid email or password';

/**
 * Registration, login, refresh-token rotation, logout and password changes.
 *
 * @example
 * ```ts
 * const auth = new AuthService({ db, hasher, signer, clock: () => new Date(), refreshTokenTtlSeconds: 2592000 });
 * await auth.register({ email: 'ada@example.com', password: 'correct horse', name: 'Ada' });
 * const { accessToken, refreshToken } = await auth.login('ada@example.com', 'correct horse');
 * ```
 */
export class AuthService {
  readonly #deps: AuthServiceDeps;

  constructor(deps: AuthServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Refuses at once when no password hash could start now (see `PasswordHasher.assertCapacity`).
   *
   * @throws {ServiceUnavailableError} `OVERLOADED`
   */
  assertHashCapacity(): void {
    this.#deps.hasher.assertCapacity();
  }

  /** @throws {UniqueConstraintError} field `email` when the canonical email is taken. */
  async register(input: NewAccount): Promise<PublicUser> {
    return registerUser(this.#deps, input);
  }

  /**
   * Verifies the password exactly once (against a dummy hash for an unknown email, so both
   * failures cost the same and answer the same), then opens a refresh-token family.
   */
  async login(emailInput: string, password: string): Promise<{ user: PublicUser } & TokenPair> {
    const users = new UserRepository(this.#deps.db);
    // Every login verifies a hash; when no slot is free, refuse before spending a query on it.
    this.#deps.hasher.assertCapacity();
    let email: string;
    try {
      email = canonicalEmail(emailInput);
    } catch {
      await this.#deps.hasher.verifyDummy(password);
      return this.#failLogin();
    }
    const user = await users.findByEmail(email);
    const valid =
      user === undefined
        ? await this.#deps.hasher.verifyDummy(password)
        : await this.#deps.hasher.verify(user.password_hash, password);
    if (user === undefined || !valid) return this.#failLogin();

    const now = this.#deps.clock();
    const upgradedHash = this.#deps.hasher.needsRehash(user.password_hash)
      ? await this.#deps.hasher.hash(password)
      : undefined;
    const refreshToken = newRefreshToken();
    await withTransaction(this.#deps.db, async (trx) => {
      const txUsers = new UserRepository(trx);
      await txUsers.updateLastLogin(user.id, now);
      if (upgradedHash !== undefined) await txUsers.updatePasswordHash(user.id, upgradedHash, now);
      await new RefreshTokenRepository(trx).insert({
        userId: user.id,
        familyId: randomUUID(),
        tokenHash: hashRefreshToken(refreshToken),
        expiresAt: new Date(now.getTime() + this.#deps.refreshTokenTtlSeconds * 1000),
      });
    });
    // Our own write: drop the cached row now rather than when the change notification arrives.
    this.#deps.principals?.invalidate(user.id);
    this.#deps.events?.onLogin?.('success');
    return {
      user: toPublicUser({ ...user, last_login_at: now }),
      ...this.#tokenPair(user, refreshToken),
    };
  }

  /**
   * Rotates a refresh token: the presented one stops working and a new one of the same family
   * (same absolute expiry) is returned. A token that was already rotated is a sign of theft:
   * its whole family is revoked and the call fails.
   */
  async refresh(presented: string): Promise<TokenPair> {
    const now = this.#deps.clock();
    const next = newRefreshToken();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const locked = await lockedToken(trx, presented);
      if (locked === undefined || locked.token.revoked_at !== null) return { kind: 'rejected' } as const;
      const { token, user } = locked;
      if (token.expires_at.getTime() <= now.getTime()) return { kind: 'expired' } as const;
      const tokens = new RefreshTokenRepository(trx);
      // The user's row lock makes this the only unit of work on the user's sessions right now, so
      // a token already rotated is a reuse, never a race lost to a concurrent refresh.
      if (token.rotated_at !== null || !(await tokens.markRotated(token.id, now))) {
        // Committed with the transaction; the error is raised after it, outside.
        await tokens.revokeFamily(token.family_id, now);
        return { kind: 'reused' } as const;
      }
      await tokens.insert({
        userId: token.user_id,
        familyId: token.family_id,
        tokenHash: hashRefreshToken(next),
        expiresAt: token.expires_at,
      });
      return { kind: 'rotated', user } as const;
    });

    switch (outcome.kind) {
      case 'rotated':
        this.#deps.events?.onRefresh?.('rotated');
        return this.#tokenPair(outcome.user, next);
      case 'reused':
        this.#deps.events?.onRefresh?.('reused');
        throw new AuthenticationError('Refresh token was already used; its session has been revoked', 'INVALID_TOKEN');
      case 'expired':
        this.#deps.events?.onRefresh?.('rejected');
        throw new AuthenticationError('Refresh token has expired', 'TOKEN_EXPIRED');
      case 'rejected':
        this.#deps.events?.onRefresh?.('rejected');
        throw new AuthenticationError('Invalid refresh token', 'INVALID_TOKEN');
    }
  }

  /** Revokes the family of a live refresh token (this session, on every device it was rotated to). */
  async logout(presented: string): Promise<void> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const token = (await lockedToken(trx, presented))?.token;
      if (token === undefined || token.revoked_at !== null || token.expires_at.getTime() <= now.getTime()) {
        return 'invalid';
      }
      await new RefreshTokenRepository(trx).revokeFamily(token.family_id, now);
      // A rotated token still revokes its family (it may be the thief's), but is not a valid logout.
      return token.rotated_at === null ? 'done' : 'invalid';
    });
    if (outcome === 'invalid') throw new AuthenticationError('Invalid refresh token', 'INVALID_TOKEN');
  }

  /** Changes the password after checking the current one, and revokes every refresh token of the user. */
  async changePassword(principal: Principal, currentPassword: string, newPassword: string): Promise<void> {
    assertValidPassword(newPassword, 'newPassword');
    const user = await new UserRepository(this.#deps.db).findById(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    if (!(await this.#deps.hasher.verify(user.password_hash, currentPassword))) {
      throw new AuthenticationError('Current password is incorrect', 'INVALID_CREDENTIALS', {
        field: 'currentPassword',
      });
    }
    const passwordHash = await this.#deps.hasher.hash(newPassword);
    const now = this.#deps.clock();
    await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      // Waits for any refresh of this user in flight, so the token it mints is revoked below too.
      await users.lockForUpdate(user.id);
      await users.updatePasswordHash(user.id, passwordHash, now);
      await new RefreshTokenRepository(trx).revokeAllForUser(user.id, now);
    });
    this.#deps.principals?.invalidate(user.id);
  }

  /**
   * The user behind a verified access token, with the role the database holds now (a demoted
   * admin loses access at once, not when the token expires). With a principal cache, "now" is
   * as of the last change notification, which arrives right after the change commits.
   *
   * @throws {AuthenticationError} when the user no longer exists.
   */
  async authenticate(userId: string): Promise<AuthenticatedUser> {
    const cache = this.#deps.principals;
    const cached = cache?.get(userId);
    this.#deps.events?.onPrincipalLookup?.(cached === undefined ? 'database' : 'cache');
    if (cached !== undefined) return cached;
    const generation = cache?.generation ?? 0;
    const user = await new UserRepository(this.#deps.db).findById(userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    const authenticated = { principal: { userId: user.id, role: user.role }, user: toPublicUser(user) };
    cache?.store(userId, authenticated, generation);
    return authenticated;
  }

  #failLogin(): never {
    this.#deps.events?.onLogin?.('failure');
    throw new AuthenticationError(INVALID_CREDENTIALS, 'INVALID_CREDENTIALS');
  }

  #tokenPair(user: UserRow, refreshToken: string): TokenPair {
    return {
      accessToken: this.#deps.signer.sign({ sub: user.id, role: user.role, typ: 'access' }),
      refreshToken,
      tokenType: 'Bearer',
      expiresIn: this.#deps.signer.expiresIn,
    };
  }
}

/**
 * The refresh token `presented` stands for, read after locking its user's row, so the state
 * seen is the one left by whichever unit of work on that user's sessions committed last.
 */
async function lockedToken(
  trx: Kysely<DB>,
  presented: string,
): Promise<{ token: RefreshTokenRow; user: UserRow } | undefined> {
  const tokens = new RefreshTokenRepository(trx);
  const tokenHash = hashRefreshToken(presented);
  const seen = await tokens.findByHash(tokenHash);
  const user = seen === undefined ? undefined : await new UserRepository(trx).lockForUpdate(seen.user_id);
  // Read again: a statement after the lock sees everything committed before it was granted.
  const token = user === undefined ? undefined : await tokens.findByHash(tokenHash);
  return token === undefined || user === undefined ? undefined : { token, user };
}

export interface NewAccount {
  readonly email: string;
  readonly password: string;
  readonly name: string;
  readonly role?: UserRole;
}

/**
 * Creates an account: canonical email, trimmed name, password checked and hashed with argon2id.
 * Used by POST /auth/register and by `npm run user:create` (which may give the admin role).
 *
 * @throws {ValidationError} for a malformed email, name or password.
 * @throws {UniqueConstraintError} field `email` when the canonical email is taken.
 */
export async function registerUser(
  deps: { readonly db: Kysely<DB>; readonly hasher: PasswordHasher },
  input: NewAccount,
): Promise<PublicUser> {
  const email = canonicalEmail(input.email);
  const name = normaliseName(input.name);
  assertValidPassword(input.password);
  // Hashed before the transaction: no connection is held for the ~25 ms argon2 takes.
  const passwordHash = await deps.hasher.hash(input.password);
  const user = await withTransaction(deps.db, (trx) =>
    new UserRepository(trx).create({
      email,
      name,
      passwordHash,
      ...(input.role === undefined ? {} : { role: input.role }),
    }),
  );
  return toPublicUser(user);
}
