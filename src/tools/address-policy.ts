import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Which IP addresses web_fetch may connect to. A model can be talked into
 * fetching any URL a page or a user hands it, so everything that is not a
 * plain public unicast address is refused: the server's own loopback, the
 * operator's private networks, the cloud metadata endpoints, and the IPv6
 * forms that smuggle one of those inside (mapped, compatible, NAT64, 6to4).
 * The operator may let named private hosts through (an intranet wiki).
 */

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** IPv4 ranges refused whatever the library's range table says, so a change there never opens them. */
const BLOCKED_V4 = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8',
  '100.64.0.0/10', // carrier-grade NAT: shared with other customers of the provider
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local, where 169.254.169.254 answers with cloud credentials
  '172.16.0.0/12',
  '192.0.0.0/24', // protocol assignments, includes some providers' metadata addresses
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, with 255.255.255.255 (broadcast) at its end
].map((cidr) => ipaddr.IPv4.parseCIDR(cidr));

/** IPv6 ranges refused outright (the forms with an IPv4 inside are judged by it, below). */
const BLOCKED_V6 = [
  '::/96', // unspecified, loopback and the deprecated IPv4-compatible form ::a.b.c.d
  '::ffff:0:0:0/96', // IPv4-translated
  '64:ff9b:1::/48', // NAT64 for local use: whatever sits behind it is the operator's network
  '100::/64', // discard
  '2001::/32', // Teredo: tunnels to an IPv4 address that is hidden in the bits
  '2001:db8::/32',
  '3fff::/20',
  'fc00::/7', // unique local, includes AWS's metadata address fd00:ec2::254
  'fe80::/10',
  'fec0::/10', // the old site-local range, still routed inside some networks
  'ff00::/8',
].map((cidr) => ipaddr.IPv6.parseCIDR(cidr));

/** AWS's IPv6 metadata endpoint, named on its own so it stays blocked even if the ranges above change. */
const AWS_METADATA_V6 = ipaddr.IPv6.parse('fd00:ec2::254');

/**
 * Why an address may not be fetched ('loopback', 'private', 'linkLocal'…),
 * or undefined when it is an ordinary public address. Strings that are not a
 * canonical IP address are refused too: the check must judge exactly what the
 * socket would connect to.
 */
export function blockedReason(address: string): string | undefined {
  if (isIP(stripBrackets(address)) === 0) return 'invalid';
  let parsed: Address;
  try {
    parsed = ipaddr.parse(stripBrackets(address));
  } catch {
    return 'invalid';
  }
  return parsed.kind() === 'ipv4' ? v4Reason(parsed as ipaddr.IPv4) : v6Reason(parsed as ipaddr.IPv6);
}

function v4Reason(address: ipaddr.IPv4): string | undefined {
  const range = address.range();
  if (range !== 'unicast') return range;
  if (BLOCKED_V4.some((cidr) => address.match(cidr))) return 'reserved';
  return undefined;
}

function v6Reason(address: ipaddr.IPv6): string | undefined {
  // These carry an IPv4 address the packets end up at, so that address decides.
  const embedded = embeddedIPv4(address);
  if (embedded) {
    const inner = v4Reason(embedded);
    return inner === undefined ? undefined : `${inner} (embedded in IPv6)`;
  }
  if (address.match(AWS_METADATA_V6, 128)) return 'metadata';
  const range = address.range();
  if (range !== 'unicast') return range;
  if (BLOCKED_V6.some((cidr) => address.match(cidr))) return 'reserved';
  return undefined;
}

/** The IPv4 address inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address. */
function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const p = address.parts;
  const fromWords = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  if (address.isIPv4MappedAddress()) return address.toIPv4Address();
  if (p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0) return fromWords(p[6]!, p[7]!);
  if (p[0] === 0x2002) return fromWords(p[1]!, p[2]!);
  return undefined;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** An IPv4-mapped address stands for its IPv4 address, so an allowlisted 10.0.0.5 also covers ::ffff:10.0.0.5. */
function unmapped(address: Address): Address {
  return address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() ? (address as ipaddr.IPv6).toIPv4Address() : address;
}

/**
 * The operator's exceptions plus the rules above. Allowlist entries are host
 * names (compared case-insensitively with the URL's host), IP addresses or
 * CIDRs; an entry that names a host lets through whatever that host resolves
 * to, one that names addresses lets those addresses through for any host.
 */
export class AddressPolicy {
  private readonly names = new Set<string>();
  private readonly ranges: [Address, number][] = [];

  constructor(allowedPrivateHosts: readonly string[] = []) {
    for (const raw of allowedPrivateHosts) {
      const entry = stripBrackets(raw.trim());
      if (ipaddr.isValidCIDR(entry)) {
        const [net, bits] = ipaddr.parseCIDR(entry);
        const mapped = net.kind() === 'ipv6' && (net as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96;
        this.ranges.push(mapped ? [unmapped(net), bits - 96] : [net, bits]);
      } else if (isIP(entry) !== 0) {
        const address = unmapped(ipaddr.parse(entry));
        this.ranges.push([address, address.kind() === 'ipv4' ? 32 : 128]);
      } else {
        this.names.add(normalHost(entry));
      }
    }
  }

  /** Whether the URL host `host` may be reached at `address`. */
  allows(address: string, host?: string): boolean {
    if (blockedReason(address) === undefined) return true;
    if (host !== undefined && this.names.has(normalHost(host))) return true;
    if (isIP(stripBrackets(address)) === 0) return false;
    const parsed = unmapped(ipaddr.parse(stripBrackets(address)));
    return this.ranges.some(([net, bits]) => net.kind() === parsed.kind() && parsed.match(net, bits));
  }
}

/** Host names compare without case, brackets or the trailing dot of a fully qualified name. */
function normalHost(host: string): string {
  return stripBrackets(host).toLowerCase().replace(/\.$/, '');
}
