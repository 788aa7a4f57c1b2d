/**
 * Addresses of listeners and targets: `host:port`, `[v6]:port`, `name:port` and `unix:/path`.
 * Parsing is pure; hostnames are resolved by the socket layer when it dials or binds.
 */
import { isIP } from "node:net";

export type Address = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export class AddressError extends Error {}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Parses an address. `allowPortZero` is for listeners (port 0 = pick a free port).
 * Throws AddressError with a message that quotes the input.
 */
export function parseAddress(input: string, allowPortZero = false): Address {
  const text = input.trim();
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") throw new AddressError(`"${input}": unix: needs a path`);
    return { kind: "unix", path };
  }
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") throw new AddressError(`"${input}": expected [ipv6]:port`);
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!host.includes(":")) throw new AddressError(`"${input}": "${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw new AddressError(`"${input}": expected host:port`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) throw new AddressError(`"${input}": write IPv6 addresses as [addr]:port`);
    if (host === "") throw new AddressError(`"${input}": missing host`);
    const v4 = IPV4.exec(host);
    if (v4) {
      if (v4.slice(1).some((octet) => Number(octet) > 255)) throw new AddressError(`"${input}": "${host}" is not an IPv4 address`);
    } else if (!HOSTNAME.test(host)) {
      throw new AddressError(`"${input}": "${host}" is not a valid hostname`);
    }
  }
  if (!/^\d{1,5}$/.test(portText)) throw new AddressError(`"${input}": port "${portText}" is not a number`);
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowPortZero)) {
    throw new AddressError(`"${input}": port ${port} is out of range (${allowPortZero ? 0 : 1}-65535)`);
  }
  return { kind: "tcp", host, port };
}

/** Formats an address the way it is written on the command line. */
export function formatAddress(address: Address): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  return formatHostPort(address.host, address.port);
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A DNS server of `dns_servers`: an IP address with an optional port (default 53), returned as
 * `ip:port` / `[ip]:port`. Throws an Error quoting the input; a name is refused (it would need
 * a resolver itself).
 */
export function parseDnsServer(input: string): string {
  const text = input.trim();
  if (isIP(text) !== 0) return formatHostPort(text, 53);
  const address = parseAddress(text);
  if (address.kind !== "tcp") throw new Error(`"${input}": a DNS server is an IP address, e.g. "127.0.0.1:53"`);
  if (isIP(address.host) === 0) throw new Error(`"${input}": a DNS server must be an IP address, not a name`);
  return formatAddress(address);
}

/** The most ports one listen range may span (`127.0.0.1:7000-8023`): each port is its own listener. */
export const MAX_PORT_RANGE = 1024;

/** A listen address over consecutive ports, `host:first-last` (config/ranges.ts makes one listener per port). */
export interface PortRange {
  kind: "range";
  host: string;
  first: number;
  last: number;
}

/**
 * A listen address: an Address (port 0 allowed), or a port range `host:first-last` /
 * `[v6]:first-last` of at most MAX_PORT_RANGE ports, first ≤ last, no port 0. A unix path is
 * taken as written (it has no port, so no range). Throws AddressError quoting the input.
 */
export function parseListenAddress(input: string): Address | PortRange {
  const text = input.trim();
  const range = /^(.*):(\d{1,5})-(\d{1,5})$/.exec(text);
  if (range === null || text.startsWith("unix:")) return parseAddress(input, true);
  const [, hostText, firstText, lastText] = range as unknown as [string, string, string, string];
  const first = Number(firstText);
  const last = Number(lastText);
  let host: string;
  try {
    host = (parseAddress(`${hostText}:1`) as { host: string }).host;
  } catch (error) {
    throw new AddressError((error as Error).message.replace(`"${hostText}:1"`, `"${input}"`));
  }
  for (const port of [first, last]) {
    if (port === 0 || port > 65535) throw new AddressError(`"${input}": port ${port} is out of range (a range takes 1-65535)`);
  }
  if (first > last) throw new AddressError(`"${input}": the range starts after it ends (${first} > ${last})`);
  const ports = last - first + 1;
  if (ports > MAX_PORT_RANGE) throw new AddressError(`"${input}": ${ports} ports; a range spans at most ${MAX_PORT_RANGE}`);
  return { kind: "range", host, first, last };
}

/** `127.0.0.1:7000-7010`, `[::1]:7000-7010`. */
export function formatPortRange(range: PortRange): string {
  return `${formatHostPort(range.host, range.first)}-${range.last}`;
}
