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
