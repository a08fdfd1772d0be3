import nodemailer from 'nodemailer';
import type { EmailConfig } from '../config/email.ts';
import type { OutgoingEmail } from './render.ts';

/** Delivers one rendered email; rejects when it was not accepted. */
export interface EmailTransport {
  readonly name: 'smtp' | 'log';
  send(email: OutgoingEmail): Promise<void>;
  /** Releases connections; sends after close fail. */
  close(): void;
}

/** Where the log transport writes (pino's `info`, which takes an object and a message). */
export interface EmailLog {
  info(fields: Record<string, unknown>, message: string): void;
}

/**
 * SMTP through nodemailer. `smtps://` connects with TLS; `smtp://` upgrades with STARTTLS when
 * the server offers it (required with SMTP_REQUIRE_TLS). Each of connecting, the greeting and
 * any silence on the socket is bounded by the send timeout, so a hanging server cannot hold a
 * send for ever (the dispatcher bounds the whole send as well).
 *
 * @example
 * ```ts
 * const transport = smtpTransport(config.email, 15_000);
 * await transport.send(renderEmail('password_reset', input));
 * ```
 */
export function smtpTransport(config: EmailConfig, timeoutMs: number): EmailTransport {
  if (config.smtpUrl === undefined) throw new Error('smtpTransport needs SMTP_URL');
  const transporter = nodemailer.createTransport({
    url: config.smtpUrl,
    requireTLS: config.smtpRequireTls,
    tls: { rejectUnauthorized: config.smtpTlsRejectUnauthorized },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return {
    name: 'smtp',
    async send(email) {
      await transporter.sendMail({ from: config.from, ...email });
    },
    close() {
      transporter.close();
    },
  };
}

/**
 * Development without an SMTP server: each email, link included, is written to the log at info,
 * so `npm start` and a registration show the link to open. Never the default in production.
 */
export function logTransport(log: EmailLog, from: string): EmailTransport {
  return {
    name: 'log',
    async send(email) {
      log.info({ email: { from, to: email.to, subject: email.subject, text: email.text } }, 'email (log transport)');
    },
    close() {},
  };
}

/**
 * The transport the configuration asks for.
 *
 * @returns undefined in production without SMTP_URL and without EMAIL_TRANSPORT=log: the caller
 *   refuses to start.
 */
export function emailTransportFor(config: EmailConfig, log: EmailLog, timeoutMs: number): EmailTransport | undefined {
  if (config.transport === 'smtp') return smtpTransport(config, timeoutMs);
  if (config.transport === 'log') return logTransport(log, config.from);
  return undefined;
}
