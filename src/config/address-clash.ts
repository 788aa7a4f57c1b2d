import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { formatAddress, formatHostPort, type Address } from "../util/address.ts";
import { DEFAULTS } from "./defaults.ts";
import type { Config } from "./types.ts";

/** Looks a host name up as a bind does (the first address); null when it does not resolve. */
export type HostLookup = (host: string) => Promise<string | null>;

const systemLookup: HostLookup = async (host) => {
  const timeout = new Promise<null>((resolve) => setTimeout(resolve, DEFAULTS.discovery.lookupTimeout, null).unref());
  const found = lookup(host).then(
    (answer) => answer.address,
    () => null,
  );
  return await Promise.race([found, timeout]);
};

/**
 * Listen addresses (listeners and `[admin] listen`) that name the same socket once host names
 * are resolved, or that overlap a wildcard on the same port (`0.0.0.0:P` takes every IPv4
 * address, `[::]:P` every address): `listeners[1].listen: localhost:7000 is 127.0.0.1:7000,
 * which listeners[0] already listens on`. The bind would fail with "address already in use",
 * which reads as if another program held the port. Async (it resolves names), so it runs after
 * the synchronous validation: in `check` and in `serve` before anything is bound. Addresses
 * that are the same as written are reported by `checkReferences`; names that do not resolve
 * are left to the bind.
 */
export async function checkAddressClashes(config: Config, resolveHost: HostLookup = systemLookup): Promise<string[]> {
  const entries: { at: string; owner: string; address: Address; udp?: boolean }[] = config.listeners.map((listener, i) => ({
    at: `listeners[${i}].listen`,
    owner: `listeners[${i}]`,
    address: listener.listen,
    // a UDP socket never clashes with a TCP one on the same address
    ...(listener.protocol === "udp" ? { udp: true } : {}),
  }));
  if (config.admin !== undefined) entries.push({ at: "admin.listen", owner: "the admin", address: config.admin.listen });
  const resolved = await Promise.all(
    entries.map(async (entry) => {
      const { address } = entry;
      if (address.kind !== "tcp" || address.port === 0) return null;
      const ip = isIP(address.host) !== 0 ? address.host : await resolveHost(address.host);
      return ip === null ? null : { ...entry, ip: ip.toLowerCase(), port: address.port };
    }),
  );
  const errors: string[] = [];
  const seen: { owner: string; ip: string; port: number; text: string; udp: boolean }[] = [];
  for (const entry of resolved) {
    if (entry === null) continue;
    const text = formatAddress(entry.address);
    const udp = entry.udp === true;
    const same = seen.find((other) => other.port === entry.port && other.ip === entry.ip && other.udp === udp);
    const overlap = seen.find((other) => other.port === entry.port && other.udp === udp && overlaps(other.ip, entry.ip));
    if (same !== undefined && same.text.toLowerCase() !== text.toLowerCase()) {
      const resolvedText = formatHostPort(entry.ip, entry.port);
      const what = resolvedText === text ? `${text} is ${same.text}` : `${text} is ${resolvedText}`;
      errors.push(`${entry.at}: ${what}, which ${same.owner} already listens on`);
    } else if (same === undefined && overlap !== undefined) {
      errors.push(`${entry.at}: ${text} overlaps ${overlap.text}, which ${overlap.owner} already listens on (${wildcardWords(overlap.ip, entry.ip)})`);
    }
    if (same === undefined) seen.push({ owner: entry.owner, ip: entry.ip, port: entry.port, text, udp });
  }
  return errors;
}

const IPV4_ANY = "0.0.0.0";
const IPV6_ANY = "::";

/** Two different IPs whose binds on one port collide: one is a wildcard that covers the other (`::` is dual-stack). */
function overlaps(a: string, b: string): boolean {
  const covers = (wildcard: string, ip: string) => (wildcard === IPV6_ANY ? true : wildcard === IPV4_ANY && isIP(ip) === 4);
  return a !== b && (covers(a, b) || covers(b, a));
}

function wildcardWords(a: string, b: string): string {
  const wildcard = a === IPV6_ANY || (a === IPV4_ANY && b !== IPV6_ANY) ? a : b;
  return wildcard === IPV6_ANY ? ":: listens on every address of this machine, IPv4 too" : "0.0.0.0 listens on every IPv4 address of this machine";
}
