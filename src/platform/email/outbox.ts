import type { Kysely } from 'kysely';
import type { DB } from '../db/database.ts';
import { withTransaction } from '../db/transactions.ts';
import { AccountTokenRepository } from '../../account-emails/account-tokens.repository.ts';
import { EmailOutboxRepository, type ClaimedMessage } from './email-outbox.repository.ts';
import { UserRepository, type UserRow } from '../../users/users.repository.ts';
import { issueAccountToken } from '../../account-emails/account-tokens.ts';
import {
  isEmailTemplate,
  isLinkTemplate,
  noticeTemplate,
  type EmailTemplate,
  type SecurityNotice,
} from './templates.ts';
import { renderEmail, type OutgoingEmail } from './render.ts';

/** Reset links of one account that work at once, at most: the rest of a flood of requests sends nothing. */
export const MAX_LIVE_RESET_LINKS = 3;

/** What the account emails need to know: where links point, and how long tokens live. */
export interface AccountEmailSettings {
  /** The client application's base URL, without a trailing slash. */
  readonly appUrl: string;
  readonly verificationTtlSeconds: number;
  readonly passwordResetTtlSeconds: number;
}

/**
 * Queues a verification email for `user` in the caller's unit of work: a new token (older ones of
 * the user are superseded) and an outbox row holding it. Nothing is sent unless that unit of work
 * commits; once it does, the dispatcher will send it.
 *
 * @example
 * ```ts
 * await withTransaction(db, async (trx) => {
 *   const user = await new UserRepository(trx).create(newUser);
 *   await queueVerificationEmail(trx, user, settings, now);
 * });
 * ```
 */
export async function queueVerificationEmail(
  trx: Kysely<DB>,
  user: { readonly id: string; readonly email: string; readonly name: string },
  settings: AccountEmailSettings,
  now: Date,
): Promise<void> {
  const token = await issueAccountToken(
    trx,
    { userId: user.id, purpose: 'email_verification', ttlSeconds: settings.verificationTtlSeconds },
    now,
  );
  await new EmailOutboxRepository(trx).enqueue({
    userId: user.id,
    recipient: user.email,
    template: 'email_verification',
    data: { token, name: user.name },
  });
}

/** The account an email is about, as it is at the time of the event. */
export interface Addressee {
  readonly id: string;
  readonly email: string;
  readonly name: string;
}

/**
 * Notices a caller can set off without proving anything (a registration with someone's address)
 * are sent at most once per this many seconds per account, so nobody can fill a mailbox with them.
 */
const NOTICE_COALESCE_SECONDS: Partial<Record<SecurityNotice, number>> = {
  account_exists: 3600,
  login_throttled: 3600,
};

/**
 * Queues a security notice to the account's address as it is now (an email change's notice goes
 * to the old address), in the caller's unit of work: it is sent once that commits, and never if it
 * rolls back. A notice carries no token and no link (see `email-templates.ts`).
 *
 * @example
 * ```ts
 * await queueSecurityNotice(trx, user, 'password_changed');
 * ```
 * @returns whether a notice was queued (false: the same one went out to this account recently).
 */
export async function queueSecurityNotice(
  db: Kysely<DB>,
  user: Addressee,
  notice: SecurityNotice,
  now: Date = new Date(),
): Promise<boolean> {
  const outbox = new EmailOutboxRepository(db);
  const template = noticeTemplate(notice);
  const coalesce = NOTICE_COALESCE_SECONDS[notice];
  if (
    coalesce !== undefined &&
    (await outbox.queuedSince(user.id, template, new Date(now.getTime() - coalesce * 1000)))
  ) {
    return false;
  }
  await outbox.enqueue({ userId: user.id, recipient: user.email, template, data: { name: user.name } });
  return true;
}

/**
 * Queues the links of an email change in the caller's unit of work: one to the new address and,
 * when `toCurrent`, one to the current address. Each is a new account token pointing at the
 * change; the user's earlier email-change tokens are superseded.
 */
export async function queueEmailChangeLinks(
  trx: Kysely<DB>,
  user: Addressee,
  change: { readonly id: string; readonly newEmail: string; readonly toCurrent: boolean },
  settings: AccountEmailSettings,
  now: Date,
): Promise<void> {
  const outbox = new EmailOutboxRepository(trx);
  const issue = (purpose: 'email_change_new' | 'email_change_current') =>
    issueAccountToken(
      trx,
      { userId: user.id, purpose, ttlSeconds: settings.verificationTtlSeconds, emailChangeId: change.id },
      now,
    );
  // Both purposes are superseded whatever this request needs: an older request's links stop working.
  const newToken = await issue('email_change_new');
  const currentToken = await issue('email_change_current');
  await outbox.enqueue({
    userId: user.id,
    recipient: change.newEmail,
    template: 'email_change_new',
    data: { token: newToken, name: user.name },
  });
  if (change.toCurrent) {
    await outbox.enqueue({
      userId: user.id,
      recipient: user.email,
      template: 'email_change_current',
      data: { token: currentToken, name: user.name, newEmail: change.newEmail },
    });
  } else {
    // Not sent, so never usable: used up at once rather than left live in the table.
    await new AccountTokenRepository(trx).supersedeLive(user.id, 'email_change_current', now);
  }
}

/**
 * Queues a password-reset request for an address: an outbox row when an active account owns it,
 * nothing otherwise (so requests for addresses nobody owns grow no table), by writes that cost
 * about the same either way, so neither the answer nor its timing tells. The token is
 * issued when the email goes out (see {@link EmailComposer}), which checks the account again.
 */
export async function queuePasswordResetRequest(db: Kysely<DB>, email: string): Promise<void> {
  const outbox = new EmailOutboxRepository(db);
  const queued = await outbox.enqueueForAddress(email, 'password_reset');
  // Written and removed again when no active account owns the address: the same writes (and the
  // same flushed commit) as for an account, and nothing stored.
  if (queued.userId === null) await outbox.discardUnowned(queued.id);
}

/**
 * Turns a claimed outbox message into the email to send, or undefined when it must not be sent
 * any more (skipped): the address is already verified, its account is disabled, or no active
 * account owns the address a reset was asked for.
 *
 * A reset's token is issued here, when the email is about to go out, not in the request: that is
 * what makes the request cost the same for every address. A retried reset issues a new token
 * (the failed attempt's, never delivered, counts among the live links until it expires).
 */
export class EmailComposer {
  readonly #db: Kysely<DB>;
  readonly #settings: AccountEmailSettings;
  readonly #clock: () => Date;

  constructor(deps: { readonly db: Kysely<DB>; readonly settings: AccountEmailSettings; readonly clock: () => Date }) {
    this.#db = deps.db;
    this.#settings = deps.settings;
    this.#clock = deps.clock;
  }

  /** @throws when the message is of no known template or lacks its data (the dispatcher retries, then gives up). */
  async compose(message: ClaimedMessage): Promise<OutgoingEmail | undefined> {
    const template = message.template;
    if (!isEmailTemplate(template)) throw new Error(`unknown email template "${template}"`);
    if (template === 'email_verification') return this.#verification(message);
    if (template === 'password_reset') return this.#passwordReset(message);
    if (isLinkTemplate(template)) return this.#emailChange(template, message);
    return this.#notice(template, message);
  }

  /** A link of an email change, unless the account was disabled since (its link would be refused). */
  async #emailChange(template: EmailTemplate, message: ClaimedMessage): Promise<OutgoingEmail | undefined> {
    const { token, name, newEmail } = message.data;
    if (token === undefined || name === undefined || message.userId === null) {
      throw new Error('email-change email without its token');
    }
    const user = await new UserRepository(this.#db).findById(message.userId);
    if (user === undefined || !isActive(user)) return undefined;
    return renderEmail(template, {
      to: message.recipient,
      name,
      appUrl: this.#settings.appUrl,
      token,
      ttlSeconds: this.#settings.verificationTtlSeconds,
      ...(newEmail === undefined ? {} : { newEmail }),
    });
  }

  /** A security notice: always sent (a disabled account is told so), dated by its event. */
  #notice(template: EmailTemplate, message: ClaimedMessage): OutgoingEmail {
    const { name } = message.data;
    if (name === undefined) throw new Error('notice without its addressee');
    return renderEmail(template, {
      to: message.recipient,
      name,
      appUrl: this.#settings.appUrl,
      occurredAt: message.createdAt,
    });
  }

  async #verification(message: ClaimedMessage): Promise<OutgoingEmail | undefined> {
    const { token, name } = message.data;
    if (token === undefined || name === undefined || message.userId === null) {
      throw new Error('verification email without its token');
    }
    const user = await new UserRepository(this.#db).findById(message.userId);
    // A disabled account gets no mail: its link would be refused anyway (AccountEmailService).
    if (user === undefined || user.email_verified_at !== null || !isActive(user)) return undefined;
    return renderEmail('email_verification', {
      to: message.recipient,
      name,
      appUrl: this.#settings.appUrl,
      token,
      ttlSeconds: this.#settings.verificationTtlSeconds,
    });
  }

  async #passwordReset(message: ClaimedMessage): Promise<OutgoingEmail | undefined> {
    const ttlSeconds = this.#settings.passwordResetTtlSeconds;
    const now = this.#clock();
    const issued = await withTransaction(this.#db, async (trx) => {
      const users = new UserRepository(trx);
      const found = await users.findByEmail(message.recipient);
      // Locked, so two resets of one account composed at once count each other's links.
      const user = found === undefined ? undefined : await users.lockForUpdate(found.id);
      if (user === undefined || !isActive(user)) return undefined;
      // Anyone can ask for an address's reset link, so a new one does not supersede the links
      // already in the owner's inbox; past a few live ones, nothing more is sent until one is
      // used (which supersedes the rest) or expires.
      const live = await new AccountTokenRepository(trx).countLive(user.id, 'password_reset', now);
      if (live >= MAX_LIVE_RESET_LINKS) return undefined;
      const token = await issueAccountToken(
        trx,
        { userId: user.id, purpose: 'password_reset', ttlSeconds, keepLive: true },
        now,
      );
      return { token, name: user.name };
    });
    if (issued === undefined) return undefined;
    return renderEmail('password_reset', {
      to: message.recipient,
      name: issued.name,
      appUrl: this.#settings.appUrl,
      token: issued.token,
      ttlSeconds,
    });
  }
}

/** Whether the account may sign in (a disabled one gets no reset link). */
export function isActive(user: Pick<UserRow, 'status'>): boolean {
  return user.status === 'active';
}
