import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { freePort, waitFor } from './processes.ts';

/** How the server treats the next connections. */
export type SmtpMode =
  /** Accept every message. */
  | 'accept'
  /** Answer MAIL FROM with 554: a permanent-looking refusal. */
  | 'reject'
  /** Greet, then drop the connection at the client's first command. */
  | 'drop'
  /** Accept the connection and never say a word. */
  | 'hang';

/**
 * How the server speaks TLS: not at all (the default), `implicit` (smtps://, TLS from the first
 * byte) or `starttls` (smtp://, upgraded when the client asks). Both with a throwaway
 * self-signed certificate for 127.0.0.1 and localhost.
 */
export type SmtpTls = 'none' | 'implicit' | 'starttls';

export interface SmtpServerOptions {
  readonly tls?: SmtpTls;
}

/** A key and a self-signed certificate (PEM). */
export interface TestCertificate {
  readonly key: string;
  readonly cert: string;
}

let certificate: Promise<TestCertificate> | undefined;

/**
 * A throwaway self-signed certificate for 127.0.0.1 and localhost, made by the `openssl` CLI
 * once per test process (a P-256 key: quick to make). Nobody trusts it: a client that checks
 * certificates refuses it.
 */
export function selfSignedCertificate(): Promise<TestCertificate> {
  certificate ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp-cert-'));
    try {
      const keyFile = path.join(dir, 'key.pem');
      const certFile = path.join(dir, 'cert.pem');
      // prettier-ignore
      await promisify(execFile)('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ]);
      return { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return certificate;
}

/** One message the server accepted. */
export interface ReceivedEmail {
  /** Whether it came over TLS (implicit, or after STARTTLS). */
  readonly secure: boolean;
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  /** The text/plain part, decoded. */
  readonly text: string;
  /** The text/html part, decoded. */
  readonly html: string;
  readonly raw: string;
}

/**
 * A real SMTP server (nodemailer's `smtp-server`) on a free loopback port, for the email tests:
 * messages cross a real SMTP conversation, and the faults are real ones (a 5xx reply, a dropped
 * connection, a server that never answers).
 *
 * @example
 * ```ts
 * const smtp = await startSmtpServer();
 * onTestFinished(() => smtp.close());
 * // … SMTP_URL = smtp.url
 * const [email] = await smtp.waitForMessages(1);
 * const token = tokenFromLink(email.text, '/verify-email');
 * ```
 */
export class TestSmtpServer {
  readonly port: number;
  readonly received: ReceivedEmail[] = [];
  /** Connections refused, dropped or left hanging. */
  faults = 0;
  /** Connections the server accepted, whatever became of them. */
  connections = 0;
  /** Messages whose data the server began to receive: a send is in flight from then on. */
  dataStarted = 0;
  mode: SmtpMode = 'accept';
  /**
   * How long an accepting server waits, after taking a message (it is in {@link received} at
   * once), before it answers 250: a slow server, and the window in which a sender that dies has
   * delivered a message without knowing it.
   */
  acceptDelayMs = 0;
  readonly #listener: net.Server;
  readonly #smtp: SMTPServer;
  readonly #sockets = new Set<net.Socket>();
  /** Answers held back by {@link acceptDelayMs}; dropped on close. */
  readonly #delayed = new Set<NodeJS.Timeout>();

  readonly #tls: SmtpTls;

  private constructor(port: number, listener: net.Server, smtp: SMTPServer, tlsMode: SmtpTls) {
    this.port = port;
    this.#listener = listener;
    this.#smtp = smtp;
    this.#tls = tlsMode;
  }

  get url(): string {
    return `${this.#tls === 'implicit' ? 'smtps' : 'smtp'}://127.0.0.1:${this.port}`;
  }

  static async start(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
    const tlsMode = options.tls ?? 'none';
    const keys = tlsMode === 'none' ? undefined : await selfSignedCertificate();
    for (let attempt = 0; ; attempt++) {
      const port = await freePort(25_000, 25_999);
      const holder: { server?: TestSmtpServer } = {};
      const smtp = new SMTPServer({
        authOptional: true,
        // Implicit TLS is done by the listener below (it hands smtp-server the TLS socket).
        ...(tlsMode === 'implicit' ? { secure: true, secured: true } : {}),
        ...(keys === undefined ? {} : { key: keys.key, cert: keys.cert }),
        disabledCommands: tlsMode === 'starttls' ? ['AUTH'] : ['STARTTLS', 'AUTH'],
        logger: false,
        onMailFrom(_address, _session, callback) {
          if (holder.server?.mode === 'reject') {
            holder.server.faults++;
            callback(Object.assign(new Error('Mailbox unavailable (test server refusing)'), { responseCode: 554 }));
            return;
          }
          callback();
        },
        onData(stream, session, callback) {
          if (holder.server !== undefined) holder.server.dataStarted++;
          const chunks: Buffer[] = [];
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
            holder.server?.received.push(
              parseMessage(
                raw,
                session.secure,
                from,
                session.envelope.rcptTo.map((r) => r.address),
              ),
            );
            const server = holder.server;
            if (server !== undefined && server.acceptDelayMs > 0) {
              const timer = setTimeout(() => {
                server.#delayed.delete(timer);
                callback();
              }, server.acceptDelayMs);
              server.#delayed.add(timer);
            } else callback();
          });
        },
      });
      const listener = net.createServer((socket) => {
        const server = holder.server;
        if (server === undefined) return socket.destroy();
        server.#sockets.add(socket);
        server.connections++;
        socket.on('close', () => server.#sockets.delete(socket));
        socket.on('error', () => {});
        if (server.mode === 'hang') {
          server.faults++;
          return;
        }
        if (server.mode === 'drop') {
          server.faults++;
          socket.write('220 test.local ESMTP\r\n');
          socket.once('data', () => socket.destroy());
          return;
        }
        if (tlsMode !== 'implicit' || keys === undefined) {
          smtp.connect(socket);
          return;
        }
        const secure = new tls.TLSSocket(socket, { isServer: true, key: keys.key, cert: keys.cert });
        // A client refusing the certificate ends the handshake (or, in TLS 1.3, the session).
        secure.on('error', () => socket.destroy());
        secure.once('secure', () => {
          smtp.connect(secure);
        });
      });
      const listening = await new Promise<boolean>((resolve) => {
        listener.once('error', () => {
          resolve(false);
        });
        listener.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
          resolve(true);
        });
      });
      if (listening) {
        holder.server = new TestSmtpServer(port, listener, smtp, tlsMode);
        return holder.server;
      }
      if (attempt >= 3) throw new Error('could not start the test SMTP server');
    }
  }

  /** Waits until at least `count` messages arrived; returns all received so far. */
  async waitForMessages(count: number, timeoutMs = 10_000): Promise<ReceivedEmail[]> {
    await waitFor(
      `${count} email(s) at the test SMTP server`,
      async () => this.received.length >= count,
      timeoutMs,
      20,
    );
    return [...this.received];
  }

  /** The messages sent to `address`. */
  to(address: string): ReceivedEmail[] {
    return this.received.filter((email) => email.to.includes(address));
  }

  async close(): Promise<void> {
    for (const timer of this.#delayed) clearTimeout(timer);
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => {
      this.#smtp.close(() => {
        resolve();
      });
    });
    await new Promise<void>((resolve) => {
      this.#listener.close(() => {
        resolve();
      });
    });
  }
}

/** Starts a {@link TestSmtpServer}. */
export function startSmtpServer(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  return TestSmtpServer.start(options);
}

/**
 * The token of the link to `path` (`/verify-email`, `/reset-password`) in an email's text.
 *
 * @throws when the text has no such link.
 */
export function tokenFromLink(text: string, path: string): string {
  const match = new RegExp(`https?://[^\\s]+${path}\\?token=([^\\s&]+)`).exec(text);
  if (match?.[1] === undefined) throw new Error(`no ${path} link in:\n${text}`);
  return decodeURIComponent(match[1]);
}

/** Just enough MIME for what nodemailer writes: headers, a multipart/alternative body, QP or base64 parts. */
function parseMessage(raw: string, secure: boolean, from: string, to: readonly string[]): ReceivedEmail {
  const { headers, body } = splitHeaders(raw);
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(headers['content-type'] ?? '')?.[1];
  const parts = boundary === undefined ? [raw] : body.split(`--${boundary}`).slice(1, -1);
  let text = '';
  let html = '';
  for (const part of parts) {
    const parsed = splitHeaders(part.replace(/^\r?\n/, ''));
    const decoded = decodePart(parsed.body, parsed.headers['content-transfer-encoding'] ?? '7bit');
    const type = parsed.headers['content-type'] ?? 'text/plain';
    if (type.startsWith('text/html')) html = decoded;
    else if (type.startsWith('text/plain')) text = decoded;
  }
  return { secure, from, to, subject: headers.subject ?? '', text, html, raw };
}

function splitHeaders(raw: string): { headers: Record<string, string>; body: string } {
  const end = raw.search(/\r?\n\r?\n/);
  const head = end === -1 ? raw : raw.slice(0, end);
  const body = end === -1 ? '' : raw.slice(end).replace(/^\r?\n\r?\n/, '');
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body };
}

function decodePart(body: string, encoding: string): string {
  const trimmed = body.replace(/\r?\n$/, '');
  if (/base64/i.test(encoding)) return Buffer.from(trimmed.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (/quoted-printable/i.test(encoding)) {
    const bytes = trimmed
      .replace(/=\r?\n/g, '')
      .replace(/=([0-9A-F]{2})/gi, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    return Buffer.from(bytes, 'latin1').toString('utf8').replace(/\r\n/g, '\n');
  }
  return trimmed.replace(/\r\n/g, '\n');
}
