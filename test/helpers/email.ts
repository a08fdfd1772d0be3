import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import type { App } from '../../src/app.ts';
import type { ClaimedMessage, OutboxRow } from '../../src/platform/email/email-outbox.repository.ts';
import type { OutgoingEmail } from '../../src/platform/email/render.ts';
import type { AppMetrics } from '../../src/platform/metrics/metrics.ts';
import { EmailComposer } from '../../src/platform/email/outbox.ts';
import { smtpTransport } from '../../src/platform/email/transports.ts';
import { OutboxDispatcher, type DispatcherEvents } from '../../src/platform/email/dispatcher.ts';
import { LogCapture, testApp, testConfig } from './app.ts';
import { isolatedDatabase, type TestDatabase } from './database.ts';
import { waitFor } from './processes.ts';
import {
  startSmtpServer,
  tokenFromLink,
  type ReceivedEmail,
  type SmtpServerOptions,
  type TestSmtpServer,
} from './smtp.ts';

export const APP_URL = 'https://app.example.test';

/** Dispatcher settings quick enough for tests: retries after tens of milliseconds. */
export function emailEnv(smtp: TestSmtpServer, extra: Record<string, string> = {}): Record<string, string> {
  return {
    SMTP_URL: smtp.url,
    APP_URL,
    EMAIL_FROM: 'Test App <no-reply@app.example.test>',
    EMAIL_POLL_INTERVAL_MS: '50',
    EMAIL_SEND_TIMEOUT_MS: '1000',
    EMAIL_CLAIM_LEASE_MS: '5000',
    EMAIL_RETRY_BASE_MS: '50',
    EMAIL_RETRY_MAX_MS: '200',
    ...extra,
  };
}

/** What a test may change about a dispatcher of {@link MailingApp.dispatcher}. */
export interface DispatcherOptions {
  readonly events?: DispatcherEvents;
  readonly instanceId?: string;
  /** Another pool to the same database (a second instance's connections). */
  readonly db?: Kysely<DB>;
  /** Its clock (claims, retry times, reset tokens); the real one by default. */
  readonly clock?: () => Date;
  /** Wraps the real composer: to hold a message between its claim and its send. */
  readonly compose?: (
    message: ClaimedMessage,
    real: (message: ClaimedMessage) => Promise<OutgoingEmail | undefined>,
  ) => Promise<OutgoingEmail | undefined>;
  /** Settings over the app's (EMAIL_* variables, as `loadConfig` reads them). */
  readonly env?: Record<string, string>;
}

export interface MailingApp {
  readonly app: App;
  readonly smtp: TestSmtpServer;
  readonly database: TestDatabase;
  readonly log: LogCapture;
  /** A dispatcher of its own (a second instance's), on its own connections to the same database. */
  readonly dispatcher: (options?: DispatcherOptions) => OutboxDispatcher;
  readonly outbox: () => Promise<OutboxRow[]>;
}

/**
 * The app on a committed database of its own, a real SMTP server, and a running dispatcher that
 * sends through it: the whole email pipeline as an instance runs it. Everything stops when the
 * test ends.
 */
export async function startMailingApp(
  onFinished: (fn: () => Promise<void>) => void,
  options: {
    env?: Record<string, string>;
    events?: DispatcherEvents;
    dispatch?: boolean;
    /** The app's clock (token expiry, the time tokens are issued at registration). */
    clock?: () => Date;
    /** The app's metrics (GET /metrics); the running dispatcher reports to them too. */
    metrics?: AppMetrics;
    /** How the SMTP server speaks TLS (SMTP_URL follows: smtps:// for implicit TLS). */
    smtp?: SmtpServerOptions;
  } = {},
): Promise<MailingApp> {
  const smtp = await startSmtpServer(options.smtp);
  onFinished(() => smtp.close());
  const database = await isolatedDatabase(onFinished);
  const env = { LOG_LEVEL: 'warn', ...emailEnv(smtp, options.env) };
  const log = new LogCapture();
  const dispatchers: OutboxDispatcher[] = [];
  const wake = () => {
    for (const dispatcher of dispatchers) dispatcher.wake();
  };
  const app = await testApp(database.db, onFinished, {
    env,
    logStream: log,
    onEmailQueued: wake,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
  });
  const dispatcher = (opts: DispatcherOptions = {}) => {
    const config = testConfig({ ...env, ...opts.env });
    const db = opts.db ?? database.db;
    const clock = opts.clock ?? (() => new Date());
    const transport = smtpTransport(config.email, config.email.dispatcher.sendTimeoutMs);
    const composer = new EmailComposer({ db, settings: config.email, clock });
    const real = (message: ClaimedMessage) => composer.compose(message);
    const wrap = opts.compose;
    const created = new OutboxDispatcher({
      db,
      transport,
      compose: wrap === undefined ? real : (message) => wrap(message, real),
      config: config.email.dispatcher,
      log: app.log,
      events: opts.events,
      clock,
      ...(opts.instanceId === undefined ? {} : { instanceId: opts.instanceId }),
    });
    dispatchers.push(created);
    // Registered before the app's close (onFinished runs last-in first-out): stops first.
    onFinished(async () => {
      await created.stop();
      transport.close();
    });
    return created;
  };
  const events = options.events ?? options.metrics?.dispatcherEvents;
  if (options.dispatch !== false) dispatcher(events === undefined ? {} : { events }).start();
  return {
    app,
    smtp,
    database,
    log,
    dispatcher,
    // Every message, oldest first: a whole-table read only tests need, so not a repository method.
    outbox: () => database.db.selectFrom('email_outbox').selectAll().orderBy('created_at').orderBy('id').execute(),
  };
}

/**
 * Waits for the emails to `address` with `subject` until there are `count` of them (1 by
 * default), and returns them.
 */
export async function mailTo(
  smtp: TestSmtpServer,
  address: string,
  subject: string,
  count = 1,
): Promise<ReceivedEmail[]> {
  const matching = () => smtp.to(address).filter((email) => email.subject === subject);
  await waitFor(`${count} "${subject}" email(s) to ${address}`, async () => matching().length >= count, 10_000, 20);
  return matching();
}

/** The token of an email-change link (`APP_URL/confirm-email-change?token=…`) in an email. */
export function changeToken(email: ReceivedEmail | undefined): string {
  return tokenFromLink(email?.text ?? '', '/confirm-email-change');
}
