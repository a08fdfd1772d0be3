import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { AuthenticationError } from '../platform/errors/index.ts';
import { UserRepository, type UserRole, type UserRow } from '../users/users.repository.ts';
import { NO_CONTEXT, type AuditLog, type RequestContext } from '../audit/service.ts';
import type { HashCallers, PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from '../sessions/principal-cache.ts';
import type { SessionService } from '../sessions/service.ts';
import type { AccessTokenSigner, Assurance } from '../keys/tokens.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';
import { changePassword } from './password-change.ts';
import { logout, refresh } from './refresh.ts';
import { reissueInTransaction } from './token-pair.ts';
import { register, registerWithoutDisclosure, type NewAccount, type VerificationEmails } from './registration.ts';
import { login, openSession, type LoginResult, type SecondFactorChallenges } from './sign-in.ts';

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
  /** Has a verified second factor: sensitive actions then need an `aal2` session. */
  readonly mfaEnabled: boolean;
}

export interface AuthServiceDeps {
  readonly db: Kysely<DB>;
  readonly hasher: PasswordHasher;
  readonly signer: AccessTokenSigner;
  readonly clock: () => Date;
  readonly refreshTokenTtlSeconds: number;
  /**
   * How long after its rotation a refresh token presented again gets the same successor back
   * (0: never; it then ends its session at once).
   */
  readonly refreshReuseIntervalSeconds: number;
  /**
   * Keys of the HMAC that derives a refresh token's successor from the token itself, so a retry
   * within the reuse interval is answered with the same successor without storing it. The first
   * one derives new successors; the others (from previous JWT secrets, during a rotation) are
   * tried too when a retry is recognised. Every instance must have the same keys.
   */
  readonly refreshSuccessorKeys: readonly [string, ...string[]];
  readonly sessions: SessionService;
  readonly audit: AuditLog;
  /** Told of security-relevant outcomes (metrics count them). */
  readonly events?: AuthEvents;
  /**
   * Principals as last read, kept fresh by the database's change notifications (see
   * `PrincipalCache`); without it every authenticated request reads the user's row.
   */
  readonly principals?: PrincipalCache<AuthenticatedUser>;
  /** Login of an account whose address is not verified is a 403 EMAIL_NOT_VERIFIED (after a correct password). */
  readonly requireVerifiedEmail?: boolean;
  /** Queues the verification email of a new account, inside its registration's transaction. */
  readonly verificationEmails?: VerificationEmails;
  /** Called after a transaction that queued a security notice committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
  /** Accounts with a verified second factor get its challenge at login instead of tokens. */
  readonly secondFactor?: SecondFactorChallenges;
}

/** What authentication learns about the caller: who they are, and their row as read then. */
export interface AuthenticatedUser {
  readonly principal: Principal;
  readonly user: PublicUser;
}

export interface AuthEvents {
  onLogin?(outcome: 'success' | 'failure'): void;
  onRefresh?(outcome: 'rotated' | 'reissued' | 'reused' | 'rejected'): void;
  /**
   * A rotated refresh token presented again within the reuse interval, from the session's own
   * client (`same`: answered with the successor) or another one (`other`: treated as reuse).
   */
  onReuseInterval?(client: 'same' | 'other'): void;
  /** Where an authenticated request's user row came from. */
  onPrincipalLookup?(source: 'cache' | 'database'): void;
}

/**
 * Registration, login, refresh-token rotation, logout and password changes: each flow lives in a
 * file of its own (registration.ts, sign-in.ts, refresh.ts, password-change.ts); this class gives
 * them their dependencies, and answers who a verified access token stands for.
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
  assertHashCapacity(caller?: string): void {
    this.#deps.hasher.assertCapacity(caller);
  }

  /** See {@link register}. */
  async register(
    input: NewAccount,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<PublicUser> {
    return register(this.#deps, input, callers, context);
  }

  /** See {@link registerWithoutDisclosure}. */
  async registerWithoutDisclosure(
    input: NewAccount,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<void> {
    return registerWithoutDisclosure(this.#deps, input, callers, context);
  }

  /** See {@link login}. */
  async login(
    email: string,
    password: string,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<LoginResult> {
    return login(this.#deps, email, password, callers, context);
  }

  /** See {@link openSession}. */
  async openSession(
    user: UserRow,
    context: RequestContext,
    assurance: Assurance,
    upgradedHash?: string,
  ): Promise<{ user: PublicUser } & TokenPair> {
    return openSession(this.#deps, user, context, assurance, upgradedHash);
  }

  /** See {@link reissueInTransaction}. */
  async reissueInTransaction(
    trx: Kysely<DB>,
    user: UserRow,
    sid: string,
    expiresAt: Date,
  ): Promise<(assurance: Assurance) => Promise<TokenPair>> {
    return reissueInTransaction(this.#deps, trx, user, sid, expiresAt);
  }

  /** See {@link refresh}. */
  async refresh(presented: string, context: RequestContext = NO_CONTEXT): Promise<TokenPair> {
    return refresh(this.#deps, presented, context);
  }

  /** See {@link logout}. */
  async logout(presented: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    return logout(this.#deps, presented, context);
  }

  /** See {@link changePassword}. */
  async changePassword(
    principal: Principal,
    currentPassword: string,
    newPassword: string,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<void> {
    return changePassword(this.#deps, principal, currentPassword, newPassword, callers, context);
  }

  /**
   * The user behind a verified access token, with the role the database holds now (a demoted
   * admin loses access at once, not when the token expires). With a principal cache, "now" is
   * as of the last change notification, which arrives right after the change commits.
   *
   * The access token's session (`sid`) must be live too: an ended session's tokens fail at once.
   * Both checks are served from caches kept fresh by change notifications, so a request costs no
   * query while nothing changes.
   *
   * @throws {AuthenticationError} when the user no longer exists or is disabled, or the session ended.
   */
  async authenticate(userId: string, sid: string): Promise<AuthenticatedUser> {
    const principals = this.#deps.principals;
    const sessions = this.#deps.sessions;
    const cached = principals?.get(userId);
    const live = sessions.cachedLiveness(sid, userId);
    this.#deps.events?.onPrincipalLookup?.(cached === undefined ? 'database' : 'cache');
    if (live === false) throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
    if (cached !== undefined && live === true) return cached;
    // One statement reads what the caches could not say: the user's row and the token's session.
    const principalGeneration = principals?.generation ?? 0;
    const sessionGeneration = sessions.generation;
    const found = await new UserRepository(this.#deps.db).findWithSession(userId, sid);
    if (found === undefined || found.user.status !== 'active') {
      throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    }
    if (!sessions.learn(sid, userId, found.session, sessionGeneration)) {
      throw new AuthenticationError('Session has ended', 'INVALID_TOKEN');
    }
    const { user } = found;
    const authenticated = {
      principal: { userId: user.id, role: user.role, mfaEnabled: user.mfa_enabled },
      user: toPublicUser(user),
    };
    principals?.store(userId, authenticated, principalGeneration);
    return authenticated;
  }
}
