import type { EnvReader, SectionContext } from './reader.ts';

export interface EmailConfig {
  /**
   * `smtp` (SMTP_URL set), `log` (each email written to the log at info: development, or
   * EMAIL_TRANSPORT=log on purpose), or undefined: production without SMTP_URL, where the server
   * refuses to start.
   */
  readonly transport: 'smtp' | 'log' | undefined;
  /** smtp:// (STARTTLS when offered) or smtps:// (TLS from the start), with credentials if any. */
  readonly smtpUrl: string | undefined;
  /** Refuse to send unless the server upgrades the connection with STARTTLS. */
  readonly smtpRequireTls: boolean;
  /** Check the SMTP server's certificate (turn off only for a test server with a self-signed one). */
  readonly smtpTlsRejectUnauthorized: boolean;
  readonly from: string;
  /** The client application's base URL: links are APP_URL/verify-email?token=… and APP_URL/reset-password?token=…. */
  readonly appUrl: string;
  readonly verificationTtlSeconds: number;
  readonly passwordResetTtlSeconds: number;
  readonly dispatcher: DispatcherConfig;
}

export interface DispatcherConfig {
  /** How often the outbox is polled when nothing woke the dispatcher. */
  readonly pollIntervalMs: number;
  /** Messages claimed (and sent concurrently) at once. */
  readonly batchSize: number;
  /** A send that has not finished by then counts as failed and is retried. */
  readonly sendTimeoutMs: number;
  /** A claim older than this is taken back by any dispatcher (its owner died); longer than a send. */
  readonly claimLeaseMs: number;
  /** Attempts before a message is marked failed. */
  readonly maxAttempts: number;
  /** The first retry waits about this long, each further one twice as long (with jitter), up to the max. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export function readEmailConfig(reader: EnvReader, { env }: SectionContext): EmailConfig {
  const smtpUrl = reader.smtpUrl('SMTP_URL');
  const transport = reader.oneOf('EMAIL_TRANSPORT', ['smtp', 'log'] as const, smtpUrl === undefined ? 'log' : 'smtp');
  if (transport === 'smtp' && smtpUrl === undefined) reader.problem('EMAIL_TRANSPORT=smtp needs SMTP_URL');
  const explicitLog = reader.string('EMAIL_TRANSPORT') === 'log';
  // Email links and redirects point here: a production default of localhost would send every
  // user a link that cannot work (and that the user's own machine would answer).
  const appUrl = reader.httpUrl('APP_URL');
  if (env === 'production' && appUrl === undefined && reader.string('APP_URL') === undefined) {
    reader.problem(
      "APP_URL is required when NODE_ENV=production (the client application's base URL, used in email links)",
    );
  }
  return {
    // Production never falls back to the log by accident: only when EMAIL_TRANSPORT=log says so.
    transport:
      smtpUrl === undefined && transport === 'log' && env === 'production' && !explicitLog ? undefined : transport,
    smtpUrl,
    smtpRequireTls: reader.boolean('SMTP_REQUIRE_TLS', false),
    smtpTlsRejectUnauthorized: reader.boolean('SMTP_TLS_REJECT_UNAUTHORIZED', true),
    from: reader.string('EMAIL_FROM') ?? 'pg-fastify-backend <no-reply@localhost>',
    appUrl: (appUrl ?? 'http://localhost:3000').replace(/\/+$/, ''),
    verificationTtlSeconds: reader.integer('EMAIL_VERIFICATION_TTL_SECONDS', 86_400, 60, 30 * 86_400),
    passwordResetTtlSeconds: reader.integer('PASSWORD_RESET_TTL_SECONDS', 3600, 60, 86_400),
    dispatcher: readDispatcherConfig(reader),
  };
}

function readDispatcherConfig(reader: EnvReader): DispatcherConfig {
  const sendTimeoutMs = reader.integer('EMAIL_SEND_TIMEOUT_MS', 15_000, 100, 600_000);
  const claimLeaseMs = reader.integer('EMAIL_CLAIM_LEASE_MS', 60_000, 200, 3_600_000);
  if (claimLeaseMs < 2 * sendTimeoutMs) {
    reader.problem(
      'EMAIL_CLAIM_LEASE_MS must be at least twice EMAIL_SEND_TIMEOUT_MS: a claim must outlive the send it covers',
    );
  }
  const retryBaseMs = reader.integer('EMAIL_RETRY_BASE_MS', 5_000, 10, 3_600_000);
  const retryMaxMs = reader.integer('EMAIL_RETRY_MAX_MS', 600_000, 10, 86_400_000);
  if (retryMaxMs < retryBaseMs) reader.problem('EMAIL_RETRY_MAX_MS must not be below EMAIL_RETRY_BASE_MS');
  return {
    pollIntervalMs: reader.integer('EMAIL_POLL_INTERVAL_MS', 1000, 10, 600_000),
    batchSize: reader.integer('EMAIL_BATCH_SIZE', 10, 1, 100),
    sendTimeoutMs,
    claimLeaseMs,
    maxAttempts: reader.integer('EMAIL_MAX_ATTEMPTS', 8, 1, 100),
    retryBaseMs,
    retryMaxMs,
  };
}
