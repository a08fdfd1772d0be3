import { EMAIL_MAX, escapeHtml, plainText, withoutLinks } from './plain-text.ts';
import { isLinkTemplate, linkFor, noticeOf, type EmailTemplate, type LinkTemplate } from './templates.ts';
import { LINK_COPY, NOTICE_COPY, PRODUCT_NAME, type NoticeCopy, type Vars } from './wording.ts';

/** One rendered email, ready for a transport. */
export interface OutgoingEmail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface TemplateInput {
  readonly to: string;
  readonly name: string;
  /** The client application's base URL, without a trailing slash. */
  readonly appUrl: string;
  /** The link's token: required by link templates, never used by notices. */
  readonly token?: string;
  /** How long the link works, for the sentence that says so. */
  readonly ttlSeconds?: number;
  /** The address an email change moves the account to (shown to the current address). */
  readonly newEmail?: string;
  /** When the event a notice reports happened; "just now" when absent. */
  readonly occurredAt?: Date;
}

/**
 * Renders a template as plain text and simple HTML. The name is made plain (no line breaks or
 * control characters, so it cannot add lines or a fake link to the text part) and escaped for
 * HTML; the token is URL-encoded into the link.
 *
 * @example
 * ```ts
 * const email = renderEmail('email_verification', { to, name: 'Ada', appUrl: 'https://app.example.com', token, ttlSeconds: 86400 });
 * email.text; // "… https://app.example.com/verify-email?token=… …"
 * const notice = renderEmail('notice_password_changed', { to, name: 'Ada', appUrl });
 * ```
 * @throws when a link template is given no token.
 */
export function renderEmail(template: EmailTemplate, input: TemplateInput): OutgoingEmail {
  const vars: Vars = {
    product: PRODUCT_NAME,
    newEmail: plainText(input.newEmail ?? '', EMAIL_MAX),
    when: input.occurredAt === undefined ? 'just now' : `on ${formatUtc(input.occurredAt)}`,
  };
  const greeting = `Hello ${withoutLinks(plainText(input.name))},`;
  const paragraphs = isLinkTemplate(template)
    ? linkParagraphs(template, input, vars)
    : noticeParagraphs(NOTICE_COPY[noticeOf(template)], vars);
  const copy = isLinkTemplate(template) ? LINK_COPY[template] : NOTICE_COPY[noticeOf(template)];
  const footer = `${copy.reason(vars)} This email was sent automatically by ${PRODUCT_NAME}; replies are not read.`;

  const text = [greeting, '', ...paragraphs.flatMap((p) => [p.text, '']), '--', footer, ''].join('\n');
  const html = [
    '<!doctype html>',
    '<html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>${escapeHtml(greeting)}</p>`,
    ...paragraphs.map((p) => p.html),
    `<hr><p style="color: #666; font-size: small">${escapeHtml(footer)}</p>`,
    '</body></html>',
    '',
  ].join('\n');
  return { to: input.to, subject: copy.subject, text, html };
}

interface Paragraph {
  readonly text: string;
  readonly html: string;
}

function linkParagraphs(template: LinkTemplate, input: TemplateInput, vars: Vars): Paragraph[] {
  if (input.token === undefined || input.ttlSeconds === undefined) {
    throw new Error(`the ${template} email needs its token and lifetime`);
  }
  const copy = LINK_COPY[template];
  const link = linkFor(template, input.appUrl, input.token);
  const expiry = `The link works once, for ${humanDuration(input.ttlSeconds)}.`;
  return [
    { text: `${copy.lead(vars)}\n${link}`, html: `<p>${escapeHtml(copy.lead(vars))}</p>` },
    {
      text: `${expiry} ${copy.ignore}`,
      html: [
        `<p><a href="${escapeHtml(link)}">${escapeHtml(copy.action)}</a></p>`,
        `<p>${escapeHtml(expiry)} ${escapeHtml(copy.ignore)}</p>`,
        `<p style="color: #666; font-size: small">${escapeHtml(link)}</p>`,
      ].join('\n'),
    },
  ];
}

function noticeParagraphs(copy: NoticeCopy, vars: Vars): Paragraph[] {
  return copy.body(vars).map((line) => ({ text: line, html: `<p>${escapeHtml(line)}</p>` }));
}

function formatUtc(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function humanDuration(seconds: number): string {
  if (seconds % 3600 === 0) {
    const hours = seconds / 3600;
    return hours === 1 ? '1 hour' : `${hours} hours`;
  }
  const minutes = Math.max(1, Math.round(seconds / 60));
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}
