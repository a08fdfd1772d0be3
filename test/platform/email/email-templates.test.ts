import { describe, expect, it } from 'vitest';
import { EMAIL_TEMPLATES, isEmailTemplate, isLinkTemplate, linkFor } from '../../../src/platform/email/templates.ts';
import { escapeHtml } from '../../../src/platform/email/plain-text.ts';
import { PRODUCT_NAME } from '../../../src/platform/email/wording.ts';
import { renderEmail } from '../../../src/platform/email/render.ts';

// The emails as rendered (src/platform/email/render.ts): the sentence that says how long the
// link works for every TTL an operator may configure, links with the token URL-encoded, and
// nothing a user typed turning into markup.

const input = { to: 'ada@example.com', name: 'Ada', appUrl: 'https://app.example.test', token: 'abc' };

describe('renderEmail', () => {
  it.for([
    [3600, 'The link works once, for 1 hour.'],
    [86_400, 'The link works once, for 24 hours.'],
    [60, 'The link works once, for 1 minute.'],
    [90 * 60, 'The link works once, for 90 minutes.'],
    // Not a whole number of minutes: rounded, never "0 minutes".
    [89, 'The link works once, for 1 minute.'],
    [20, 'The link works once, for 1 minute.'],
  ] as const)('a TTL of %i seconds: "%s"', ([ttlSeconds, sentence]) => {
    const email = renderEmail('password_reset', { ...input, ttlSeconds });
    expect(email.text).toContain(sentence);
    expect(email.html).toContain(sentence);
  });

  it('each template has its subject, its link and its words', () => {
    const verify = renderEmail('email_verification', { ...input, ttlSeconds: 3600 });
    expect(verify.subject).toBe('Confirm your email address');
    expect(verify.text).toContain('https://app.example.test/verify-email?token=abc');
    expect(verify.to).toBe('ada@example.com');
    const reset = renderEmail('password_reset', { ...input, ttlSeconds: 3600 });
    expect(reset.subject).toBe('Reset your password');
    expect(reset.text).toContain('https://app.example.test/reset-password?token=abc');
    expect(reset.text).toMatch(/^Hello Ada,\n/);
  });

  it('a name with markup is escaped in the HTML part and kept as typed in the text part', () => {
    const email = renderEmail('email_verification', {
      ...input,
      name: `<img src=x onerror="a('b')">&`,
      ttlSeconds: 3600,
    });
    expect(email.html).toContain('Hello &lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;,');
    expect(email.html).not.toContain('<img');
    expect(email.text).toContain(`Hello <img src=x onerror="a('b')">&,`);
  });
});

describe('every template', () => {
  it.for(EMAIL_TEMPLATES)('%s has a subject, a text and an HTML part, and a footer that says why', (template) => {
    const email = renderEmail(template, { ...input, ttlSeconds: 3600, newEmail: 'ada@new.example' });
    expect(email.subject).not.toBe('');
    expect(email.text).toMatch(/^Hello Ada,\n/);
    expect(email.html).toContain('<p>Hello Ada,</p>');
    for (const part of [email.text, email.html]) {
      expect(part).toContain('You received this email because');
      expect(part).toContain(PRODUCT_NAME);
    }
    // Only link emails carry the token; a notice has no link at all.
    if (isLinkTemplate(template)) expect(email.text).toContain('?token=abc');
    else for (const part of [email.text, email.html]) expect(part).not.toMatch(/https?:|token|<a /);
  });

  it('a link template without its token is refused rather than sent without a link', () => {
    expect(() => renderEmail('email_change_new', { to: 'a@b.c', name: 'Ada', appUrl: 'https://a.test' })).toThrow(
      /token/,
    );
  });

  it('a notice is dated by its event, in UTC', () => {
    const email = renderEmail('notice_password_changed', {
      ...input,
      occurredAt: new Date('2026-12-07T12:34:56Z'),
    });
    expect(email.text).toContain('was changed on 2026-12-07 12:34 UTC.');
  });
});

describe('linkFor, isEmailTemplate, escapeHtml', () => {
  it('URL-encodes the token', () => {
    expect(linkFor('password_reset', 'https://a.test', 'a+b/c=&d')).toBe(
      'https://a.test/reset-password?token=a%2Bb%2Fc%3D%26d',
    );
  });

  it('knows its templates and nothing else (an outbox row with another name is refused)', () => {
    expect(isEmailTemplate('email_verification')).toBe(true);
    expect(isEmailTemplate('password_reset')).toBe(true);
    expect(isEmailTemplate('email_change_new')).toBe(true);
    expect(isEmailTemplate('notice_password_changed')).toBe(true);
    expect(isEmailTemplate('newsletter')).toBe(false);
    expect(isEmailTemplate('notice_newsletter')).toBe(false);
  });

  it('an email-change link opens APP_URL/confirm-email-change', () => {
    expect(linkFor('email_change_new', 'https://a.test', 'abc')).toBe('https://a.test/confirm-email-change?token=abc');
    expect(linkFor('email_change_current', 'https://a.test', 'abc')).toBe(
      'https://a.test/confirm-email-change?token=abc',
    );
  });

  it('escapes the five HTML metacharacters and nothing else', () => {
    expect(escapeHtml(`<a href="x">'&'</a> é`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt; é');
  });
});
