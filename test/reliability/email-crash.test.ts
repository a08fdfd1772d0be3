import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.ts';
import {
  embeddedUrlOf,
  httpRequest,
  registration,
  scratchDirectory,
  sleep,
  startServer,
  type OnFinished,
  type ServerOptions,
} from './support.ts';
import { freePort, releasePort, waitFor } from '../helpers/processes.ts';

// kill -9 of the real server (`node src/server.ts`) while its dispatcher holds a claimed email in
// the middle of the SMTP conversation, then a restart on the same DATA_DIR: the email is sent
// after the claim's lease, by the restarted server. At least once across a crash: when the
// SMTP server had already taken the message before the kill, it gets it a second time.

const HTTP_PORTS = [3360, 3369] as const;
const PG_PORTS = [54382, 54385] as const;
const SEND_TIMEOUT_MS = 2000;
const LEASE_MS = 2 * SEND_TIMEOUT_MS;

async function serverOptions(onFinished: OnFinished, smtp: TestSmtpServer): Promise<ServerOptions> {
  const dataDir = await scratchDirectory(onFinished, 'email-crash');
  const port = await freePort(...HTTP_PORTS);
  const pgPort = await freePort(...PG_PORTS);
  onFinished(async () => {
    releasePort(port);
    releasePort(pgPort);
  });
  return {
    dataDir,
    port,
    pgPort,
    env: {
      SMTP_URL: smtp.url,
      APP_URL: 'https://app.example.test',
      EMAIL_FROM: 'no-reply@app.example.test',
      EMAIL_POLL_INTERVAL_MS: '50',
      EMAIL_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      EMAIL_CLAIM_LEASE_MS: String(LEASE_MS),
      EMAIL_RETRY_BASE_MS: '50',
      EMAIL_RETRY_MAX_MS: '200',
      LOG_LEVEL: 'warn',
    },
  };
}

interface OutboxRow {
  state: string;
  attempts: number;
  claimed_by: string | null;
}

/** The outbox, read on a connection of its own to the server's embedded PostgreSQL. */
async function outboxRows(options: ServerOptions): Promise<OutboxRow[]> {
  const client = new pg.Client({ connectionString: embeddedUrlOf(options.dataDir, options.pgPort) });
  await client.connect();
  try {
    const { rows } = await client.query<OutboxRow>(
      'select state, attempts, claimed_by from email_outbox order by created_at',
    );
    return rows;
  } finally {
    await client.end();
  }
}

describe('an email claimed by a server that is killed', () => {
  test('is sent after the restart, once its lease has run out', { timeout: 120_000 }, async ({ onTestFinished }) => {
    const smtp = await startSmtpServer();
    onTestFinished(() => smtp.close());
    // The server accepts the connection and never says a word: the send is in flight for
    // SEND_TIMEOUT_MS, the message claimed and nothing recorded.
    smtp.mode = 'hang';
    const options = await serverOptions(onTestFinished, smtp);
    const first = await startServer(onTestFinished, options);

    const response = await httpRequest(first.baseUrl, '/auth/register', { body: registration('crash@example.com') });
    expect(response.status, response.text).toBe(201);
    await waitFor('the dispatcher to be in the SMTP conversation', () => (smtp.faults >= 1 ? true : undefined), 10_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });
    // What the crash left: the claim, and no outcome. (The embedded PostgreSQL outlives its server.)
    const [orphan] = await outboxRows(options);
    expect(orphan).toMatchObject({ state: 'sending', attempts: 1 });
    expect(orphan?.claimed_by).toEqual(expect.any(String));
    expect(smtp.received).toEqual([]);

    smtp.mode = 'accept';
    const second = await startServer(onTestFinished, options);

    const [email] = await smtp.waitForMessages(1, LEASE_MS + 15_000);
    expect(email?.to).toEqual(['crash@example.com']);
    expect(email?.text).toContain('https://app.example.test/verify-email?token=');
    await waitFor('the email to be recorded as sent', async () => {
      const [row] = await outboxRows(options);
      return row?.state === 'sent' ? row : undefined;
    });
    expect(await outboxRows(options)).toMatchObject([{ state: 'sent', attempts: 2, claimed_by: null }]);
    await sleep(500);
    expect(smtp.received).toHaveLength(1);
    second.child.kill('SIGTERM');
    await second.exited;
  });

  test(
    'that the SMTP server had already taken arrives twice: at least once across a crash',
    { timeout: 120_000 },
    async ({ onTestFinished }) => {
      const smtp = await startSmtpServer();
      onTestFinished(() => smtp.close());
      // The server takes the message at once and answers 250 only much later: killed in between,
      // the sender never learns that it was delivered.
      smtp.acceptDelayMs = 60_000;
      const options = await serverOptions(onTestFinished, smtp);
      const first = await startServer(onTestFinished, options);

      const response = await httpRequest(first.baseUrl, '/auth/register', { body: registration('twice@example.com') });
      expect(response.status, response.text).toBe(201);
      await smtp.waitForMessages(1);
      first.child.kill('SIGKILL');
      await first.exited;
      expect(await outboxRows(options)).toMatchObject([{ state: 'sending', attempts: 1 }]);

      smtp.acceptDelayMs = 0;
      await startServer(onTestFinished, options);
      const received = await smtp.waitForMessages(2, LEASE_MS + 15_000);
      expect(received.map((email) => email.to)).toEqual([['twice@example.com'], ['twice@example.com']]);
      await waitFor('the email to be recorded as sent', async () => {
        const [row] = await outboxRows(options);
        return row?.state === 'sent' ? row : undefined;
      });
      expect(await outboxRows(options)).toMatchObject([{ state: 'sent', attempts: 2 }]);
      await sleep(500);
      expect(smtp.received).toHaveLength(2);
    },
  );
});
