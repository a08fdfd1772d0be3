import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { openServer, StartupRefusedError } from '../../../src/lifecycle.ts';
import { renderEmail } from '../../../src/platform/email/render.ts';
import { emailTransportFor, logTransport } from '../../../src/platform/email/transports.ts';
import { configProblems, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../../helpers/app.ts';

// Which transport the configuration picks (SMTP, the log, or a refusal to start in production),
// the dispatcher's settings that cannot work, and what the templates and the log transport write.

const PRODUCTION = {
  NODE_ENV: 'production',
  JWT_SECRET: TEST_JWT_SECRET,
  ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
  METRICS_TOKEN: 'scrape-secret',
  APP_URL: 'https://app.example',
  WEBAUTHN_RP_ID: 'app.example',
  WEBAUTHN_ORIGINS: 'https://app.example',
};

function infoLog() {
  const lines: Array<{ fields: Record<string, unknown>; message: string }> = [];
  return {
    lines,
    info(fields: Record<string, unknown>, message: string) {
      lines.push({ fields, message });
    },
  };
}

describe('the email transport the configuration picks', () => {
  it('is SMTP when SMTP_URL is set, the log without it outside production', () => {
    expect(loadConfig({ NODE_ENV: 'development', SMTP_URL: 'smtp://mail.example.com:587' }).email).toMatchObject({
      transport: 'smtp',
      smtpUrl: 'smtp://mail.example.com:587',
    });
    expect(loadConfig({ NODE_ENV: 'development' }).email.transport).toBe('log');
    expect(loadConfig({ NODE_ENV: 'test' }).email.transport).toBe('log');
  });

  it('is none in production without SMTP_URL (the server refuses to start) unless EMAIL_TRANSPORT=log says so', async () => {
    const bare = loadConfig({ ...PRODUCTION, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(bare.email.transport).toBeUndefined();
    expect(emailTransportFor(bare.email, infoLog(), 1000)).toBeUndefined();
    // Refused before anything is opened: the unreachable database is never tried.
    const opening = openServer(bare, { say: () => {} });
    await expect(opening).rejects.toBeInstanceOf(StartupRefusedError);
    await expect(opening).rejects.toThrow(/NODE_ENV=production needs SMTP_URL.*EMAIL_TRANSPORT=log/);

    expect(loadConfig({ ...PRODUCTION, EMAIL_TRANSPORT: 'log' }).email.transport).toBe('log');
    expect(loadConfig({ ...PRODUCTION, SMTP_URL: 'smtps://u:p@mail.example.com' }).email.transport).toBe('smtp');
  });

  it('refuses settings that cannot work, naming the variable', () => {
    expect(configProblems({ EMAIL_TRANSPORT: 'smtp' })).toEqual(['EMAIL_TRANSPORT=smtp needs SMTP_URL']);
    expect(configProblems({ EMAIL_TRANSPORT: 'carrier-pigeon' })).toEqual([expect.stringContaining('EMAIL_TRANSPORT')]);
    expect(configProblems({ SMTP_URL: 'http://mail.example.com' })).toEqual([expect.stringContaining('SMTP_URL')]);
    expect(configProblems({ EMAIL_SEND_TIMEOUT_MS: '10000', EMAIL_CLAIM_LEASE_MS: '15000' })).toEqual([
      'EMAIL_CLAIM_LEASE_MS must be at least twice EMAIL_SEND_TIMEOUT_MS: a claim must outlive the send it covers',
    ]);
    expect(configProblems({ EMAIL_RETRY_BASE_MS: '5000', EMAIL_RETRY_MAX_MS: '1000' })).toEqual([
      'EMAIL_RETRY_MAX_MS must not be below EMAIL_RETRY_BASE_MS',
    ]);
    expect(configProblems({ EMAIL_MAX_ATTEMPTS: '0' })).toEqual([expect.stringContaining('EMAIL_MAX_ATTEMPTS')]);
  });

  it('has the contract defaults: 24 h verification, 1 h reset, links on APP_URL without its trailing slash', () => {
    const { email } = loadConfig({ NODE_ENV: 'test', APP_URL: 'https://app.example.com/' });
    expect(email).toMatchObject({
      appUrl: 'https://app.example.com',
      verificationTtlSeconds: 86_400,
      passwordResetTtlSeconds: 3600,
      smtpRequireTls: false,
      smtpTlsRejectUnauthorized: true,
    });
    expect(email.dispatcher).toMatchObject({ maxAttempts: 8, batchSize: 10 });
  });
});

describe('the log transport (development without SMTP)', () => {
  it('writes each email, link included, to the log at info', async () => {
    const log = infoLog();
    const transport = logTransport(log, 'App <no-reply@app.example.test>');
    expect(transport.name).toBe('log');
    const email = renderEmail('password_reset', {
      to: 'ada@example.com',
      name: 'Ada',
      appUrl: 'https://app.example.test',
      token: 'abc_DEF-123',
      ttlSeconds: 3600,
    });
    await transport.send(email);
    expect(log.lines).toEqual([
      {
        message: 'email (log transport)',
        fields: {
          email: {
            from: 'App <no-reply@app.example.test>',
            to: 'ada@example.com',
            subject: 'Reset your password',
            text: expect.stringContaining('https://app.example.test/reset-password?token=abc_DEF-123'),
          },
        },
      },
    ]);
    transport.close();
  });
});

describe('the email templates', () => {
  it('escape the HTML part, encode the token into the link, and say how long the link works', () => {
    const email = renderEmail('email_verification', {
      to: 'x@example.com',
      name: `"><img src=x onerror=alert(1)> & 'Bob'`,
      appUrl: 'https://app.example.test',
      token: 'a+b/c=&d',
      ttlSeconds: 86_400,
    });
    expect(email.subject).toBe('Confirm your email address');
    expect(email.html).not.toContain('<img');
    expect(email.html).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &#39;Bob&#39;');
    expect(email.text).toContain('https://app.example.test/verify-email?token=a%2Bb%2Fc%3D%26d');
    expect(email.html).toContain('href="https://app.example.test/verify-email?token=a%2Bb%2Fc%3D%26d"');
    expect(email.text).toContain('for 24 hours');
    const reset = renderEmail('password_reset', {
      to: 'x@example.com',
      name: 'B',
      appUrl: 'https://a.test',
      token: 't',
      ttlSeconds: 3600,
    });
    expect(reset.text).toContain('https://a.test/reset-password?token=t');
    expect(reset.text).toContain('for 1 hour');
  });
});
