import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import { AuditEventRepository, type AuditEventRow } from './audit-events.repository.ts';
import { UserRepository } from '../users/users.repository.ts';
import type { AccountThrottledEvent } from '../platform/limits/throttle.ts';
import { keysetPage } from '../platform/db/cursors.ts';
import { queueSecurityNotice } from '../platform/email/outbox.ts';
import { uuidv7 } from '../platform/db/ids.ts';

/** The event types of the contract's audit log. */
export type AuditEventType =
  | 'user.registered'
  | 'login.succeeded'
  | 'login.failed'
  | 'login.throttled'
  | 'session.ended'
  | 'refresh.reused'
  | 'refresh.reuse_interval'
  | 'password.changed'
  | 'password.reset_requested'
  | 'password.reset'
  | 'email.verified'
  | 'email.change_requested'
  | 'email.changed'
  | 'user.updated'
  | 'user.deleted'
  | 'mfa.enrolled'
  | 'mfa.removed'
  | 'mfa.challenge_failed'
  | 'mfa.recovery_code_used'
  | 'mfa.recovery_codes_regenerated'
  | 'mfa.reset_by_admin'
  | 'passkey.registered'
  | 'passkey.used'
  | 'passkey.renamed'
  | 'passkey.removed'
  | 'passkey.counter_regressed'
  | 'identity.linked'
  | 'identity.unlinked';

/** Where a request came from and who made it: what every audit event records besides its own details. */
export interface RequestContext {
  readonly ipAddress: string | null;
  readonly userAgent: string | null;
  /** The caller's session (`sid`), when the request was authenticated. */
  readonly sessionId: string | null;
  /** The authenticated caller, when there is one. */
  readonly actorId: string | null;
}

/** A context with nothing known (operator commands, background work). */
export const NO_CONTEXT: RequestContext = { ipAddress: null, userAgent: null, sessionId: null, actorId: null };

/** What a client reads: the contract's audit event. */
export interface PublicAuditEvent {
  readonly id: string;
  readonly type: string;
  readonly occurredAt: Date;
  readonly userId: string | null;
  readonly actorId: string | null;
  readonly sessionId: string | null;
  readonly ipAddress: string | null;
  readonly userAgent: string | null;
  readonly details: Readonly<Record<string, unknown>>;
}

/** Throttle scopes whose account is a user id (routes of a signed-in user that check the password). */
const THROTTLED_BY_USER_ID = new Set(['password-change', 'account-delete', 'email-change']);

/** Keys that must never reach the log, whatever a caller passes in `details`. */
const SECRET_KEY = /password|token|hash|secret/i;

/** User agents and addresses are truncated to what the columns keep. */
export const USER_AGENT_MAX = 256;
export const IP_ADDRESS_MAX = 64;

/**
 * Appends an event in `trx`, the transaction of the change it records: the event commits or rolls
 * back with it. Secrets are dropped from `details` whatever the caller passed; the user agent is
 * truncated to what the column keeps.
 */
export async function recordAuditEvent(
  trx: Kysely<DB>,
  type: AuditEventType,
  userId: string | null,
  context: RequestContext,
  details: Readonly<Record<string, unknown>> = {},
): Promise<void> {
  await new AuditEventRepository(trx).append({
    id: uuidv7(),
    type,
    userId,
    actorId: context.actorId,
    sessionId: context.sessionId,
    ipAddress: context.ipAddress?.slice(0, IP_ADDRESS_MAX) ?? null,
    userAgent: context.userAgent?.slice(0, USER_AGENT_MAX) ?? null,
    details: withoutSecrets(details),
  });
}

/** Events recorded through {@link recordAuditEventForEmail}: at most one per account per this many seconds. */
export const EMAIL_EVENT_INTERVAL_SECONDS = 600;

/**
 * Appends an event for the account whose canonical email is `email`, in `trx`; nothing when no
 * account has it. The statement costs the same either way, so a request that must not tell
 * whether an account exists (a password-reset request) can record through this. Anyone can
 * repeat such a request for someone else's address: an account gets at most one such event per
 * {@link EMAIL_EVENT_INTERVAL_SECONDS}.
 */
export async function recordAuditEventForEmail(
  trx: Kysely<DB>,
  type: AuditEventType,
  email: string,
  context: RequestContext,
  details: Readonly<Record<string, unknown>> = {},
): Promise<void> {
  await new AuditEventRepository(trx).appendForEmail(
    email,
    {
      id: uuidv7(),
      type,
      ipAddress: context.ipAddress?.slice(0, IP_ADDRESS_MAX) ?? null,
      userAgent: context.userAgent?.slice(0, USER_AGENT_MAX) ?? null,
      details: withoutSecrets(details),
    },
    EMAIL_EVENT_INTERVAL_SECONDS,
  );
}

/**
 * The audit log's one entry point. {@link AuditLog.record} writes in the caller's transaction,
 * so the event exists exactly when the change does; {@link AuditLog.append} is for events that
 * record no change of their own (a failed or throttled login) and commits at once.
 *
 * @example
 * ```ts
 * const audit = new AuditLog(db);
 * await withTransaction(db, async (trx) => {
 *   await users.updatePasswordHash(…);
 *   await audit.record(trx, 'password.changed', user.id, context, {});
 * });
 * await audit.append('login.failed', user.id, context, { reason: 'wrong_password' });
 * ```
 */
export class AuditLog {
  readonly #db: Kysely<DB>;

  constructor(db: Kysely<DB>) {
    this.#db = db;
  }

  /** Appends an event in `trx` (a transaction of the change it records); see {@link recordAuditEvent}. */
  async record(
    trx: Kysely<DB>,
    type: AuditEventType,
    userId: string | null,
    context: RequestContext,
    details: Readonly<Record<string, unknown>> = {},
  ): Promise<void> {
    await recordAuditEvent(trx, type, userId, context, details);
  }

  /**
   * Appends an event on its own, committed at once. An event about no account (a failed login
   * for an email nobody has) is not stored: no API can read it (both listings are per user), and
   * anyone could grow the table with it for free. Metrics count those attempts
   * (`auth_logins_total{outcome="failure"}`, together with every other failure).
   */
  async append(
    type: AuditEventType,
    userId: string | null,
    context: RequestContext,
    details: Readonly<Record<string, unknown>> = {},
  ): Promise<void> {
    if (userId === null) return;
    await withTransaction(this.#db, (trx) => this.record(trx, type, userId, context, details));
  }

  /**
   * Tells an account's owner that its logins are being slowed (distributed guessing): a
   * `login.throttled` event for the account the throttled attempts named, when it exists, and a
   * notice by email. The
   * address is the throttle's key for the client (an IPv6 address by its /64).
   */
  async recordThrottled(event: AccountThrottledEvent): Promise<void> {
    const userId =
      event.scope === 'login'
        ? (await new UserRepository(this.#db).findByEmail(event.account))?.id
        : THROTTLED_BY_USER_ID.has(event.scope)
          ? event.account
          : undefined;
    if (userId === undefined) return;
    await withTransaction(this.#db, async (trx) => {
      await this.record(
        trx,
        'login.throttled',
        userId,
        { ...NO_CONTEXT, ipAddress: event.address },
        { scope: event.scope, failures: event.failures, delaySeconds: event.delaySeconds },
      );
      // And by email (at most one an hour), since an owner under attack rarely reads the log.
      const owner = await new UserRepository(trx).findById(userId);
      if (owner !== undefined) await queueSecurityNotice(trx, owner, 'login_throttled');
    });
  }

  /**
   * One page of a user's events, newest first, and the cursor of the next page (null on the last).
   * `viewer` is who reads it: the user themself (GET /auth/events) sees only their own side of an
   * event someone else caused (see {@link ownerView}); an admin (GET /users/:id/events) sees all.
   */
  async page(
    userId: string,
    limit: number,
    cursor: string | undefined,
    viewer: 'owner' | 'admin' = 'owner',
  ): Promise<{ items: PublicAuditEvent[]; nextCursor: string | null }> {
    const page = await keysetPage(
      limit,
      cursor,
      (rows, after) =>
        new AuditEventRepository(this.#db).listForUser(
          userId,
          rows,
          after === undefined ? undefined : { occurredAt: after.at, id: after.id },
        ),
      (row) => ({ at: row.occurred_at, id: row.id }),
    );
    return {
      items: page.items.map((row) => (viewer === 'owner' ? ownerView(toPublicEvent(row)) : toPublicEvent(row))),
      nextCursor: page.nextCursor,
    };
  }
}

function toPublicEvent(row: AuditEventRow): PublicAuditEvent {
  const details = row.details;
  return {
    id: row.id,
    type: row.type,
    occurredAt: row.occurred_at,
    userId: row.user_id,
    actorId: row.actor_id,
    sessionId: row.session_id,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    details: typeof details === 'object' && details !== null && !Array.isArray(details) ? details : {},
  };
}

/**
 * An event as the user it is about sees it: when someone else acted (an admin changed, disabled
 * or deleted the account, or ended its sessions), their address, user agent and session are
 * theirs, not the user's, and are left out. `actorId` stays: an opaque id the user cannot look up
 * (GET /users/:id is for admins and the user themself), which tells them it was not them and lets
 * an admin or support find who it was.
 */
function ownerView(event: PublicAuditEvent): PublicAuditEvent {
  if (event.actorId === null || event.actorId === event.userId) return event;
  return { ...event, ipAddress: null, userAgent: null, sessionId: null };
}

/** Drops any key that names a secret, at any depth: a caller's mistake must not land in the log. */
function withoutSecrets(details: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const clean: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(details)) {
    if (SECRET_KEY.test(key)) continue;
    clean[key] =
      typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
        ? withoutSecrets(value as Record<string, unknown>)
        : value;
  }
  return clean;
}
