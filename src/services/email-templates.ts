/** The emails the application sends, by template name (stored in the outbox row). */
export type EmailTemplate = 'email_verification' | 'password_reset';

export const EMAIL_TEMPLATES: readonly EmailTemplate[] = ['email_verification', 'password_reset'];

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
  readonly token: string;
  /** How long the link works, for the sentence that says so. */
  readonly ttlSeconds: number;
}

/**
 * Renders a template as plain text and simple HTML. Every value is escaped for HTML, and the
 * token is URL-encoded into the link, so nothing the user typed (a name) can inject markup.
 *
 * @example
 * ```ts
 * const email = renderEmail('email_verification', { to, name: 'Ada', appUrl: 'https://app.example.com', token, ttlSeconds: 86400 });
 * email.text; // "… https://app.example.com/verify-email?token=… …"
 * ```
 */
export function renderEmail(template: EmailTemplate, input: TemplateInput): OutgoingEmail {
  const link = linkFor(template, input.appUrl, input.token);
  const lifetime = humanDuration(input.ttlSeconds);
  const copy =
    template === 'email_verification'
      ? {
          subject: 'Confirm your email address',
          lead: 'Please confirm that this is your email address by opening this link:',
          action: 'Confirm my email address',
          ignore: 'If you did not create an account, you can ignore this email.',
        }
      : {
          subject: 'Reset your password',
          lead: 'Someone (hopefully you) asked to reset the password of your account. Choose a new one here:',
          action: 'Choose a new password',
          ignore: 'If you did not ask for this, ignore this email: your password stays as it is.',
        };
  const greeting = `Hello ${input.name},`;
  const expiry = `The link works once, for ${lifetime}.`;
  const text = [greeting, '', copy.lead, link, '', expiry, copy.ignore, ''].join('\n');
  const html = [
    '<!doctype html>',
    '<html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>${escapeHtml(greeting)}</p>`,
    `<p>${escapeHtml(copy.lead)}</p>`,
    `<p><a href="${escapeHtml(link)}">${escapeHtml(copy.action)}</a></p>`,
    `<p>${escapeHtml(expiry)} ${escapeHtml(copy.ignore)}</p>`,
    `<p style="color: #666; font-size: small">${escapeHtml(link)}</p>`,
    '</body></html>',
    '',
  ].join('\n');
  return { to: input.to, subject: copy.subject, text, html };
}

/** APP_URL/verify-email?token=… or APP_URL/reset-password?token=… */
export function linkFor(template: EmailTemplate, appUrl: string, token: string): string {
  const path = template === 'email_verification' ? '/verify-email' : '/reset-password';
  return `${appUrl}${path}?token=${encodeURIComponent(token)}`;
}

export function isEmailTemplate(value: string): value is EmailTemplate {
  return (EMAIL_TEMPLATES as readonly string[]).includes(value);
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

function humanDuration(seconds: number): string {
  if (seconds % 3600 === 0) {
    const hours = seconds / 3600;
    return hours === 1 ? '1 hour' : `${hours} hours`;
  }
  const minutes = Math.max(1, Math.round(seconds / 60));
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}
