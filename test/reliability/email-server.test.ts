import { describe, expect, test } from 'vitest';
import { freePort, releasePort, waitFor } from '../helpers/processes.ts';
import { startSmtpServer, tokenFromLink } from '../helpers/smtp.ts';
import {
  httpRequest,
  PASSWORD,
  registration,
  scratchDirectory,
  startServer,
  type OnFinished,
  type ServerOptions,
  type ServerProcess,
} from './support.ts';

// Issue 17's "the flows work by curl against `npm start`": the real server process
// (`node src/server.ts`, which is all `npm start` runs) on its embedded PostgreSQL, spoken to
// over HTTP only. Without SMTP_URL in development the links come from its log; with SMTP_URL
// they come from a real SMTP server's inbox.

const HTTP_PORTS = [3370, 3379] as const;
const PG_PORTS = [54386, 54389] as const;
const APP_URL = 'https://app.example.test';
const NEW_PASSWORD = 'a brand new passphrase';

async function serverOptions(onFinished: OnFinished, env: Record<string, string>): Promise<ServerOptions> {
  const dataDir = await scratchDirectory(onFinished, 'email-server');
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
    env: { APP_URL, EMAIL_POLL_INTERVAL_MS: '100', LOG_LEVEL: 'info', ...env },
  };
}

interface UserJson {
  readonly id: string;
  readonly email: string;
  readonly emailVerifiedAt: string | null;
}

/** The texts of the emails the log transport wrote so far, oldest first. */
function loggedEmails(server: ServerProcess): { to: string; subject: string; text: string }[] {
  return server
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; email?: { to: string; subject: string; text: string } })
    .filter((entry) => entry.msg === 'email (log transport)' && entry.email !== undefined)
    .map((entry) => entry.email as { to: string; subject: string; text: string });
}

async function me(server: ServerProcess, email: string, password: string): Promise<UserJson> {
  const login = await httpRequest(server.baseUrl, '/auth/login', { body: { email, password } });
  expect(login.status, login.text).toBe(200);
  const { accessToken } = login.json<{ accessToken: string }>();
  const response = await httpRequest(server.baseUrl, '/auth/me', {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  expect(response.status, response.text).toBe(200);
  return response.json<{ user: UserJson }>().user;
}

describe('the email flows against the real server process', () => {
  test(
    'development without SMTP_URL: register, verify and reset with the links from the log',
    { timeout: 120_000 },
    async ({ onTestFinished }) => {
      const options = await serverOptions(onTestFinished, { NODE_ENV: 'development' });
      const server = await startServer(onTestFinished, options);
      const base = server.baseUrl;

      const registered = await httpRequest(base, '/auth/register', { body: registration('ada@example.com') });
      expect(registered.status, registered.text).toBe(201);
      expect(registered.json<{ user: UserJson }>().user.emailVerifiedAt).toBeNull();
      const verification = await waitFor('the verification email in the log', async () =>
        loggedEmails(server).find((email) => email.subject === 'Confirm your email address'),
      );
      expect(verification.to).toBe('ada@example.com');
      const verifyToken = tokenFromLink(verification.text, '/verify-email');
      expect(verification.text).toContain(`${APP_URL}/verify-email?token=`);

      const verified = await httpRequest(base, '/auth/email/verify', { body: { token: verifyToken } });
      expect(verified.status, verified.text).toBe(200);
      expect(verified.json<{ user: UserJson }>().user.emailVerifiedAt).toEqual(expect.any(String));
      expect((await me(server, 'ada@example.com', PASSWORD)).emailVerifiedAt).toEqual(expect.any(String));

      const forgot = await httpRequest(base, '/auth/password/forgot', { body: { email: 'ada@example.com' } });
      expect(forgot.status, forgot.text).toBe(202);
      const reset = await waitFor('the reset email in the log', async () =>
        loggedEmails(server).find((email) => email.subject === 'Reset your password'),
      );
      const resetToken = tokenFromLink(reset.text, '/reset-password');
      const done = await httpRequest(base, '/auth/password/reset', {
        body: { token: resetToken, newPassword: NEW_PASSWORD },
      });
      expect(done.status, done.text).toBe(204);
      expect((await me(server, 'ada@example.com', NEW_PASSWORD)).email).toBe('ada@example.com');
      const old = await httpRequest(base, '/auth/login', { body: { email: 'ada@example.com', password: PASSWORD } });
      expect(old.status).toBe(401);
      await server.stop();
    },
  );

  test(
    'EMAIL_TRANSPORT=smtp: the verification link arrives at a real SMTP server and following it verifies the address',
    { timeout: 120_000 },
    async ({ onTestFinished }) => {
      const smtp = await startSmtpServer();
      onTestFinished(() => smtp.close());
      const options = await serverOptions(onTestFinished, {
        EMAIL_TRANSPORT: 'smtp',
        SMTP_URL: smtp.url,
        EMAIL_FROM: 'no-reply@app.example.test',
      });
      const server = await startServer(onTestFinished, options);

      const registered = await httpRequest(server.baseUrl, '/auth/register', {
        body: registration('grace@example.com'),
      });
      expect(registered.status, registered.text).toBe(201);
      const [email] = await smtp.waitForMessages(1, 30_000);
      expect(email?.to).toEqual(['grace@example.com']);
      expect(email?.from).toBe('no-reply@app.example.test');
      const token = tokenFromLink(email?.text ?? '', '/verify-email');
      // Nothing of the email went to the log: it went to SMTP.
      expect(server.output()).not.toContain(token);

      const verified = await httpRequest(server.baseUrl, '/auth/email/verify', { body: { token } });
      expect(verified.status, verified.text).toBe(200);
      const user = await me(server, 'grace@example.com', PASSWORD);
      expect(user.emailVerifiedAt).toEqual(expect.any(String));
      expect(user.id).toBe(registered.json<{ user: UserJson }>().user.id);
      expect(smtp.received).toHaveLength(1);
      await server.stop();
    },
  );
});
