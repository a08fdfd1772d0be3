/**
 * The wording of every email: the one place to change a sentence or the product name. Each email
 * has a greeting with the user's name, its paragraphs, and a footer that says why it was sent.
 */
import type { LinkTemplate, SecurityNotice } from './templates.ts';

/** The name the emails call the service by. */
export const PRODUCT_NAME = 'pg-fastify-backend';

/** What the wording may use: the input as safe plain text. */
export interface Vars {
  readonly product: string;
  readonly newEmail: string;
  readonly when: string;
}

export interface LinkCopy {
  readonly subject: string;
  readonly lead: (vars: Vars) => string;
  readonly action: string;
  readonly ignore: string;
  readonly reason: (vars: Vars) => string;
}

export interface NoticeCopy {
  readonly subject: string;
  readonly body: (vars: Vars) => readonly string[];
  readonly reason: (vars: Vars) => string;
}

const NOT_YOU = 'If this was not you, reset your password from the sign-in page now and contact support.';
const ABOUT_SECURITY = (v: Vars) =>
  `You received this email because it concerns the security of your ${v.product} account, which uses this address.`;

/** The wording of every email with a link. */
export const LINK_COPY: { readonly [T in LinkTemplate]: LinkCopy } = {
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
export const NOTICE_COPY: { readonly [N in SecurityNotice]: NoticeCopy } = {
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
