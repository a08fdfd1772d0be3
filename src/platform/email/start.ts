import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import type { DB } from '../db/database.ts';
import type { AppMetrics } from '../metrics/metrics.ts';
import { OutboxDispatcher } from './dispatcher.ts';
import { EmailComposer } from './outbox.ts';
import { emailTransportFor } from './transports.ts';

/**
 * This instance's outbox dispatcher, sending through the configured transport. On close, sends
 * in flight finish (each within EMAIL_SEND_TIMEOUT_MS), messages claimed but not yet handed to
 * the transport are released for another instance, and nothing new is claimed.
 */
export function startEmailDispatcher(
  config: Config,
  db: Kysely<DB>,
  log: FastifyBaseLogger,
  metrics: AppMetrics,
  stack: AsyncDisposableStack,
): OutboxDispatcher {
  const settings = config.email.dispatcher;
  const transport = emailTransportFor(config.email, log, settings.sendTimeoutMs);
  // openServer refused this configuration before opening anything.
  if (transport === undefined) throw new Error('no email transport configured');
  stack.defer(() => {
    transport.close();
  });
  const clock = () => new Date();
  const composer = new EmailComposer({ db, settings: config.email, clock });
  const dispatcher = new OutboxDispatcher({
    db,
    transport,
    compose: (message) => composer.compose(message),
    config: settings,
    log,
    events: metrics.dispatcherEvents,
    clock,
  });
  stack.defer(() => dispatcher.stop());
  dispatcher.start();
  log.info({ transport: transport.name }, 'email outbox dispatcher started');
  return dispatcher;
}
