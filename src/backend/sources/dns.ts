/**
 * DNS lookups for discovery: one name → its sorted addresses and lowest TTL, through given
 * servers (A and AAAA, with TTLs) or the system resolver; and the small pure helpers around
 * them (which addresses are names, how long until the next lookup).
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import type { Address } from "../../util/address.ts";
import { DEFAULTS } from "../../config/defaults.ts";
import { formatDuration } from "../../util/duration.ts";

export interface DiscoveryOptions {
  /** ms; default DEFAULTS.discovery.lookupTimeout. */
  lookupTimeout?: number;
}

/** The addresses of one name, and the lowest TTL of their records in ms (null: unknown). */
export interface Answer {
  addresses: string[];
  ttl: number | null;
}

/** A tcp address whose host is a name to look up (not an IP literal). */
export function isHostname(address: Address): address is { kind: "tcp"; host: string; port: number } {
  return address.kind === "tcp" && isIP(address.host) === 0;
}

/** The form a name is looked up and shared in: lower case, without a trailing dot. */
export function nameOf(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

/** The time until the next lookup after a good answer: min(interval, TTL), at least 1 s. */
export function nextLookupDelay(resolveInterval: number, ttl: number | null): number {
  return Math.max(DEFAULTS.discovery.minInterval, Math.min(resolveInterval, ttl ?? Infinity));
}

/**
 * Looks a name up once: with `servers` (`ip:port`), or with the system resolver when null.
 * Resolves with at least one address, sorted; rejects with an Error whose message says why
 * (`ESERVFAIL`, `ENOTFOUND (no A or AAAA record)`, `timed out after 5s`, `stopped` once
 * `signal` is aborted).
 */
export async function lookup(
  host: string,
  servers: readonly string[] | null,
  timeout: number = DEFAULTS.discovery.lookupTimeout,
  signal?: AbortSignal,
): Promise<Answer> {
  const name = nameOf(host);
  const system = servers === null || name === "localhost" || name.endsWith(".localhost");
  // A fresh resolver per lookup: no answer cached past the schedule, and cancel() ends only this lookup.
  const resolver = system ? null : new dns.Resolver({ timeout: Math.min(2000, timeout), tries: 2 });
  const work = resolver === null ? lookupSystem(name) : lookupServers(resolver, name, servers!);
  const answer = await withinDeadline(work, timeout, signal, () => resolver?.cancel());
  if (answer.addresses.length === 0) throw new Error("ENOTFOUND (no A or AAAA record)");
  answer.addresses = [...new Set(answer.addresses)].sort(compareIps);
  return answer;
}

/**
 * `work` (a DNS query) raced against its deadline: rejects with `timed out after …` once
 * `timeout` ms pass and with `stopped` once `signal` is aborted, calling `cancel` (the
 * resolver's) first.
 */
export async function withinDeadline<T>(work: Promise<T>, timeout: number, signal: AbortSignal | undefined, cancel: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let abort = () => {};
  const deadline = new Promise<never>((_, reject) => {
    const end = (reason: string) => {
      cancel();
      reject(new Error(reason));
    };
    timer = setTimeout(end, timeout, `timed out after ${formatDuration(timeout)}`);
    abort = () => end("stopped");
    if (signal?.aborted) abort();
    signal?.addEventListener("abort", abort);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", abort);
  }
}

async function lookupSystem(name: string): Promise<Answer> {
  try {
    const found = await dns.lookup(name, { all: true });
    return { addresses: found.map((entry) => entry.address), ttl: null };
  } catch (error) {
    throw new Error(errorCode(error));
  }
}

/** A and AAAA at once. A family with no record is empty; any other error fails the whole lookup. */
async function lookupServers(resolver: dns.Resolver, name: string, servers: readonly string[]): Promise<Answer> {
  resolver.setServers(servers as string[]);
  const results = await Promise.allSettled([resolver.resolve4(name, { ttl: true }), resolver.resolve6(name, { ttl: true })]);
  const addresses: string[] = [];
  let ttl = Infinity;
  for (const result of results) {
    if (result.status === "rejected") {
      const code = errorCode(result.reason);
      // Bun reports NODATA (the name exists, not this family) as ENOTFOUND too.
      if (code === "ENOTFOUND" || code === "ENODATA") continue;
      throw new Error(code === "ECANCELLED" ? "cancelled" : code);
    }
    for (const record of result.value) {
      addresses.push(record.address);
      ttl = Math.min(ttl, record.ttl * 1000);
    }
  }
  return { addresses, ttl: addresses.length > 0 ? ttl : null };
}

/** IPv4 before IPv6, then by value. */
function compareIps(a: string, b: string): number {
  const fa = isIP(a);
  const fb = isIP(b);
  if (fa !== fb) return fa - fb;
  if (fa === 4) return ipv4Number(a) - ipv4Number(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

function ipv4Number(ip: string): number {
  return ip.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
}
