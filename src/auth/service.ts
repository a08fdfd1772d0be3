import { createHmac, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import {
  AuthenticationError,
  AuthorizationError,
  ServiceUnavailableError,
  UniqueConstraintError,
} from '../platform/errors/index.ts';
import { AuditEventRepository } from '../audit/audit-events.repository.ts';
import { RefreshTokenRepository, type RefreshTokenRow } from '../sessions/refresh-tokens.repository.ts';
import { SessionRepository } from '../sessions/sessions.repository.ts';
import { UserRepository, type UserRole, type UserRow } from '../users/users.repository.ts';
import {
  IP_ADDRESS_MAX,
  NO_CONTEXT,
  recordAuditEvent,
  USER_AGENT_MAX,
  type AuditLog,
  type RequestContext,
} from '../audit/service.ts';
import { assertValidPassword, canonicalEmail, normaliseName } from './credentials.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import type { HashCallers, PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from '../sessions/principal-cache.ts';
import type { SessionService } from '../sessions/service.ts';
import {
  hashRefreshToken,
  newRefreshToken,
  PASSWORD_ONLY,
  type AccessTokenSigner,
  type Assurance,
  type AssuranceLevel,
} from '../keys/tokens.ts';
import { toPublicUser, type PublicUser } from '../users/service.ts';

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

/** What a correct first factor answers for an account with a second factor: no session yet. */
export interface MfaChallenge {
  readonly mfaRequired: true;
  readonly mfaToken: string;
  readonly methods: ('totp' | 'recovery_code' | 'passkey')[];
  readonly expiresIn: number;
}

/** A login: a session's tokens, or the challenge of an account with a second factor. */
export type LoginResult = ({ user: PublicUser } & TokenPair) | MfaChallenge;

/** Opens second-factor challenges for the first factors (MfaService). */
export interface SecondFactorChallenges {
  challenge(user: UserRow, firstFactor: 'pwd', context: RequestContext): Promise<MfaChallenge>;
}

/** How registration queues its verification email (see `queueVerificationEmail`). */
export interface VerificationEmails {
  /** Runs inside the registration's transaction. */
  queue(trx: Kysely<DB>, user: UserRow, now: Date): Promise<void>;
  /** Called once that transaction committed. */
  queued?(): void;
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
  assertHashCapacity(caller?: string): void {
    this.#deps.hasher.assertCapacity(caller);
  }

  /**
   * Records `user.registered` and queues the verification email in the registration's transaction.
   *
   * @throws {UniqueConstraintError} field `email` when the canonical email is taken.
   */
  async register(
    input: NewAccount,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<PublicUser> {
    const emails = this.#deps.verificationEmails;
    if (emails === undefined) return registerUser(this.#deps, input, { callers, context });
    const user = await registerUser(this.#deps, input, {
      callers,
      context,
      inTransaction: (trx, created) => emails.queue(trx, created, this.#deps.clock()),
    });
    emails.queued?.();
    return user;
  }

  /**
   * Registration that does not tell whether the address has an account (ASVS 6.3.8,
   * REGISTRATION_ENUMERATION_SAFE): a new address is registered as by {@link register}; for a
   * taken one the same password hash is computed, nothing is created, and the owner gets an
   * `account_exists` notice instead. The caller answers both alike.
   *
   * @throws {ValidationError} for a malformed email, name or password (the same for both).
   */
  async registerWithoutDisclosure(
    input: NewAccount,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<void> {
    try {
      await this.register(input, callers, context);
    } catch (error) {
      if (!(error instanceof UniqueConstraintError)) throw error;
      const email = canonicalEmail(input.email);
      const notified = await withTransaction(this.#deps.db, async (trx) => {
        const owner = await new UserRepository(trx).findByEmail(email);
        if (owner === undefined) return false;
        return queueSecurityNotice(trx, owner, 'account_exists', this.#deps.clock());
      });
      if (notified) this.#deps.onEmailQueued?.();
    }
  }

  /**
   * Verifies the password exactly once (against a dummy hash for an unknown email, so both
   * failures cost the same and answer the same), then opens a session: a refresh-token family
   * whose id is the access token's `sid`. A disabled account fails exactly like a wrong password.
   * `callers` (account, client address) bound this login's share of the hasher. Every outcome is
   * in the audit log (`login.succeeded` with the new session, `login.failed` with its reason).
   */
  async login(
    emailInput: string,
    password: string,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<LoginResult> {
    const users = new UserRepository(this.#deps.db);
    // Every login verifies a hash; when no slot is free, refuse before spending a query on it.
    this.#deps.hasher.assertCapacity();
    let email: string;
    try {
      email = canonicalEmail(emailInput);
    } catch {
      await this.#deps.hasher.verifyDummy(password, callers);
      return this.#failLogin(null, context, { reason: 'unknown_email' });
    }
    const user = await users.findByEmail(email);
    const valid =
      user === undefined
        ? await this.#deps.hasher.verifyDummy(password, callers)
        : await this.#deps.hasher.verify(user.password_hash, password, callers);
    // Not the email tried: it may be anyone's, or a password typed into the wrong field.
    if (user === undefined) return this.#failLogin(null, context, { reason: 'unknown_email' });
    if (!valid) return this.#failLogin(user.id, context, { reason: 'wrong_password' });
    if (user.status !== 'active') return this.#failLogin(user.id, context, { reason: 'disabled' });
    // Only now: an unverified account is not told apart from a wrong password before that.
    if (this.#deps.requireVerifiedEmail === true && user.email_verified_at === null) {
      await this.#deps.audit.append('login.failed', user.id, context, { reason: 'email_not_verified' });
      throw new AuthorizationError('Verify your email address before logging in', 'EMAIL_NOT_VERIFIED');
    }

    const upgradedHash = this.#deps.hasher.needsRehash(user.password_hash)
      ? await this.#deps.hasher.hash(password, callers)
      : undefined;
    // An account with a second factor gets a challenge, not tokens: no session opens yet.
    if (user.mfa_enabled) {
      // Fail closed: an instance that cannot check second factors opens no session for such an account.
      if (this.#deps.secondFactor === undefined) {
        throw new ServiceUnavailableError('Second factors cannot be checked here', 'OVERLOADED');
      }
      return this.#deps.secondFactor.challenge(user, 'pwd', context);
    }
    return this.openSession(user, context, PASSWORD_ONLY, upgradedHash);
  }

  /**
   * Opens a session for a user whose sign-in is complete (a password login, or a second factor
   * after it): a refresh-token family whose id is the access token's `sid`, carrying `assurance`.
   * `login.succeeded` is recorded in the same transaction.
   */
  async openSession(
    user: UserRow,
    context: RequestContext,
    assurance: Assurance,
    upgradedHash?: string,
  ): Promise<{ user: PublicUser } & TokenPair> {
    const now = this.#deps.clock();
    const refreshToken = newRefreshToken();
    const sid = randomUUID();
    const opened = await withTransaction(this.#deps.db, async (trx) => {
      const txUsers = new UserRepository(trx);
      // The check above ran on the row as read before hashing; the session opens only if that is
      // still the account's row (same hash, email and status) once locked: a password change,
      // reset, disabling or deletion that committed meanwhile wins (see `credentialsUnchanged`).
      const current = await txUsers.lockForUpdate(user.id);
      if (!credentialsUnchanged(user, current)) return current === undefined ? 'deleted' : 'changed';
      await txUsers.updateLastLogin(user.id, now);
      if (upgradedHash !== undefined) await txUsers.updatePasswordHash(user.id, upgradedHash, now);
      const expiresAt = new Date(now.getTime() + this.#deps.refreshTokenTtlSeconds * 1000);
      const sessions = new SessionRepository(trx);
      await sessions.insert({
        id: sid,
        userId: user.id,
        createdAt: now,
        expiresAt,
        userAgent: context.userAgent?.slice(0, USER_AGENT_MAX) ?? null,
        ipAddress: context.ipAddress?.slice(0, IP_ADDRESS_MAX) ?? null,
      });
      if (assurance.aal !== PASSWORD_ONLY.aal || assurance.amr.join() !== PASSWORD_ONLY.amr.join()) {
        await sessions.setAssurance(sid, assurance.aal, assurance.amr);
      }
      await new RefreshTokenRepository(trx).insert({
        userId: user.id,
        familyId: sid,
        tokenHash: hashRefreshToken(refreshToken),
        expiresAt,
      });
      await recordAuditEvent(
        trx,
        'login.succeeded',
        user.id,
        { ...context, sessionId: sid, actorId: user.id },
        {
          amr: [...assurance.amr],
        },
      );
      return 'opened';
    });
    // Answered like a wrong password: the check was against credentials that no longer count, and
    // the caller must not learn that the password was right a moment ago.
    if (opened === 'deleted') return this.#failLogin(null, context, { reason: 'credentials_changed' });
    if (opened === 'changed') return this.#failLogin(user.id, context, { reason: 'credentials_changed' });
    // Our own write: drop the cached row now rather than when the change notification arrives.
    this.#deps.events?.onLogin?.('success');
    return {
      user: toPublicUser({ ...user, last_login_at: now }),
      ...(await this.#tokenPair(user, sid, refreshToken, assurance)),
    };
  }

  /**
   * A new token pair for a live session whose assurance was just raised, in the caller's
   * transaction: the session's live refresh token is revoked (presenting it later is a plain 401,
   * not a theft) and a new one of the same family and expiry takes its place.
   */
  async reissueInTransaction(
    trx: Kysely<DB>,
    user: UserRow,
    sid: string,
    expiresAt: Date,
  ): Promise<(assurance: Assurance) => Promise<TokenPair>> {
    const tokens = new RefreshTokenRepository(trx);
    await tokens.revokeFamily(sid, this.#deps.clock());
    const refreshToken = newRefreshToken();
    await tokens.insert({ userId: user.id, familyId: sid, tokenHash: hashRefreshToken(refreshToken), expiresAt });
    return (assurance) => this.#tokenPair(user, sid, refreshToken, assurance);
  }

  /**
   * Rotates a refresh token: the presented one stops working and its successor, of the same
   * family (same session, same absolute expiry), is returned. Presented again within the reuse
   * interval, it gets that same successor back with a fresh access token (a lost response, a
   * client racing itself); later, or once the successor was used in turn, it is a sign of theft:
   * the session ends (`refresh.reused` in the audit log) and the call fails.
   *
   * The successor is HMAC(key, presented token): recomputable from the token the client holds,
   * never stored (only its hash is), so answering a retry needs no recoverable copy of any token.
   */
  async refresh(presented: string, context: RequestContext = NO_CONTEXT): Promise<TokenPair> {
    const now = this.#deps.clock();
    const [signingKey, ...previousKeys] = this.#deps.refreshSuccessorKeys;
    const next = successorOf(signingKey, presented);
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const locked = await lockedToken(trx, presented, now);
      if (locked === undefined || locked.token.revoked_at !== null) return { kind: 'rejected' } as const;
      if (locked.user === undefined) return { kind: 'expired' } as const;
      const { token, user } = locked;
      // A disabled account's tokens were revoked with its sessions; this is the belt to those braces.
      if (user.status !== 'active') return { kind: 'rejected' } as const;
      const tokens = new RefreshTokenRepository(trx);
      const sid = token.family_id;
      // The user's row lock makes this the only unit of work on the user's sessions right now, so
      // what is read here is not changing under us: a token already rotated was rotated before.
      if (token.rotated_at === null && (await tokens.markRotated(token.id, now))) {
        await tokens.insert({
          userId: token.user_id,
          familyId: sid,
          tokenHash: hashRefreshToken(next),
          expiresAt: token.expires_at,
        });
        const sessions = new SessionRepository(trx);
        // A family opened by a release before sessions existed (while a deploy rolled) gets its session now.
        let assurance = await sessions.touch(sid, now);
        if (assurance === undefined) {
          await sessions.insert({
            id: sid,
            userId: token.user_id,
            createdAt: token.created_at,
            expiresAt: token.expires_at,
            userAgent: null,
            ipAddress: null,
          });
          assurance = await sessions.touch(sid, now);
        }
        return { kind: 'rotated', user, sid, assurance: assuranceOf(assurance) } as const;
      }
      let replay: 'same' | 'other' | undefined;
      if (token.rotated_at !== null && this.#withinReuseInterval(token.rotated_at, now)) {
        // Only the session's own client gets the successor: another user agent holding a token
        // rotated a moment ago is treated as reuse (the tabs of one browser share its agent).
        replay = (await this.#sameClient(trx, sid, context)) ? 'same' : 'other';
        // The successor this token was rotated into, if it is still the family's live token.
        for (const key of replay === 'same' ? [signingKey, ...previousKeys] : []) {
          const successor = await tokens.findByHash(hashRefreshToken(successorOf(key, presented)));
          if (successor === undefined) continue;
          if (successor.revoked_at === null && successor.rotated_at === null) {
            await recordReplay(
              trx,
              user.id,
              { ...context, sessionId: sid, actorId: user.id },
              this.#deps.refreshReuseIntervalSeconds,
              {
                sessionId: sid,
                rotatedAt: token.rotated_at.toISOString(),
              },
            );
            const assurance = assuranceOf(await new SessionRepository(trx).assurance(sid));
            return { kind: 'reissued', user, sid, refreshToken: successorOf(key, presented), assurance } as const;
          }
          break;
        }
      }
      // Committed with the transaction; the error is raised after it, outside.
      const userContext = { ...context, sessionId: sid };
      await recordAuditEvent(trx, 'refresh.reused', user.id, userContext, {
        sessionId: sid,
        ...(replay === 'other' ? { withinReuseInterval: true, reason: 'other_client' } : {}),
      });
      await tokens.revokeFamily(sid, now);
      const ended = await this.#deps.sessions.endInTransaction(trx, user.id, sid, 'refresh_reused', userContext);
      return { kind: 'reused', sid: ended ? sid : undefined, replay } as const;
    });

    switch (outcome.kind) {
      case 'rotated':
        this.#deps.events?.onRefresh?.('rotated');
        return this.#tokenPair(outcome.user, outcome.sid, next, outcome.assurance);
      case 'reissued':
        this.#deps.events?.onReuseInterval?.('same');
        this.#deps.events?.onRefresh?.('reissued');
        return this.#tokenPair(outcome.user, outcome.sid, outcome.refreshToken, outcome.assurance);
      case 'reused':
        if (outcome.sid !== undefined) this.#deps.sessions.countEnded([outcome.sid], 'refresh_reused');
        if (outcome.replay === 'other') this.#deps.events?.onReuseInterval?.('other');
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

  /** Ends the session of a live refresh token (on every device it was rotated to). */
  async logout(presented: string, context: RequestContext = NO_CONTEXT): Promise<void> {
    const now = this.#deps.clock();
    const outcome = await withTransaction(this.#deps.db, async (trx) => {
      const token = (await lockedToken(trx, presented, now))?.token;
      if (token === undefined || token.revoked_at !== null || token.expires_at.getTime() <= now.getTime()) {
        return { kind: 'invalid', sid: undefined, reason: 'logout' } as const;
      }
      const sid = token.family_id;
      const userContext = { ...context, sessionId: sid, actorId: token.user_id };
      // A rotated token still ends its session (it may be the thief's), but is not a valid logout.
      const reason = token.rotated_at === null ? 'logout' : 'refresh_reused';
      const ended = await this.#deps.sessions.endInTransaction(trx, token.user_id, sid, reason, userContext);
      await new RefreshTokenRepository(trx).revokeFamily(sid, now);
      return { kind: token.rotated_at === null ? 'done' : 'invalid', sid: ended ? sid : undefined, reason } as const;
    });
    if (outcome.sid !== undefined) this.#deps.sessions.countEnded([outcome.sid], outcome.reason);
    if (outcome.kind === 'invalid') throw new AuthenticationError('Invalid refresh token', 'INVALID_TOKEN');
  }

  /**
   * Changes the password after checking the current one, and ends every session of the user
   * but the one that made the change (`context.sessionId`).
   */
  async changePassword(
    principal: Principal,
    currentPassword: string,
    newPassword: string,
    callers: HashCallers = [],
    context: RequestContext = NO_CONTEXT,
  ): Promise<void> {
    assertValidPassword(newPassword, 'newPassword');
    const user = await new UserRepository(this.#deps.db).findById(principal.userId);
    if (user === undefined) throw new AuthenticationError('Invalid token', 'INVALID_TOKEN');
    if (!(await this.#deps.hasher.verify(user.password_hash, currentPassword, callers))) throw wrongCurrentPassword();
    const passwordHash = await this.#deps.hasher.hash(newPassword, callers);
    const now = this.#deps.clock();
    const ended = await withTransaction(this.#deps.db, async (trx) => {
      const users = new UserRepository(trx);
      // Waits for any refresh of this user in flight, so the token it mints is revoked below too.
      // The current password was checked against the row read before hashing: a change that
      // committed since (another password change, a reset, disabling) makes that check stale.
      const locked = await users.lockForUpdate(user.id);
      if (locked === undefined || !credentialsUnchanged(user, locked)) throw wrongCurrentPassword();
      await users.updatePasswordHash(user.id, passwordHash, now);
      await recordAuditEvent(trx, 'password.changed', user.id, context);
      await queueSecurityNotice(trx, locked, 'password_changed');
      const keep = context.sessionId ?? undefined;
      return this.#deps.sessions.endAllInTransaction(trx, user.id, 'password_changed', context, keep);
    });
    this.#deps.onEmailQueued?.();
    this.#deps.sessions.countEnded(ended, 'password_changed');
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

  /** Records the failure (committed on its own: there is no change to go with it) and answers 401. */
  async #failLogin(
    userId: string | null,
    context: RequestContext,
    details: Readonly<Record<string, unknown>>,
  ): Promise<never> {
    await this.#deps.audit.append('login.failed', userId, context, details);
    this.#deps.events?.onLogin?.('failure');
    throw new AuthenticationError(INVALID_CREDENTIALS, 'INVALID_CREDENTIALS');
  }

  /**
   * Whether the request comes from the client the session was opened by, as far as the user
   * agent tells (the stored one is truncated; compared the same way). A session opened without
   * one matches only requests without one.
   */
  async #sameClient(trx: Kysely<DB>, sid: string, context: RequestContext): Promise<boolean> {
    const opened = await new SessionRepository(trx).userAgentOf(sid);
    if (opened === undefined) return false;
    return opened === (context.userAgent?.slice(0, USER_AGENT_MAX) ?? null);
  }

  #withinReuseInterval(rotatedAt: Date, now: Date): boolean {
    const intervalMs = this.#deps.refreshReuseIntervalSeconds * 1000;
    return intervalMs > 0 && now.getTime() - rotatedAt.getTime() <= intervalMs;
  }

  async #tokenPair(user: UserRow, sid: string, refreshToken: string, assurance: Assurance): Promise<TokenPair> {
    return {
      accessToken: await this.#deps.signer.sign({ sub: user.id, role: user.role, sid, typ: 'access', ...assurance }),
      refreshToken,
      tokenType: 'Bearer',
      expiresIn: this.#deps.signer.expiresIn,
    };
  }
}

/**
 * Records `refresh.reuse_interval` for a replay answered with the successor, at most once per
 * user per reuse interval: a client replaying its token in a loop cannot grow the audit log (the
 * metric counts every replay).
 */
async function recordReplay(
  trx: Kysely<DB>,
  userId: string,
  context: RequestContext,
  intervalSeconds: number,
  details: Readonly<Record<string, unknown>>,
): Promise<void> {
  const recent = await new AuditEventRepository(trx).countRecent(
    userId,
    userId,
    'refresh.reuse_interval',
    intervalSeconds,
  );
  if (recent.count === 0) await recordAuditEvent(trx, 'refresh.reuse_interval', userId, context, details);
}

/**
 * Whether the user's row, as locked by the transaction about to act on a secret checked earlier
 * (outside it, so no connection waits on argon2), still holds what was checked: the same password
 * hash, the same email, still active, the same second-factor state. Every unit of work that changes any of them (password change
 * or reset, email change, disabling, deletion) locks the same row first, so either it committed
 * before this lock was granted and is seen here, or it waits and sees what this one wrote (and
 * ends the session this one opened).
 */
export function credentialsUnchanged(checked: UserRow, locked: UserRow | undefined): boolean {
  return (
    locked !== undefined &&
    locked.password_hash === checked.password_hash &&
    locked.email === checked.email &&
    locked.status === 'active' &&
    // A second factor added meanwhile: a password alone no longer signs in.
    locked.mfa_enabled === checked.mfa_enabled
  );
}

function wrongCurrentPassword(): AuthenticationError {
  return new AuthenticationError('Current password is incorrect', 'INVALID_CREDENTIALS', { field: 'currentPassword' });
}

/** A session row's assurance as token claims; a row the constraint allows only these levels in. */
function assuranceOf(row: { aal: string; amr: string[] } | undefined): Assurance {
  if (row === undefined) return PASSWORD_ONLY;
  const aal: AssuranceLevel = row.aal === 'aal2' ? 'aal2' : 'aal1';
  return { aal, amr: row.amr };
}

/** The successor refresh token of `presented`: the same for the same token, on every instance. */
function successorOf(key: string, presented: string): string {
  return createHmac('sha256', key).update(presented).digest('base64url');
}

/**
 * The refresh token `presented` stands for, read after locking its user's row, so the state
 * seen is the one left by whichever unit of work on that user's sessions committed last.
 */
async function lockedToken(
  trx: Kysely<DB>,
  presented: string,
  now: Date,
): Promise<{ token: RefreshTokenRow; user: UserRow } | { token: RefreshTokenRow; user: undefined } | undefined> {
  const tokens = new RefreshTokenRepository(trx);
  const tokenHash = hashRefreshToken(presented);
  const seen = await tokens.findByHash(tokenHash);
  if (seen === undefined) return undefined;
  // Revoked and expired are final: such a token is refused without locking its user's row, so
  // presenting it again and again cannot queue every other request on that user behind a lock.
  if (seen.revoked_at !== null || seen.expires_at.getTime() <= now.getTime()) return { token: seen, user: undefined };
  const user = await new UserRepository(trx).lockForUpdate(seen.user_id);
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
  options: {
    /** Whose share of the hashing queue the hash counts against (see `PasswordHasher`). */
    readonly callers?: HashCallers;
    /** Who asked, for the `user.registered` event (nobody known for `npm run user:create`). */
    readonly context?: RequestContext;
    /** More work in the registration's transaction (queueing the verification email). */
    readonly inTransaction?: (trx: Kysely<DB>, user: UserRow) => Promise<void>;
  } = {},
): Promise<PublicUser> {
  const email = canonicalEmail(input.email);
  const name = normaliseName(input.name);
  assertValidPassword(input.password);
  // Hashed before the transaction: no connection is held for the ~25 ms argon2 takes.
  const passwordHash = await deps.hasher.hash(input.password, options.callers ?? []);
  const user = await withTransaction(deps.db, async (trx) => {
    const created = await new UserRepository(trx).create({
      email,
      name,
      passwordHash,
      ...(input.role === undefined ? {} : { role: input.role }),
    });
    await recordAuditEvent(trx, 'user.registered', created.id, options.context ?? NO_CONTEXT, {
      role: created.role,
    });
    await options.inTransaction?.(trx, created);
    return created;
  });
  return toPublicUser(user);
}
