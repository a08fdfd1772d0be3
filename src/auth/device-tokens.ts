import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a device token is recognised after the sign-in that issued it. */
export const DEVICE_TOKEN_TTL_SECONDS = 90 * 86_400;

/** `<device id>.<expiry, unix seconds>.<HMAC>`: 22 + 1 + up to 11 + 1 + 43 characters of base64url and digits. */
export const DEVICE_TOKEN_PATTERN = '^[A-Za-z0-9_-]{22}\\.[0-9]{1,11}\\.[A-Za-z0-9_-]{43}$';
const SHAPE = new RegExp(DEVICE_TOKEN_PATTERN);

/**
 * Device tokens (OWASP's "device cookies"): every successful sign-in gets a new one, bound to the
 * account it signed in to, and later sign-ins send it back. A sign-in presenting a valid one for
 * its account is throttled for that device only (`Attempt.device`), so strangers' failures, which
 * slow the account down for unknown devices, never lock the owner's device out.
 *
 * Stateless: the device id and expiry are signed with an HMAC key derived from the JWT secret,
 * so every instance recognises every token without a table. A token only exempts its bearer from
 * the slowdown others caused; it authenticates nothing, so there is nothing to revoke: an older
 * token of the same device keeps working until it expires, and its failures lock out its own id.
 *
 * @example
 * ```ts
 * const devices = new DeviceTokens([key], () => new Date());
 * const token = devices.issue('ada@example.com');
 * devices.recognise('ada@example.com', token); // the device id
 * devices.recognise('eve@example.com', token); // undefined: another account's token
 * ```
 */
export class DeviceTokens {
  readonly #keys: readonly [string, ...string[]];
  readonly #clock: () => Date;

  /** `keys`: the first signs new tokens; the others (previous JWT secrets' keys) are still recognised. */
  constructor(keys: readonly [string, ...string[]], clock: () => Date) {
    this.#keys = keys;
    this.#clock = clock;
  }

  /** A new token for `account` (the canonical email signed in to), recognised for 90 days. */
  issue(account: string): string {
    const device = randomBytes(16).toString('base64url');
    const expires = Math.floor(this.#clock().getTime() / 1000) + DEVICE_TOKEN_TTL_SECONDS;
    return `${device}.${expires}.${mac(this.#keys[0], account, device, expires)}`;
  }

  /** The device id of `token` when it is a live token issued for `account`; undefined otherwise. */
  recognise(account: string, token: string | undefined): string | undefined {
    if (token === undefined || !SHAPE.test(token)) return undefined;
    const [device = '', expiresText = '', signature = ''] = token.split('.');
    const expires = Number(expiresText);
    if (expires * 1000 <= this.#clock().getTime()) return undefined;
    const presented = Buffer.from(signature);
    const valid = this.#keys.some((key) => timingSafeEqual(Buffer.from(mac(key, account, device, expires)), presented));
    return valid ? device : undefined;
  }
}

function mac(key: string, account: string, device: string, expires: number): string {
  return createHmac('sha256', key).update(`device\0${account}\0${device}\0${expires}`).digest('base64url');
}
