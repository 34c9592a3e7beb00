import { promises as dns } from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { Agent, buildConnector } from 'undici';
import type { AddressPolicy } from './address-policy.ts';

/**
 * The HTTP agent web_fetch sends its requests through. The address check
 * sits inside the connection itself: the name is resolved once, the
 * addresses are judged, and the socket connects to exactly those addresses.
 * Checking a name first and connecting later would let a DNS server answer
 * with a public address for the check and a private one for the connection.
 */

/** Resolves a host name to its addresses (tests replace DNS with a table). */
export type Lookup = (hostname: string) => Promise<{ address: string; family: 4 | 6 }[]>;

/** Thrown, through undici, when a connection would reach an address the policy refuses. */
export class BlockedAddressError extends Error {
  override name = 'BlockedAddressError';
  constructor(readonly host: string) {
    super(`the address of ${host} may not be fetched`);
  }
}

export const systemLookup: Lookup = async (hostname) => {
  const found = await dns.lookup(hostname, { all: true, verbatim: true });
  return found.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
};

export interface GuardedAgentOptions {
  policy: AddressPolicy;
  lookup: Lookup;
  /** Time to open a connection at most; the fetch's own deadline usually ends it first. */
  connectTimeoutMs: number;
}

export function createGuardedAgent({ policy, lookup, connectTimeoutMs }: GuardedAgentOptions): Agent {
  const connectByName = buildConnector({ lookup: guardedLookup(policy, lookup), timeout: connectTimeoutMs });
  // Node skips the lookup for a host that already is an IP address, so those are judged here before connecting.
  const connector: buildConnector.connector = (options, callback) => {
    const host = options.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) !== 0 && !policy.allows(host, host)) {
      queueMicrotask(() => callback(new BlockedAddressError(options.hostname), null));
      return;
    }
    connectByName(options, callback);
  };
  return new Agent({
    connect: connector,
    // One keep-alive connection was judged when it opened and only serves the same origin, so reusing it is safe.
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 10_000,
  });
}

/**
 * A lookup for `net.connect`: resolves with `lookup`, refuses the host when
 * any of its addresses is blocked (a name with one private address among
 * public ones is not worth the risk), and answers in the form net asked for.
 */
function guardedLookup(policy: AddressPolicy, lookup: Lookup): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    lookup(hostname).then(
      (found) => {
        if (found.length === 0) {
          callback(Object.assign(new Error(`no addresses for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        if (found.some(({ address }) => !policy.allows(address, hostname))) {
          callback(new BlockedAddressError(hostname), '', 0);
          return;
        }
        const family = familyOf(options.family);
        const wanted = family ? found.filter((a) => a.family === family) : found;
        if (wanted.length === 0) {
          callback(Object.assign(new Error(`no IPv${String(family)} address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        if (options.all) callback(null, wanted.map((a): LookupAddress => ({ address: a.address, family: a.family })));
        else callback(null, wanted[0]!.address, wanted[0]!.family);
      },
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), '', 0),
    );
  };
}

function familyOf(family: LookupOptions['family']): 4 | 6 | undefined {
  if (family === 4 || family === 'IPv4') return 4;
  if (family === 6 || family === 'IPv6') return 6;
  return undefined;
}
