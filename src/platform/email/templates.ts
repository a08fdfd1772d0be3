/**
 * Every email the application sends, by name: the catalogue the outbox stores and the renderer
 * reads. The wording lives in wording.ts, the rendering in render.ts.
 *
 * Two kinds: a *link* email carries a single-use token in a link to the client application
 * (`APP_URL` + its path); a *notice* tells the account's owner that something about its security
 * changed, and never carries a token or a link at all (api.md v3, "Security notices").
 */

/** Emails that carry a single-use link, and the path of the client application it opens. */
const LINK_TEMPLATES = {
  email_verification: '/verify-email',
  password_reset: '/reset-password',
  email_change_new: '/confirm-email-change',
  email_change_current: '/confirm-email-change',
} as const;

/**
 * The security notices. Adding one (a factor added, a passkey removed…) is an entry here and in
 * `NOTICE_COPY` (wording.ts), and one `queueSecurityNotice(trx, user, 'the_new_one')` where the event happens.
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

/** The notice an outbox template name reports. */
export function noticeOf(template: NoticeTemplate): SecurityNotice {
  return template.slice('notice_'.length) as SecurityNotice;
}
