import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from './platform/db/database.ts';
import type { ReadDatabase } from './platform/db/replicas.ts';
import { AccountEmailService } from './account-emails/service.ts';
import { AuditLog } from './audit/service.ts';
import { AuthService, type AuthenticatedUser, type AuthEvents } from './auth/service.ts';
import { DeviceTokens } from './auth/device-tokens.ts';
import { EmailChangeService } from './account-emails/email-change.ts';
import { queueVerificationEmail, type AccountEmailSettings } from './platform/email/outbox.ts';
import { MfaChallengeIssuer, MfaService, type MfaEvents } from './mfa/service.ts';
import { PasskeyService, type RelyingParty } from './passkeys/service.ts';
import type { PasswordHasher } from './auth/passwords.ts';
import type { SecretBox } from './platform/secret-box.ts';
import type { PrincipalCache } from './sessions/principal-cache.ts';
import { SessionService, type LiveSession, type SessionEvents } from './sessions/service.ts';
import type { AccessTokenSigner } from './keys/tokens.ts';
import { UserAdministration, type AdminEvents } from './users/admin.ts';
import { UserService } from './users/service.ts';

/** The application's services, built once per app by {@link createServices}. */
export interface Services {
  readonly auth: AuthService;
  /** Second factors; absent without an encryption key for their secrets (JWT_ALGORITHM=HS256 and none set). */
  readonly mfa: MfaService | undefined;
  /** Passkeys; absent when PASSKEYS_ENABLED=false. */
  readonly passkeys: PasskeyService | undefined;
  readonly users: UserService;
  readonly accountEmails: AccountEmailService;
  readonly emailChange: EmailChangeService;
  readonly sessions: SessionService;
  readonly userAdmin: UserAdministration;
  readonly audit: AuditLog;
  /** Device tokens handed out by sign-ins (see `DeviceTokens`). */
  readonly devices: DeviceTokens;
}

export interface ServiceDeps {
  readonly db: Kysely<DB>;
  /** The audit log, shared with the abuse controls that report to it. */
  readonly audit?: AuditLog | undefined;
  /** Seals TOTP secrets under ENCRYPTION_KEY. */
  readonly secretBox?: SecretBox | undefined;
  /** The issuer authenticator apps show beside the account. */
  readonly mfaIssuer?: string | undefined;
  readonly mfaEvents?: MfaEvents | undefined;
  /** The WebAuthn relying party; no passkeys without one. */
  readonly relyingParty?: RelyingParty | undefined;
  /** Reads that may be slightly stale (the user listing); `db` when absent. */
  readonly readDb?: ReadDatabase | undefined;
  readonly hasher: PasswordHasher;
  readonly signer: AccessTokenSigner;
  readonly clock: () => Date;
  readonly refreshTokenTtlSeconds: number;
  /** REFRESH_REUSE_INTERVAL_SECONDS; 0 (no reuse interval) when absent. */
  readonly refreshReuseIntervalSeconds?: number | undefined;
  /**
   * Keys deriving a refresh token's successor (see `AuthServiceDeps.refreshSuccessorKeys`): the
   * same on every instance, so buildApp derives them from the JWT secrets. Absent, a random key
   * of this process (one instance only: tests).
   */
  readonly refreshSuccessorKeys?: readonly [string, ...string[]] | undefined;
  /** Keys signing device tokens, the same on every instance; absent, a random key of this process. */
  readonly deviceTokenKeys?: readonly [string, ...string[]] | undefined;
  readonly authEvents?: AuthEvents | undefined;
  readonly principals?: PrincipalCache<AuthenticatedUser> | undefined;
  /** Live sessions (`sid` → owner), kept fresh by the change feed like `principals`. */
  readonly liveSessions?: PrincipalCache<LiveSession> | undefined;
  readonly sessionEvents?: SessionEvents | undefined;
  readonly adminEvents?: AdminEvents | undefined;
  /** Where email links point and how long their tokens live. */
  readonly email: AccountEmailSettings;
  /** AUTH_REQUIRE_VERIFIED_EMAIL: refuse logins of unverified accounts (403 EMAIL_NOT_VERIFIED). */
  readonly requireVerifiedEmail?: boolean | undefined;
  /** REGISTRATION_ENUMERATION_SAFE: an email change to a taken address is answered like any other. */
  readonly enumerationSafe?: boolean | undefined;
  /** Called once a transaction that queued an email committed (wakes the dispatcher). */
  readonly onEmailQueued?: (() => void) | undefined;
}

/**
 * The one place services are composed; `buildApp` calls it and hands each route plugin the
 * services it uses.
 *
 * @example
 * ```ts
 * const services = createServices({ db, hasher, signer: app.accessTokens, clock: () => new Date(), refreshTokenTtlSeconds, email });
 * await services.auth.login('ada@example.com', 'correct horse');
 * ```
 */
export function createServices(deps: ServiceDeps): Services {
  const settings = deps.email;
  const audit = deps.audit ?? new AuditLog(deps.db);
  const sessions = new SessionService({
    db: deps.db,
    clock: deps.clock,
    audit,
    cache: deps.liveSessions,
    events: deps.sessionEvents,
  });
  const auth = new AuthService({
    db: deps.db,
    hasher: deps.hasher,
    signer: deps.signer,
    clock: deps.clock,
    refreshTokenTtlSeconds: deps.refreshTokenTtlSeconds,
    refreshReuseIntervalSeconds: deps.refreshReuseIntervalSeconds ?? 0,
    refreshSuccessorKeys: deps.refreshSuccessorKeys ?? [randomBytes(32).toString('base64url')],
    sessions,
    audit,
    ...(deps.authEvents === undefined ? {} : { events: deps.authEvents }),
    ...(deps.principals === undefined ? {} : { principals: deps.principals }),
    requireVerifiedEmail: deps.requireVerifiedEmail ?? false,
    verificationEmails: {
      queue: (trx, user, now) => queueVerificationEmail(trx, user, settings, now),
      queued: () => deps.onEmailQueued?.(),
    },
    onEmailQueued: deps.onEmailQueued,
    secondFactor: new MfaChallengeIssuer(deps.db, deps.clock),
  });
  const passkeys =
    deps.relyingParty === undefined
      ? undefined
      : new PasskeyService({
          db: deps.db,
          clock: deps.clock,
          rp: deps.relyingParty,
          auth,
          requireVerifiedEmail: deps.requireVerifiedEmail,
          onEmailQueued: deps.onEmailQueued,
        });
  return {
    auth,
    passkeys,
    mfa:
      deps.secretBox === undefined
        ? undefined
        : new MfaService({
            db: deps.db,
            box: deps.secretBox,
            clock: deps.clock,
            issuer: deps.mfaIssuer ?? 'pg-fastify-backend',
            auth,
            sessions,
            passkeys,
            events: deps.mfaEvents,
            onEmailQueued: deps.onEmailQueued,
          }),
    users: new UserService({ db: deps.db, staleReads: deps.readDb }),
    accountEmails: new AccountEmailService({
      db: deps.db,
      hasher: deps.hasher,
      clock: deps.clock,
      settings,
      sessions,
      onQueued: deps.onEmailQueued,
    }),
    emailChange: new EmailChangeService({
      db: deps.db,
      hasher: deps.hasher,
      clock: deps.clock,
      settings,
      sessions,
      enumerationSafe: deps.enumerationSafe,
      onQueued: deps.onEmailQueued,
    }),
    sessions,
    userAdmin: new UserAdministration({
      db: deps.db,
      hasher: deps.hasher,
      clock: deps.clock,
      sessions,
      events: deps.adminEvents,
      onEmailQueued: deps.onEmailQueued,
      emailSettings: settings,
    }),
    audit,
    devices: new DeviceTokens(deps.deviceTokenKeys ?? [randomBytes(32).toString('base64url')], deps.clock),
  };
}
