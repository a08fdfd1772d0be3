/**
 * Every email the application sends, and its wording: the one place to change a sentence or the
 * product name. Each email has a plain-text and an HTML part, a greeting with the user's name
 * (made safe for each part), and a footer that says why it was sent.
 *
 * Two kinds: a *link* email carries a single-use token in a link to the client application
 * (`APP_URL` + its path); a *notice* tells the account's owner that something about its security
 * changed, and never carries a token or a link at all (api.md v3, "Security notices").
 */

/** The name the emails call the service by. */
export const PRODUCT_NAME = 'pg-fastify-backend';

/** Emails that carry a single-use link, and the path of the client application it opens. */
const LINK_TEMPLATES = {
  email_verification: '/verify-email',
  password_reset: '/reset-password',
  email_change_new: '/confirm-email-change',
  email_change_current: '/confirm-email-change',
} as const;

/**
 * The security notices. Adding one (a factor added, a passkey removed…) is an entry here and in
 * {@link NOTICE_COPY}, and one `queueSecurityNotice(trx, user, 'the_new_one')` where the event happens.
 */
export const SECURITY_NOTICES = [
  'password_changed',
  'password_reset',
  'email_changed',
  'account_disabled',
  // Failed sign-ins from several addresses slowed the account's logins (distributed guessing).
  'login_throttled',
  // Someone tried to register (or move another account to) an address that already has an account.
  'account_exists',
  'mfa_enrolled',
  'mfa_removed',
  'mfa_recovery_code_used',
  'mfa_recovery_codes_regenerated',
  'mfa_reset_by_admin',
  'passkey_added',
  'passkey_removed',
  'identity_linked',
  'identity_unlinked',
] as const;
export type SecurityNotice = (typeof SECURITY_NOTICES)[number];

export type LinkTemplate = keyof typeof LINK_TEMPLATES;
export type NoticeTemplate = `notice_${SecurityNotice}`;
/** The emails the application sends, by template name (stored in the outbox row). */
export type EmailTemplate = LinkTemplate | NoticeTemplate;

export const EMAIL_TEMPLATES: readonly EmailTemplate[] = [
  ...(Object.keys(LINK_TEMPLATES) as LinkTemplate[]),
  ...SECURITY_NOTICES.map((notice) => noticeTemplate(notice)),
];

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

/** What the wording may use: the input as safe plain text. */
interface Vars {
  readonly product: string;
  readonly newEmail: string;
  readonly when: string;
}

interface LinkCopy {
  readonly subject: string;
  readonly lead: (vars: Vars) => string;
  readonly action: string;
  readonly ignore: string;
  readonly reason: (vars: Vars) => string;
}

interface NoticeCopy {
  readonly subject: string;
  readonly body: (vars: Vars) => readonly string[];
  readonly reason: (vars: Vars) => string;
}

const NOT_YOU = 'If this was not you, reset your password from the sign-in page now and contact support.';
const ABOUT_SECURITY = (v: Vars) =>
  `You received this email because it concerns the security of your ${v.product} account, which uses this address.`;

/** The wording of every email with a link. */
const LINK_COPY: { readonly [T in LinkTemplate]: LinkCopy } = {
  email_verification: {
    subject: 'Confirm your email address',
    lead: () => 'Please confirm that this is your email address by opening this link:',
    action: 'Confirm my email address',
    ignore: 'If you did not create an account, you can ignore this email.',
    reason: (v) => `You received this email because this address was used to create a ${v.product} account.`,
  },
  password_reset: {
    subject: 'Reset your password',
    lead: () => 'Someone (hopefully you) asked to reset the password of your account. Choose a new one here:',
    action: 'Choose a new password',
    ignore: 'If you did not ask for this, ignore this email: your password stays as it is.',
    reason: (v) =>
      `You received this email because a password reset was asked for the ${v.product} account of this address.`,
  },
  email_change_new: {
    subject: 'Confirm your new email address',
    lead: (v) => `Someone (hopefully you) asked to use this address for their ${v.product} account. Confirm it here:`,
    action: 'Confirm my new email address',
    ignore: 'If you did not ask for this, ignore this email: no account will use this address.',
    reason: (v) => `You received this email because someone asked to move a ${v.product} account to this address.`,
  },
  email_change_current: {
    subject: 'Confirm the change of your email address',
    lead: (v) =>
      `Someone (hopefully you) asked to change the email address of your account to ${v.newEmail}. Confirm the change here:`,
    action: 'Confirm the change',
    ignore:
      'If you did not ask for this, do not open the link: your address stays as it is. Change your password, since whoever asked knew it.',
    reason: (v) =>
      `You received this email because someone asked to change the email address of your ${v.product} account.`,
  },
};

/** The wording of every security notice. */
const NOTICE_COPY: { readonly [N in SecurityNotice]: NoticeCopy } = {
  password_changed: {
    subject: 'Your password was changed',
    body: (v) => [
      `The password of your ${v.product} account was changed ${v.when}.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  password_reset: {
    subject: 'Your password was reset',
    body: (v) => [
      `The password of your ${v.product} account was reset with a link sent to this address ${v.when}. Every device was signed out.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  email_changed: {
    subject: 'Your email address was changed',
    body: (v) => [
      `The email address of your ${v.product} account was changed ${v.when}: this address no longer signs in to it, and no further emails about the account will come here.`,
      'If this was you, there is nothing to do.',
      'If this was not you, contact support at once: your account may have been taken over.',
    ],
    reason: (v) => `You received this email because this address was the one of your ${v.product} account until now.`,
  },
  account_disabled: {
    subject: 'Your account was disabled',
    body: (v) => [
      `An administrator disabled your ${v.product} account ${v.when}. You cannot sign in until it is enabled again.`,
      'If you think this is a mistake, contact support.',
    ],
    reason: ABOUT_SECURITY,
  },
  login_throttled: {
    subject: 'Someone is trying to sign in to your account',
    body: (v) => [
      `Many wrong passwords were tried for your ${v.product} account from several places ${v.when}, so its sign-ins are slowed for a while. You can still sign in with your password.`,
      'If these attempts were not yours, make sure your password is long and used nowhere else.',
    ],
    reason: ABOUT_SECURITY,
  },
  mfa_enrolled: {
    subject: 'A second factor was added to your account',
    body: (v) => [
      `An authenticator app was added to your ${v.product} account as a second factor ${v.when}. Signing in now also asks for its code.`,
      'If this was you, keep your recovery codes somewhere safe.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  passkey_added: {
    subject: 'A passkey was added to your account',
    body: (v) => [
      `A passkey was added to your ${v.product} account ${v.when}. It signs you in without a password, and counts as a second factor.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  passkey_removed: {
    subject: 'A passkey was removed from your account',
    body: (v) => [
      `A passkey was removed from your ${v.product} account ${v.when}.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  identity_linked: {
    subject: 'A sign-in provider was linked to your account',
    body: (v) => [
      `An account at another identity provider was linked to your ${v.product} account ${v.when}. It can now sign you in.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  identity_unlinked: {
    subject: 'A sign-in provider was unlinked from your account',
    body: (v) => [
      `An account at another identity provider was unlinked from your ${v.product} account ${v.when}. It no longer signs you in.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  mfa_removed: {
    subject: 'A second factor was removed from your account',
    body: (v) => [
      `An authenticator app was removed from your ${v.product} account ${v.when}.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  mfa_recovery_code_used: {
    subject: 'A recovery code was used to sign in',
    body: (v) => [
      `One of the recovery codes of your ${v.product} account was used ${v.when}. Each code works once.`,
      'If this was you, consider making a new set of codes once you have your authenticator back.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  mfa_recovery_codes_regenerated: {
    subject: 'New recovery codes were made for your account',
    body: (v) => [
      `A new set of recovery codes was made for your ${v.product} account ${v.when}; the previous codes no longer work.`,
      'If this was you, there is nothing to do.',
      NOT_YOU,
    ],
    reason: ABOUT_SECURITY,
  },
  mfa_reset_by_admin: {
    subject: 'The second factors of your account were removed',
    body: (v) => [
      `An administrator removed every second factor and recovery code of your ${v.product} account ${v.when}, and every device was signed out.`,
      'You can sign in with your password and add an authenticator again.',
      'If you did not ask for this, contact support.',
    ],
    reason: ABOUT_SECURITY,
  },
  account_exists: {
    subject: 'Someone tried to use your email address',
    body: (v) => [
      `Someone tried ${v.when} to create a ${v.product} account with this address, or to move another account to it. This address already has an account, so nothing was changed.`,
      'If this was you, sign in with your password, or reset it from the sign-in page if you forgot it.',
      'If it was not you, you can ignore this email.',
    ],
    reason: ABOUT_SECURITY,
  },
};

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

/** APP_URL/verify-email?token=…, APP_URL/reset-password?token=… or APP_URL/confirm-email-change?token=… */
export function linkFor(template: LinkTemplate, appUrl: string, token: string): string {
  return `${appUrl}${LINK_TEMPLATES[template]}?token=${encodeURIComponent(token)}`;
}

/** The outbox template name of a notice. */
export function noticeTemplate(notice: SecurityNotice): NoticeTemplate {
  return `notice_${notice}`;
}

export function isEmailTemplate(value: string): value is EmailTemplate {
  return (EMAIL_TEMPLATES as readonly string[]).includes(value);
}

export function isLinkTemplate(value: EmailTemplate): value is LinkTemplate {
  return Object.hasOwn(LINK_TEMPLATES, value);
}

function noticeOf(template: NoticeTemplate): SecurityNotice {
  return template.slice('notice_'.length) as SecurityNotice;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

/** Names are at most 100 characters (credentials.ts); older rows are cut there too. */
const NAME_MAX = 100;
const EMAIL_MAX = 254;

/**
 * A user-typed value as one plain line: control, format (bidi overrides, zero-width) and line or
 * paragraph separator characters become spaces, runs of white space one space, and the length is
 * capped. Input rules refuse most of these already; this holds for rows written before them.
 */
export function plainText(value: string, max = NAME_MAX): string {
  const line = value
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ')
    .replace(/\s+/gu, ' ')
    .trim();
  return Array.from(line).slice(0, max).join('');
}

/**
 * A name that cannot be read as a link: mail clients turn `https://…`, `www.…` and bare host names
 * into links even in plain text, so a name like "Support https://evil.example/reset" would put a
 * working fake link into our email. URL schemes are dropped and a dot between word characters
 * becomes U+2024 (one dot leader), which looks the same and links nothing.
 */
export function withoutLinks(name: string): string {
  return name.replace(/[a-z][a-z0-9+.-]*:\/\//giu, '').replace(/(?<=[\p{L}\p{N}])\.(?=[\p{L}\p{N}])/gu, '\u2024');
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
