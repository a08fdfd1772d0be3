import ipaddr from 'ipaddr.js';

/**
 * The key that groups a client address for throttling: one key per IPv4 address, one per IPv6
 * /64 (what one subscriber or host usually gets, so rotating through its 2^64 addresses gains
 * nothing), IPv4-mapped IPv6 (`::ffff:10.2.0.1`) as the IPv4 address, and one canonical spelling
 * whatever the case or zero compression.
 *
 * @example
 * ```ts
 * clientAddressKey('2001:DB8:0:0:0:0:0:1'); // '2001:db8:0:0::/64'
 * clientAddressKey('::ffff:10.2.0.1'); // '10.2.0.1'
 * ```
 */
export function clientAddressKey(address: string): string {
  // A zone index (`fe80::1%eth0`) names the interface, not the host.
  const bare = address.replace(/%.*$/s, '');
  if (!ipaddr.isValid(bare)) return address.trim().toLowerCase().slice(0, 100);
  const parsed = ipaddr.process(bare);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4).map((part) => part.toString(16));
  return `${parts.join(':')}::/64`;
}

/** What {@link clientAddress} needs of a request (Fastify's, or anything shaped like it). */
export interface AddressedRequest {
  /** The address `trustProxy` resolved: the socket's, or one a trusted proxy wrote in X-Forwarded-For. */
  readonly ip: string | undefined;
  readonly socket: { readonly remoteAddress?: string | undefined } | undefined;
}

/**
 * The client's address as an IP address: the one `trustProxy` resolved when it parses as one,
 * else the socket's. A proxy passes on whatever the client wrote in X-Forwarded-For when it only
 * appends, so `not-an-ip`, `203.0.113.7:443` or a 1 KB string must not become a session's address
 * or a throttling key of the client's choosing.
 *
 * @example
 * ```ts
 * clientAddress({ ip: 'not-an-ip', socket: { remoteAddress: '10.0.0.9' } }); // '10.0.0.9'
 * ```
 */
export function clientAddress(request: AddressedRequest): string {
  const resolved = request.ip;
  if (resolved !== undefined && isIpAddress(resolved)) return resolved;
  const socket = request.socket?.remoteAddress;
  return socket !== undefined && isIpAddress(socket) ? socket : 'unknown';
}

/** Whether `text` is an IPv4 or IPv6 address (a zone index allowed), in a form ipaddr.js reads. */
function isIpAddress(text: string): boolean {
  // ipaddr.isValid also takes IPv4 in octal, hexadecimal or fewer than four parts ('0x7f.1'):
  // only the four-part decimal form is what a proxy writes.
  const bare = text.replace(/%[\w.-]{1,32}$/, '');
  return ipaddr.IPv4.isValidFourPartDecimal(bare) || ipaddr.IPv6.isValid(bare);
}
