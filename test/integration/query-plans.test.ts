import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { AccountTokenRepository } from '../../src/repositories/account-tokens.ts';
import { AuditEventRepository } from '../../src/repositories/audit-events.ts';
import { EmailChangeRepository } from '../../src/repositories/email-changes.ts';
import { EmailOutboxRepository } from '../../src/repositories/email-outbox.ts';
import { PRUNE_RULES, PruneRepository } from '../../src/repositories/prune.ts';
import { RefreshTokenRepository } from '../../src/repositories/refresh-tokens.ts';
import { SessionRepository } from '../../src/repositories/sessions.ts';
import { SigningKeyRepository } from '../../src/repositories/signing-keys.ts';
import { MfaChallengeRepository, MfaFactorRepository, RecoveryCodeRepository } from '../../src/repositories/mfa.ts';
import { PasskeyRepository, WebauthnChallengeRepository } from '../../src/repositories/passkeys.ts';
import { UserRepository } from '../../src/repositories/users.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';

/**
 * Every repository query, run for real against tables big enough (with statistics) that the
 * planner's choice means something, and its plan read back with EXPLAIN (FORMAT JSON). The SQL is
 * what the repositories send (captured through Kysely's query log), not a copy of it, so this
 * follows the code: a new repository method fails the coverage check until it is listed here with
 * the index it should use, and a query that would read a whole table fails its plan check.
 */

const USERS = 10_000;
const TOKENS_PER_USER = 4;
/** Every tenth user has asked for this many verification and reset emails. */
const ACCOUNT_TOKENS_PER_USER = 6;
const OUTBOX_MESSAGES = 5_000;
/** Audit events per user: a few logins, failures and session ends each. */
const AUDIT_EVENTS_PER_USER = 5;
/** Every this many users is an admin. */
const ADMIN_EVERY = 1_000;

interface Repositories {
  readonly users: UserRepository;
  readonly tokens: RefreshTokenRepository;
  readonly prune: PruneRepository;
  readonly accountTokens: AccountTokenRepository;
  readonly outbox: EmailOutboxRepository;
  readonly sessions: SessionRepository;
  readonly audit: AuditEventRepository;
  readonly emailChanges: EmailChangeRepository;
  readonly signingKeys: SigningKeyRepository;
  readonly mfaFactors: MfaFactorRepository;
  readonly recoveryCodes: RecoveryCodeRepository;
  readonly mfaChallenges: MfaChallengeRepository;
  readonly passkeys: PasskeyRepository;
  readonly webauthnChallenges: WebauthnChallengeRepository;
  /** Rows of the seeded data the calls look up. */
  readonly sample: Sample;
}

interface Sample {
  readonly userId: string;
  readonly email: string;
  readonly tokenId: string;
  readonly tokenHash: string;
  readonly familyId: string;
  readonly accountTokenId: string;
  readonly accountTokenHash: string;
  /** One of the sample user's email-change requests. */
  readonly emailChangeId: string;
  /** A message being sent, and the dispatcher holding its claim. */
  readonly outboxId: string;
  readonly claimedBy: string;
  /** One of the sample user's audit events, in the middle of their log. */
  readonly auditCursor: { readonly occurredAt: Date; readonly id: string };
  /** A keyset cursor in the middle of the users, newest first. */
  readonly middle: { readonly createdAt: Date; readonly id: string };
  /** A keyset cursor just before the oldest users: the last page. */
  readonly end: { readonly createdAt: Date; readonly id: string };
}

interface HotQuery {
  /** `Repository.method`, and what the call is when a method has several shapes. */
  readonly name: string;
  readonly call: (repositories: Repositories) => Promise<unknown>;
  /**
   * The index the query must read through (or one of several equally bounded ones, where
   * PostgreSQL versions choose differently); undefined for an INSERT, which reads none.
   */
  readonly index: string | readonly string[] | undefined;
  /**
   * Why the table is read whole by design: it holds a handful of rows however large the
   * installation grows (the signing keys), so a sequential scan is the right plan.
   */
  readonly tinyTable?: string;
}

const SIGNING_KEYS_ARE_FEW = 'signing_keys holds the active key, the next one and the retiring ones: a handful';

const NOW = new Date();

/** The index each pruning rule must read through; a new rule without one fails. */
const PRUNE_INDEXES: Readonly<Record<string, string>> = {
  'refresh_tokens.expired': 'refresh_tokens_expires_at_idx',
  'refresh_tokens.revoked': 'refresh_tokens_revoked_at_idx',
  'sessions.expired': 'sessions_expires_at_idx',
  'sessions.ended': 'sessions_ended_at_idx',
  'audit_events.expired': 'audit_events_occurred_at_idx',
  'account_tokens.expired': 'account_tokens_expires_at_idx',
  'email_outbox.done': 'email_outbox_done_created_at_idx',
  'email_changes.expired': 'email_changes_expires_at_idx',
  'oauth_flows.expired': 'oauth_flows_expires_at_idx',
  'oauth_exchange_codes.expired': 'oauth_exchange_codes_expires_at_idx',
};

const HOT_QUERIES: readonly HotQuery[] = [
  { name: 'UserRepository.findById', call: (r) => r.users.findById(r.sample.userId), index: 'users_pkey' },
  {
    name: 'UserRepository.findByEmail',
    call: (r) => r.users.findByEmail(r.sample.email),
    index: 'users_email_unique',
  },
  // Authentication when the caches cannot answer: the user by id, the token's session by id.
  {
    name: 'UserRepository.findWithSession',
    call: (r) => r.users.findWithSession(r.sample.userId, r.sample.familyId),
    // PostgreSQL 18 finds the session by its key; 15 through the user's sessions (a handful per
    // user, after users_pkey found the one user). Either reads a few index entries.
    index: ['sessions_pkey', 'sessions_user_id_created_at_idx'],
  },
  {
    name: 'UserRepository.lockForUpdate',
    call: (r) => r.users.lockForUpdate(r.sample.userId),
    index: 'users_pkey',
  },
  {
    name: 'UserRepository.updateLastLogin',
    call: (r) => r.users.updateLastLogin(r.sample.userId, NOW),
    index: 'users_pkey',
  },
  {
    name: 'UserRepository.updatePasswordHash',
    call: (r) => r.users.updatePasswordHash(r.sample.userId, 'new hash', NOW),
    index: 'users_pkey',
  },
  {
    name: 'UserRepository.changeEmail',
    call: (r) => r.users.changeEmail(r.sample.userId, 'moved@example.com', NOW, NOW),
    index: 'users_pkey',
  },
  {
    name: 'UserRepository.markEmailVerified',
    call: (r) => r.users.markEmailVerified(r.sample.userId, NOW),
    index: 'users_pkey',
  },
  { name: 'UserRepository.list (first page)', call: (r) => r.users.list(50), index: 'users_created_at_id_idx' },
  {
    name: 'UserRepository.list (middle page)',
    call: (r) => r.users.list(50, r.sample.middle),
    index: 'users_created_at_id_idx',
  },
  {
    name: 'UserRepository.list (last page)',
    call: (r) => r.users.list(50, r.sample.end),
    index: 'users_created_at_id_idx',
  },
  // Filtered listings: a prefix of the email or the name through the prefix indexes; role and
  // status filters keep the keyset order's index.
  {
    name: 'UserRepository.list (q)',
    call: (r) => r.users.list(50, undefined, { q: 'user4999' }),
    index: 'users_email_prefix_idx',
  },
  {
    name: 'UserRepository.list (role and status)',
    call: (r) => r.users.list(50, r.sample.middle, { role: 'user', status: 'active' }),
    index: 'users_created_at_id_idx',
  },
  {
    name: 'UserRepository.update',
    call: (r) => r.users.update(r.sample.userId, { name: 'Renamed', status: 'disabled' }, NOW),
    index: 'users_pkey',
  },
  {
    name: 'UserRepository.lockActiveAdmins',
    call: (r) => r.users.lockActiveAdmins(),
    index: 'users_active_admins_idx',
  },
  { name: 'UserRepository.delete', call: (r) => r.users.delete(r.sample.userId), index: 'users_pkey' },
  {
    name: 'UserRepository.create',
    call: (r) => r.users.create({ email: 'new@example.com', name: 'New', passwordHash: 'hash' }),
    index: undefined,
  },
  {
    name: 'RefreshTokenRepository.findByHash',
    call: (r) => r.tokens.findByHash(r.sample.tokenHash),
    index: 'refresh_tokens_token_hash_unique',
  },
  {
    name: 'RefreshTokenRepository.markRotated',
    call: (r) => r.tokens.markRotated(r.sample.tokenId, NOW),
    index: 'refresh_tokens_pkey',
  },
  {
    name: 'RefreshTokenRepository.revokeFamily',
    call: (r) => r.tokens.revokeFamily(r.sample.familyId, NOW),
    index: 'refresh_tokens_family_id_idx',
  },
  {
    name: 'RefreshTokenRepository.revokeAllForUser',
    call: (r) => r.tokens.revokeAllForUser(r.sample.userId, NOW),
    index: 'refresh_tokens_user_id_idx',
  },
  {
    name: 'RefreshTokenRepository.revokeAllForUserExcept',
    call: (r) => r.tokens.revokeAllForUserExcept(r.sample.userId, r.sample.familyId, NOW),
    index: 'refresh_tokens_user_id_idx',
  },
  {
    name: 'RefreshTokenRepository.insert',
    call: (r) =>
      r.tokens.insert({
        userId: r.sample.userId,
        familyId: r.sample.familyId,
        tokenHash: 'fresh-token-hash',
        expiresAt: NOW,
      }),
    index: undefined,
  },
  {
    name: 'AccountTokenRepository.insert',
    call: (r) =>
      r.accountTokens.insert({
        userId: r.sample.userId,
        purpose: 'password_reset',
        tokenHash: 'fresh-account-token-hash',
        expiresAt: NOW,
      }),
    index: undefined,
  },
  {
    name: 'AccountTokenRepository.supersedeLive',
    call: (r) => r.accountTokens.supersedeLive(r.sample.userId, 'password_reset', NOW),
    index: 'account_tokens_live_idx',
  },
  {
    name: 'AccountTokenRepository.countLive',
    call: (r) => r.accountTokens.countLive(r.sample.userId, 'password_reset', NOW),
    index: 'account_tokens_live_idx',
  },
  {
    name: 'AccountTokenRepository.findByHash',
    call: (r) => r.accountTokens.findByHash(r.sample.accountTokenHash),
    index: 'account_tokens_token_hash_unique',
  },
  {
    name: 'AccountTokenRepository.lockByHash',
    call: (r) => r.accountTokens.lockByHash(r.sample.accountTokenHash),
    index: 'account_tokens_token_hash_unique',
  },
  {
    name: 'AccountTokenRepository.markUsed',
    call: (r) => r.accountTokens.markUsed(r.sample.accountTokenId, NOW),
    index: 'account_tokens_pkey',
  },
  {
    name: 'EmailOutboxRepository.enqueue',
    call: (r) =>
      r.outbox.enqueue({ userId: r.sample.userId, recipient: r.sample.email, template: 'welcome', data: {} }),
    index: undefined,
  },
  // A reset request's message: its owner is the active user the email names, found by the email index.
  {
    name: 'EmailOutboxRepository.enqueueForAddress',
    call: (r) => r.outbox.enqueueForAddress(r.sample.email, 'password_reset'),
    index: 'users_email_unique',
  },
  {
    name: 'EmailOutboxRepository.discardUnowned',
    call: (r) => r.outbox.discardUnowned('00000000-0000-7000-8000-000000000009'),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.queuedSince',
    call: (r) => r.outbox.queuedSince(r.sample.userId, 'notice_account_exists', NOW),
    index: 'email_outbox_user_id_idx',
  },
  {
    name: 'EmailChangeRepository.insert',
    call: (r) =>
      r.emailChanges.insert({
        userId: r.sample.userId,
        newEmail: 'moved@example.com',
        sessionId: null,
        currentRequired: true,
        expiresAt: NOW,
      }),
    index: undefined,
  },
  {
    name: 'EmailChangeRepository.supersedePending',
    call: (r) => r.emailChanges.supersedePending(r.sample.userId, NOW),
    index: 'email_changes_user_id_idx',
  },
  {
    name: 'EmailChangeRepository.lockById',
    call: (r) => r.emailChanges.lockById(r.sample.emailChangeId),
    index: 'email_changes_pkey',
  },
  {
    name: 'EmailChangeRepository.markConfirmed',
    call: (r) => r.emailChanges.markConfirmed(r.sample.emailChangeId, 'new', NOW),
    index: 'email_changes_pkey',
  },
  {
    name: 'EmailChangeRepository.markCompleted',
    call: (r) => r.emailChanges.markCompleted(r.sample.emailChangeId, NOW),
    index: 'email_changes_pkey',
  },
  // The dispatcher's claim: due pending messages and expired leases, each from its partial index.
  {
    name: 'EmailOutboxRepository.claimDue',
    call: (r) => r.outbox.claimDue({ limit: 5, now: NOW, leaseMs: 60_000, claimedBy: 'query-plans:1' }),
    index: 'email_outbox_due_idx',
  },
  {
    name: 'EmailOutboxRepository.markSent',
    call: (r) => r.outbox.markSent(r.sample.outboxId, r.sample.claimedBy, NOW),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.markSkipped',
    call: (r) => r.outbox.markSkipped(r.sample.outboxId, r.sample.claimedBy, NOW, 'no longer applies'),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.scheduleRetry',
    call: (r) => r.outbox.scheduleRetry(r.sample.outboxId, r.sample.claimedBy, NOW, 'smtp 451'),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.markFailed',
    call: (r) => r.outbox.markFailed(r.sample.outboxId, r.sample.claimedBy, 'smtp 550'),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.release',
    call: (r) => r.outbox.release(r.sample.outboxId, r.sample.claimedBy, NOW),
    index: 'email_outbox_pkey',
  },
  {
    name: 'EmailOutboxRepository.stats',
    call: (r) => r.outbox.stats(),
    index: 'email_outbox_due_idx',
  },
  {
    name: 'SessionRepository.insert',
    call: (r) =>
      r.sessions.insert({
        id: '00000000-0000-4000-8000-000000000001',
        userId: r.sample.userId,
        createdAt: NOW,
        expiresAt: NOW,
        userAgent: 'curl/8',
        ipAddress: '127.0.0.1',
      }),
    index: undefined,
  },
  {
    name: 'SessionRepository.listLive',
    call: (r) => r.sessions.listLive(r.sample.userId, NOW),
    index: 'sessions_user_id_created_at_idx',
  },
  {
    name: 'SessionRepository.userAgentOf',
    call: (r) => r.sessions.userAgentOf(r.sample.familyId),
    index: 'sessions_pkey',
  },
  { name: 'SessionRepository.touch', call: (r) => r.sessions.touch(r.sample.familyId, NOW), index: 'sessions_pkey' },
  {
    name: 'SessionRepository.assurance',
    call: (r) => r.sessions.assurance(r.sample.familyId),
    index: 'sessions_pkey',
  },
  {
    name: 'SigningKeyRepository.listAll',
    call: (r) => r.signingKeys.listAll(),
    index: undefined,
    tinyTable: SIGNING_KEYS_ARE_FEW,
  },
  {
    name: 'SigningKeyRepository.insert',
    call: (r) =>
      r.signingKeys.insert({
        kid: 'a-key',
        algorithm: 'EdDSA',
        public_jwk: '{}',
        private_jwe: 'sealed',
        created_at: NOW,
        signs_from: NOW,
      }),
    index: undefined,
  },
  {
    name: 'SigningKeyRepository.deleteRetired',
    call: (r) => r.signingKeys.deleteRetired(['a-key']),
    index: undefined,
    tinyTable: SIGNING_KEYS_ARE_FEW,
  },
  {
    name: 'MfaFactorRepository.insert',
    call: (r) =>
      r.mfaFactors.insert({
        id: '00000000-0000-7000-8000-000000000001',
        user_id: r.sample.userId,
        type: 'totp',
        name: 'phone',
        secret_jwe: 'sealed',
        created_at: NOW,
      }),
    index: undefined,
  },
  {
    name: 'MfaFactorRepository.listOfUser',
    call: (r) => r.mfaFactors.listOfUser(r.sample.userId),
    index: 'mfa_factors_user_id_idx',
  },
  {
    name: 'MfaFactorRepository.lockOfUser',
    call: (r) => r.mfaFactors.lockOfUser(r.sample.userId, r.sample.userId),
    index: 'mfa_factors_pkey',
  },
  {
    name: 'MfaFactorRepository.recordUse',
    call: (r) => r.mfaFactors.recordUse(r.sample.userId, 1, NOW),
    index: 'mfa_factors_pkey',
  },
  {
    name: 'MfaFactorRepository.delete',
    call: (r) => r.mfaFactors.delete(r.sample.userId, r.sample.userId),
    index: 'mfa_factors_pkey',
  },
  {
    name: 'MfaFactorRepository.deleteOfUser',
    call: (r) => r.mfaFactors.deleteOfUser(r.sample.userId, NOW),
    index: 'mfa_factors_user_id_idx',
  },
  {
    name: 'RecoveryCodeRepository.replace (delete, then insert)',
    call: (r) => r.recoveryCodes.replace(r.sample.userId, [], NOW, []),
    index: 'mfa_recovery_codes_user_id_code_hash_idx',
  },
  {
    name: 'RecoveryCodeRepository.use',
    call: (r) => r.recoveryCodes.use(r.sample.userId, 'a-hash', NOW),
    index: 'mfa_recovery_codes_user_id_code_hash_idx',
  },
  {
    name: 'RecoveryCodeRepository.countUnused',
    call: (r) => r.recoveryCodes.countUnused(r.sample.userId),
    index: 'mfa_recovery_codes_user_id_code_hash_idx',
  },
  {
    name: 'MfaChallengeRepository.insert',
    call: (r) =>
      r.mfaChallenges.insert({
        id: '00000000-0000-7000-8000-000000000002',
        user_id: r.sample.userId,
        token_hash: 'a-hash',
        first_factor: 'pwd',
        credential_stamp: 'a-stamp',
        created_at: NOW,
        expires_at: NOW,
      }),
    index: undefined,
  },
  {
    name: 'MfaChallengeRepository.lockByHash',
    call: (r) => r.mfaChallenges.lockByHash('a-hash'),
    index: 'mfa_challenges_token_hash_key',
  },
  {
    name: 'MfaChallengeRepository.userOf',
    call: (r) => r.mfaChallenges.userOf('a-hash'),
    index: 'mfa_challenges_token_hash_key',
  },
  {
    name: 'MfaChallengeRepository.markUsed',
    call: (r) => r.mfaChallenges.markUsed(r.sample.userId, NOW),
    index: 'mfa_challenges_pkey',
  },
  {
    name: 'MfaChallengeRepository.deleteSpent',
    call: (r) => r.mfaChallenges.deleteSpent(r.sample.userId, NOW),
    index: 'mfa_challenges_user_id_idx',
  },
  {
    name: 'UserRepository.setMfaEnabled',
    call: (r) => r.users.setMfaEnabled(r.sample.userId, true),
    index: 'users_pkey',
  },
  {
    name: 'PasskeyRepository.insert',
    call: (r) =>
      r.passkeys.insert({
        id: '00000000-0000-7000-8000-000000000003',
        user_id: r.sample.userId,
        credential_id: 'a-credential',
        public_key: Buffer.from('a-key'),
        backed_up: false,
        device_type: 'singleDevice',
        name: 'laptop',
        created_at: NOW,
      }),
    index: undefined,
  },
  {
    name: 'PasskeyRepository.listOfUser',
    call: (r) => r.passkeys.listOfUser(r.sample.userId),
    index: 'passkey_credentials_user_id_idx',
  },
  {
    name: 'PasskeyRepository.findByCredentialId',
    call: (r) => r.passkeys.findByCredentialId('a-credential'),
    index: 'passkey_credentials_credential_id_key',
  },
  {
    name: 'PasskeyRepository.lockByCredentialId',
    call: (r) => r.passkeys.lockByCredentialId('a-credential'),
    index: 'passkey_credentials_credential_id_key',
  },
  {
    name: 'PasskeyRepository.recordUse',
    call: (r) => r.passkeys.recordUse(r.sample.userId, 1, NOW),
    index: 'passkey_credentials_pkey',
  },
  {
    name: 'PasskeyRepository.rename',
    call: (r) => r.passkeys.rename(r.sample.userId, r.sample.userId, 'laptop'),
    index: 'passkey_credentials_pkey',
  },
  {
    name: 'PasskeyRepository.delete',
    call: (r) => r.passkeys.delete(r.sample.userId, r.sample.userId),
    index: 'passkey_credentials_pkey',
  },
  {
    name: 'PasskeyRepository.deleteOfUser',
    call: (r) => r.passkeys.deleteOfUser(r.sample.userId),
    index: 'passkey_credentials_user_id_idx',
  },
  {
    name: 'WebauthnChallengeRepository.insert',
    call: (r) =>
      r.webauthnChallenges.insert({
        id: '00000000-0000-7000-8000-000000000004',
        challenge: 'a-challenge',
        ceremony: 'authentication',
        purpose: 'login',
        created_at: NOW,
        expires_at: NOW,
      }),
    index: undefined,
  },
  {
    name: 'WebauthnChallengeRepository.consume',
    call: (r) => r.webauthnChallenges.consume(r.sample.userId, NOW),
    index: 'webauthn_challenges_pkey',
  },
  {
    name: 'WebauthnChallengeRepository.consumeByValue',
    call: (r) => r.webauthnChallenges.consumeByValue('a-challenge', NOW),
    index: 'webauthn_challenges_challenge_key',
  },
  {
    name: 'WebauthnChallengeRepository.deleteExpired',
    call: (r) => r.webauthnChallenges.deleteExpired(NOW),
    index: 'webauthn_challenges_expires_at_idx',
  },
  {
    name: 'SessionRepository.setAssurance',
    call: (r) => r.sessions.setAssurance(r.sample.familyId, 'aal2', ['hwk']),
    index: 'sessions_pkey',
  },
  {
    name: 'SessionRepository.raiseAssurance',
    call: (r) => r.sessions.raiseAssurance(r.sample.familyId, r.sample.userId, 'otp', NOW),
    index: 'sessions_pkey',
  },
  { name: 'SigningKeyRepository.lockForCreation', call: (r) => r.signingKeys.lockForCreation(), index: undefined },
  {
    name: 'SessionRepository.end',
    call: (r) => r.sessions.end(r.sample.familyId, r.sample.userId, NOW, 'logout'),
    index: 'sessions_pkey',
  },
  {
    name: 'SessionRepository.endAllOfUser',
    call: (r) => r.sessions.endAllOfUser(r.sample.userId, NOW, 'user_disabled'),
    index: 'sessions_user_id_created_at_idx',
  },
  {
    name: 'SessionRepository.endOthersOfUser',
    call: (r) => r.sessions.endOthersOfUser(r.sample.userId, r.sample.familyId, NOW, 'password_changed'),
    index: 'sessions_user_id_created_at_idx',
  },
  {
    name: 'AuditEventRepository.append',
    call: (r) =>
      r.audit.append({
        id: '00000000-0000-7000-8000-000000000001',
        type: 'login.succeeded',
        userId: r.sample.userId,
        actorId: r.sample.userId,
        sessionId: r.sample.familyId,
        ipAddress: '127.0.0.1',
        userAgent: null,
        details: {},
      }),
    index: undefined,
  },
  // An insert whose row comes from the user the email names: the email index finds them.
  {
    name: 'AuditEventRepository.appendForEmail',
    call: (r) =>
      r.audit.appendForEmail(
        r.sample.email,
        {
          id: '00000000-0000-7000-8000-000000000002',
          type: 'password.reset_requested',
          ipAddress: null,
          userAgent: null,
          details: {},
        },
        600,
      ),
    index: 'users_email_unique',
  },
  // The cap on a user's own profile changes: their events of the last day, from the user's index.
  {
    name: 'AuditEventRepository.countRecent',
    call: (r) => r.audit.countRecent(r.sample.userId, r.sample.userId, 'user.updated', 86_400),
    index: 'audit_events_user_id_occurred_at_idx',
  },
  {
    name: 'AuditEventRepository.listForUser (first page)',
    call: (r) => r.audit.listForUser(r.sample.userId, 21),
    index: 'audit_events_user_id_occurred_at_idx',
  },
  {
    name: 'AuditEventRepository.listForUser (next page)',
    call: (r) => r.audit.listForUser(r.sample.userId, 21, r.sample.auditCursor),
    index: 'audit_events_user_id_occurred_at_idx',
  },
  // The maintenance job's deletes, one per rule (src/repositories/prune.ts), by the index of the
  // column the rule's cutoff applies to.
  ...PRUNE_RULES.map((rule) => ({
    name: `PruneRepository.pruneBatch (${rule.name})`,
    call: (r: Repositories) =>
      r.prune.pruneBatch(
        rule,
        rule.cutoff(NOW, {
          refreshTokenGraceSeconds: 7 * 86_400,
          auditRetentionDays: 365,
          emailOutboxRetentionDays: 30,
        }),
        1000,
      ),
    index: PRUNE_INDEXES[rule.name] ?? `an index for ${rule.name}`,
  })),
];

/** The repository classes this file checks; every class in src/repositories/ must be one of them. */
const REPOSITORIES: Readonly<Record<string, { readonly prototype: object }>> = {
  UserRepository,
  RefreshTokenRepository,
  PruneRepository,
  AccountTokenRepository,
  EmailOutboxRepository,
  SessionRepository,
  AuditEventRepository,
  EmailChangeRepository,
  SigningKeyRepository,
  MfaFactorRepository,
  RecoveryCodeRepository,
  MfaChallengeRepository,
  PasskeyRepository,
  WebauthnChallengeRepository,
};

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly 'Index Name'?: string;
  readonly Plans?: readonly PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

const INDEX_SCANS = new Set(['Index Scan', 'Index Only Scan', 'Bitmap Index Scan']);

/** Fills users, refresh tokens, account tokens and the outbox with generate_series (one statement each) and gathers statistics. */
async function seed(database: Kysely<DB>): Promise<void> {
  // Bulk loading may outlast the pool's statement timeout on a busy machine; it is not what is tested.
  await database.transaction().execute(async (db) => {
    await sql`set local statement_timeout = 0`.execute(db);
    await fill(db);
  });
  await sql`analyze users, refresh_tokens, account_tokens, email_outbox, sessions, audit_events, email_changes, webauthn_challenges, oauth_flows, oauth_exchange_codes`.execute(
    database,
  );
}

async function fill(db: Kysely<DB>): Promise<void> {
  await sql`
    insert into users (email, password_hash, name, created_at)
    select 'user' || g || '@example.com', 'hash', 'User ' || g, now() - g * interval '1 second'
    from generate_series(1, ${USERS}) as g`.execute(db);
  // Families of two tokens each; half the tokens rotated, some expired and some revoked long ago,
  // as a live deployment's would be between two maintenance runs.
  await sql`
    insert into refresh_tokens (user_id, family_id, token_hash, expires_at, rotated_at, revoked_at)
    select u.id, md5(u.id::text || (g / 2))::uuid, md5(u.id::text || g),
           now() + (g * 10 - 15) * interval '1 day',
           case when g % 2 = 0 then now() end,
           case when g = 3 and u.email like '%7@example.com' then now() - interval '9 days' end
    from users as u cross join generate_series(0, ${TOKENS_PER_USER - 1}) as g`.execute(db);
  // A few admins, each the kind the last-admin check locks (active) or passes over (disabled).
  await sql`
    update users set role = 'admin', status = case when created_at < now() - interval '5000 seconds' then 'disabled' else 'active' end
    where email like ${`%${ADMIN_EVERY}@example.com`} or email like ${`%${ADMIN_EVERY / 2}@example.com`}`.execute(db);
  // Every family is a session; those of revoked tokens ended, some long ago.
  await sql`
    insert into sessions (id, user_id, created_at, last_used_at, expires_at, ended_at, end_reason)
    select family_id, min(user_id::text)::uuid, min(created_at), max(created_at), max(expires_at),
           max(revoked_at), case when max(revoked_at) is not null then 'revoked' end
    from refresh_tokens group by family_id`.execute(db);
  // Each user's log: events a second apart, oldest a year and more ago for some.
  await sql`
    insert into audit_events (type, occurred_at, user_id, actor_id, details)
    select case when g % 2 = 0 then 'login.succeeded' else 'login.failed' end,
           now() - (g * 100 + length(u.email)) * interval '1 day' / 10, u.id, u.id, '{}'::jsonb
    from users as u cross join generate_series(0, ${AUDIT_EVENTS_PER_USER - 1}) as g`.execute(db);
  // Every tenth user asked for links several times: each request superseded the one before, and
  // the last of each purpose was used, so a user's live tokens are few among many dead ones.
  await sql`
    insert into account_tokens (user_id, purpose, token_hash, expires_at, used_at, superseded_at)
    select u.id, case when g % 2 = 0 then 'email_verification' else 'password_reset' end,
           md5('account' || u.id::text || g), now() + interval '1 hour',
           case when g >= ${ACCOUNT_TOKENS_PER_USER - 2} and u.email like '%70@example.com' then now() end,
           case when g < ${ACCOUNT_TOKENS_PER_USER - 2} then now() end
    from users as u cross join generate_series(0, ${ACCOUNT_TOKENS_PER_USER - 1}) as g
    where u.email like '%0@example.com'`.execute(db);
  // Every tenth user asked to change their address a few times: all but the last superseded.
  await sql`
    insert into email_changes (user_id, new_email, current_required, created_at, expires_at, superseded_at)
    select u.id, 'moved' || g || '.' || u.email, true, now() - (3 - g) * interval '1 hour',
           now() + (21 + g) * interval '1 hour', case when g < 2 then now() end
    from users as u cross join generate_series(0, 2) as g
    where u.email like '%0@example.com'`.execute(db);
  // Passkey ceremonies under way: every tenth user has a live challenge or two (expired ones are
  // deleted as new ones are handed out, so few linger).
  await sql`
    insert into webauthn_challenges (id, challenge, ceremony, purpose, user_id, created_at, expires_at)
    select gen_random_uuid(), md5(u.id::text || g), 'authentication', 'login', u.id,
           now() - g * interval '1 minute', now() + (5 - g) * interval '1 minute'
    from users as u cross join generate_series(0, 1) as g
    where u.email like '%0@example.com'`.execute(db);
  // Provider sign-ins under way: flows (10 minutes) and exchange codes (60 seconds) of every tenth
  // user. Few expired ones linger: each new flow deletes a batch of them.
  await sql`
    insert into oauth_flows (id, state_hash, browser_hash, provider, purpose, nonce, code_verifier, redirect_to,
                             created_at, expires_at)
    select gen_random_uuid(), md5('state' || u.id::text || g), md5('browser' || u.id::text), 'google', 'sign_in',
           md5('nonce' || g), md5('verifier' || g), 'https://app.example.com/', now() - g * interval '1 minute',
           now() + (6 - g) * interval '1 minute'
    from users as u cross join generate_series(0, 7) as g
    where u.email like '%0@example.com'`.execute(db);
  await sql`
    insert into oauth_exchange_codes (id, code_hash, user_id, provider, created_at, expires_at)
    select gen_random_uuid(), md5('code' || u.id::text || g), u.id, 'google', now() - g * interval '10 seconds',
           now() + (6 - g) * interval '10 seconds'
    from users as u cross join generate_series(0, 7) as g
    where u.email like '%0@example.com'`.execute(db);
  // Mostly sent messages (their data dropped), a few pending (due or backing off), a few being
  // sent (one lease long expired) and a few given up, as between two dispatcher runs.
  await sql`
    insert into email_outbox (user_id, recipient, template, data, state, attempts, next_attempt_at,
                              claimed_at, claimed_by, sent_at, created_at)
    select u.id, u.email, 'email_verification',
           case when s.state in ('pending', 'sending') then '{"token":"t"}'::jsonb end,
           s.state, case when s.state = 'pending' then g % 3 else 1 end,
           now() + (g % 7 - 3) * interval '1 minute',
           case when s.state = 'sending' then now() - (g % 3) * interval '1 hour' end,
           case when s.state = 'sending' then 'host:' || g % 4 end,
           case when s.state in ('sent', 'skipped') then now() - g * interval '1 second' end,
           now() - g * interval '1 second'
    from generate_series(1, ${OUTBOX_MESSAGES}) as g
    join users as u on u.email = 'user' || (g * 7 % ${USERS} + 1) || '@example.com'
    cross join lateral (select case
      when g % 100 < 3 then 'pending'
      when g % 100 < 5 then 'sending'
      when g % 100 = 5 then 'failed'
      when g % 100 = 6 then 'skipped'
      else 'sent' end as state) as s`.execute(db);
}

async function sampleOf(db: Kysely<DB>): Promise<Sample> {
  const user = await db
    .selectFrom('users')
    .select(['id', 'email'])
    .where('email', '=', `user${USERS / 2}@example.com`)
    .executeTakeFirstOrThrow();
  const token = await db
    .selectFrom('refresh_tokens')
    .select(['id', 'token_hash', 'family_id'])
    .where('user_id', '=', user.id)
    .executeTakeFirstOrThrow();
  const accountToken = await db
    .selectFrom('account_tokens')
    .select(['id', 'token_hash'])
    .where('user_id', '=', user.id)
    .where('used_at', 'is', null)
    .where('superseded_at', 'is', null)
    .executeTakeFirstOrThrow();
  const emailChange = await db
    .selectFrom('email_changes')
    .select('id')
    .where('user_id', '=', user.id)
    .limit(1)
    .executeTakeFirstOrThrow();
  const message = await db
    .selectFrom('email_outbox')
    .select(['id', 'claimed_by'])
    .where('state', '=', 'sending')
    .executeTakeFirstOrThrow();
  const auditEvent = await db
    .selectFrom('audit_events')
    .select(['occurred_at', 'id'])
    .where('user_id', '=', user.id)
    .orderBy('occurred_at', 'desc')
    .offset(2)
    .limit(1)
    .executeTakeFirstOrThrow();
  const cursorAt = async (offset: number) => {
    const row = await db
      .selectFrom('users')
      .select(['created_at', 'id'])
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .offset(offset)
      .limit(1)
      .executeTakeFirstOrThrow();
    return { createdAt: row.created_at, id: row.id };
  };
  return {
    userId: user.id,
    email: user.email,
    tokenId: token.id,
    tokenHash: token.token_hash,
    familyId: token.family_id,
    accountTokenId: accountToken.id,
    accountTokenHash: accountToken.token_hash,
    emailChangeId: emailChange.id,
    auditCursor: { occurredAt: auditEvent.occurred_at, id: auditEvent.id },
    outboxId: message.id,
    claimedBy: message.claimed_by ?? 'unclaimed',
    middle: await cursorAt(USERS / 2),
    end: await cursorAt(USERS - 30),
  };
}

describe('query plans at scale', () => {
  test('every public repository method is listed here with the index it must use', async () => {
    const listed = new Set(HOT_QUERIES.map((query) => query.name.split(' ')[0]));
    const methods = Object.entries(REPOSITORIES).flatMap(([name, repository]) =>
      Object.getOwnPropertyNames(repository.prototype)
        .filter((method) => method !== 'constructor')
        .map((method) => `${name}.${method}`),
    );
    expect(methods.filter((method) => !listed.has(method))).toEqual([]);

    // A repository module added later is covered too, or this fails until it is.
    const dir = path.resolve(import.meta.dirname, '../../src/repositories');
    for (const file of (await readdir(dir)).filter((name) => name.endsWith('.ts'))) {
      const exports = (await import(path.join(dir, file))) as Record<string, unknown>;
      const classes = Object.keys(exports).filter(
        (name) => name.endsWith('Repository') && typeof exports[name] === 'function',
      );
      for (const name of classes) expect(REPOSITORIES, `${file} exports ${name}`).toHaveProperty(name);
    }
  });

  test('each hot repository query reads through its index, with no sequential scan', async ({ onTestFinished }) => {
    const database = await isolatedDatabase(onTestFinished);
    await seed(database.db);
    const sample = await sampleOf(database.db);

    // The repositories run on a Kysely that logs every compiled query (SQL and parameters); the
    // pool is the fixture's, closed with it.
    let captured: CompiledQuery[] = [];
    const capturing = new Kysely<DB>({
      dialect: new PostgresDialect({ pool: database.pool }),
      log: (event) => {
        if (event.level === 'query') captured.push(event.query);
      },
    });

    const failures: string[] = [];
    for (const query of HOT_QUERIES) {
      // In a transaction that is rolled back, so a delete or an update leaves the next query its rows.
      const trx = await capturing.startTransaction().execute();
      captured = [];
      try {
        await query.call({
          users: new UserRepository(trx),
          tokens: new RefreshTokenRepository(trx),
          prune: new PruneRepository(trx),
          accountTokens: new AccountTokenRepository(trx),
          outbox: new EmailOutboxRepository(trx),
          sessions: new SessionRepository(trx),
          audit: new AuditEventRepository(trx),
          emailChanges: new EmailChangeRepository(trx),
          signingKeys: new SigningKeyRepository(trx),
          mfaFactors: new MfaFactorRepository(trx),
          recoveryCodes: new RecoveryCodeRepository(trx),
          mfaChallenges: new MfaChallengeRepository(trx),
          passkeys: new PasskeyRepository(trx),
          webauthnChallenges: new WebauthnChallengeRepository(trx),
          sample,
        });
        expect(captured, `${query.name} sent one statement`).toHaveLength(1);
        const [statement] = captured;
        if (statement === undefined) continue;
        const explained = await trx.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
          CompiledQuery.raw(`explain (format json) ${statement.sql}`, [...statement.parameters]),
        );
        const plan = explained.rows[0]?.['QUERY PLAN'][0].Plan;
        expect(plan, `${query.name} has a plan`).toBeDefined();
        if (plan === undefined) continue;
        const nodes = nodesOf(plan);
        const shape = nodes
          .map((node) => [node['Node Type'], node['Index Name'] ?? node['Relation Name']].filter(Boolean).join(' on '))
          .join(' > ');
        if (query.tinyTable === undefined && nodes.some((node) => node['Node Type'] === 'Seq Scan')) {
          failures.push(`${query.name}: sequential scan (${shape})\n    ${statement.sql}`);
        }
        const accepted: readonly string[] | undefined = typeof query.index === 'string' ? [query.index] : query.index;
        if (
          accepted !== undefined &&
          !nodes.some((node) => INDEX_SCANS.has(node['Node Type']) && accepted.includes(node['Index Name'] ?? ''))
        ) {
          failures.push(`${query.name}: does not use ${accepted.join(' or ')} (${shape})\n    ${statement.sql}`);
        }
        if (
          query.index === undefined &&
          query.tinyTable === undefined &&
          nodes.some((node) => node['Node Type'].includes('Scan'))
        ) {
          failures.push(`${query.name}: an insert that scans (${shape})`);
        }
      } finally {
        await trx.rollback().execute();
      }
    }
    expect(failures).toEqual([]);

    // The check can fail: on the same data, a lookup by an unindexed column is a sequential scan.
    const unindexed = await database.db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      CompiledQuery.raw(`explain (format json) select * from users where name = $1`, ['User 7']),
    );
    const control = unindexed.rows[0]?.['QUERY PLAN'][0].Plan;
    expect(control === undefined ? [] : nodesOf(control).map((node) => node['Node Type'])).toContain('Seq Scan');
  });
});
