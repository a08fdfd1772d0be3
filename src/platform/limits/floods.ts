import type { FastifyRequest } from 'fastify';
import type { AuthConfig } from '../config/auth.ts';
import { clientAddress, clientAddressKey } from '../http/client-address.ts';
import { canonicalEmail } from '../../auth/credentials.ts';
import { callerKey, type Attempt, type FloodLimit } from './throttle.ts';

/**
 * Every flood cap of the API, declared in one place: requests per window (RATE_LIMIT_WINDOW_MS)
 * per caller key, whatever their outcome. Two layers guard the routes that check a secret (README,
 * "Security model"):
 *
 * - these caps, a preHandler (`flood(name)`), sized for many users behind one NAT;
 * - failure throttling per account and client address, or per recognised device
 *   (`app.throttle.guard(attemptOf(...), run)` around the check itself), which locks out a
 *   guessing pair quickly and never the owner's device.
 *
 * Counters live in the one abuse-control store (src/platform/limits/plugin.ts): Redis when configured,
 * else this process's memory, bounded, never evicting a live counter.
 */
export function floodLimits(config: AuthConfig) {
  return {
    'register-ip': { max: config.registerRateLimit, per: 'address' },
    'register-account': { max: config.registerRateLimit, per: 'account' },
    'login-ip': { max: config.loginRateLimit, per: 'address' },
    'refresh-ip': { max: config.refreshRateLimit, per: 'address' },
    'logout-ip': { max: config.logoutRateLimit, per: 'address' },
    'password-change-ip': { max: config.credentialRateLimit, per: 'address' },
    'account-delete-ip': { max: config.credentialRateLimit, per: 'address' },
    'email-verify-ip': { max: config.emailRateLimit, per: 'address' },
    'email-resend-ip': { max: config.emailRateLimit, per: 'address' },
    'email-resend-account': { max: config.emailRateLimit, per: 'user' },
    'password-forgot-ip': { max: config.emailRateLimit, per: 'address' },
    // Over this cap a request is still answered 202 but sends nothing (routes/account-emails.ts):
    // strangers asking for someone's reset link must not get the owner's own request refused.
    'password-forgot-account': { max: config.emailRateLimit, per: 'account' },
    'password-reset-ip': { max: config.emailRateLimit, per: 'address' },
    'email-change-ip': { max: config.emailRateLimit, per: 'address' },
    'email-change-account': { max: config.emailRateLimit, per: 'user' },
    'email-change-confirm-ip': { max: config.emailRateLimit, per: 'address' },
    'mfa-ip': { max: config.credentialRateLimit, per: 'address' },
    'passkey-ip': { max: config.credentialRateLimit, per: 'address' },
    // The second step of a login, and a passkey sign-in, are logins: sized like login for a NAT.
    'mfa-login-ip': { max: config.loginRateLimit, per: 'address' },
    'passkey-login-ip': { max: config.loginRateLimit, per: 'address' },
    // Provider sign-ins (authorize, callback, exchange, link): each authorize stores a flow.
    'oauth-ip': { max: config.loginRateLimit, per: 'address' },
  } as const satisfies Record<string, FloodLimit>;
}

export type FloodName = keyof ReturnType<typeof floodLimits>;

/** The caller key a request counts under for a cap of kind `per`. */
export function floodCaller(request: FastifyRequest, per: FloodLimit['per']): string {
  switch (per) {
    case 'address':
      return callerKey.address(addressOf(request));
    case 'account':
      return callerKey.account(emailAccount((request.body as { email?: unknown } | undefined)?.email));
    case 'user':
      return callerKey.user(request.principal?.userId ?? 'none');
  }
}

/** preHandler: refuses (429, `retry-after`) the request once its caller is over the cap `name`. */
export function flood(name: FloodName) {
  return async (request: FastifyRequest): Promise<void> => {
    const { floods } = request.server;
    await floods.enforce(name, floodCaller(request, floods.limit(name).per));
  };
}

/** The client's address as a throttling key: IPv6 by /64, IPv4-mapped as IPv4, one spelling. */
export function addressOf(request: FastifyRequest): string {
  return clientAddressKey(clientAddress(request));
}

/**
 * The account an email names, for throttling: its canonical form, or (for input that is not an
 * address) a bounded lower-case spelling, so unknown and malformed accounts count like real ones.
 */
export function emailAccount(email: unknown): string {
  if (typeof email !== 'string') return '';
  try {
    return canonicalEmail(email);
  } catch {
    return email.trim().toLowerCase().slice(0, 320);
  }
}

/** One attempt of `scope` on `account` from the request's client address (and device, when recognised). */
export function attemptOf(request: FastifyRequest, scope: string, account: string, device?: string): Attempt {
  return { scope, account, address: addressOf(request), device };
}
