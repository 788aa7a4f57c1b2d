/**
 * SRV discovery: a target `{ srv = "_redis._tcp.example.internal" }` becomes one target per
 * address of each SRV record's host, with the record's port, and follows the records as they
 * change (RFC 2782):
 *
 * - **priority**: the records with the lowest priority give the primary targets; every other
 *   record gives backup targets (used only when no primary is available). A backend has two
 *   tiers, so priorities 10, 20 and 30 are primaries, backups, backups: the 20s and the 30s
 *   share the backup tier, by weight.
 * - **weight**: the record's weight is each of its targets' weight, and 0 counts as 1 (a
 *   target's weight is at least 1; with weights such as 10 or 100 beside it, a 0-weight record
 *   still gets the small share RFC 2782 asks for, and a tier of 0s shares evenly).
 * - **port**: the record's; **addresses**: the record's host looked up as a hostname target is
 *   (A and AAAA, dns.ts); a host that is an IP literal is taken as it is. A record whose host is
 *   `.` (the service is decidedly not available) gives no target.
 *
 * Timing is DNS discovery's (name-following.ts): the name is asked again `min(resolve_interval,
 * TTL)` after its last answer, never sooner than 1 s, and `min(resolve_interval, 5s)` after a
 * failure. node:dns gives no TTL for SRV records, so the TTL is the lowest of the hosts' A/AAAA
 * records (known with `dns_servers`). A failed SRV query (no answer, SERVFAIL, NXDOMAIN, a
 * timeout) keeps the last good targets; a host that fails to resolve keeps its last good
 * addresses (none before its first). `dns_servers` applies; without it, the system's resolver
 * configuration.
 *
 * A target source (source.ts): `expand` adds the targets of a backend's SRV names to its listed
 * ones (hostname targets among them already expanded by DNS discovery; an address met twice is
 * the first's). Following the names (prefetch, schedule, last good answers, log lines, applying a
 * change) is name-following.ts; this file has what is SRV's own: the SRV query, the records'
 * priorities, weights and ports.
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { DEFAULTS } from "../../config/defaults.ts";
import type { BackendConfig, SrvTargetConfig } from "../../config/types.ts";
import { formatAddress, formatHostPort } from "../../util/address.ts";
import { event, type Logger } from "../../util/log.ts";
import type { TargetOptions } from "../backend.ts";
import { lookup, nameOf, withinDeadline } from "./dns.ts";
import { type AnswerView, type FollowedName, type NameFields, NameFollower } from "./name-following.ts";
import type { Expand, SourceKind } from "./source.ts";

/** One SRV record with the addresses of its host (sorted; empty when it has none yet). */
export interface SrvEntry {
  host: string;
  port: number;
  priority: number;
  weight: number;
  addresses: string[];
}

/** An SRV answer: its records in answer order, the lowest TTL of their hosts' addresses (ms; null: unknown), and the hosts that failed to resolve. */
export interface SrvAnswer {
  entries: SrvEntry[];
  ttl: number | null;
  failed: { host: string; reason: string }[];
}

/**
 * The targets of SRV entries: the lowest priority's are primaries, the others backups; weight 0
 * counts as 1; each named `host:port` after its record. An address met twice is used once, with
 * the first record's settings.
 */
export function srvTargets(entries: readonly SrvEntry[], maxConnections: number): TargetOptions[] {
  const lowest = Math.min(...entries.filter((entry) => entry.addresses.length > 0).map((entry) => entry.priority));
  const out: TargetOptions[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    for (const ip of entry.addresses) {
      const address = { kind: "tcp" as const, host: ip, port: entry.port };
      const key = formatAddress(address);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({
        address,
        weight: Math.max(1, entry.weight),
        maxConnections,
        backup: entry.priority !== lowest,
        name: formatHostPort(entry.host, entry.port),
      });
    }
  }
  return out;
}

/**
 * Asks the SRV records of `name` once, then the addresses of their hosts, with `servers`
 * (`ip:port`) or the system's resolver configuration when null. `known` gives a host's last
 * good addresses, kept when its lookup fails. Rejects with an Error whose message says why
 * (`ENOTFOUND`, `ESERVFAIL`, `timed out after 5s`, `stopped`) when the SRV query fails.
 */
export async function lookupSrv(
  name: string,
  servers: readonly string[] | null,
  known: ReadonlyMap<string, readonly string[]> = new Map(),
  timeout: number = DEFAULTS.discovery.lookupTimeout,
  signal?: AbortSignal,
): Promise<SrvAnswer> {
  const resolver = new dns.Resolver({ timeout: Math.min(2000, timeout), tries: 2 });
  if (servers !== null) resolver.setServers(servers as string[]);
  const query = resolver.resolveSrv(name).catch((error: unknown) => {
    throw new Error(errorCode(error));
  });
  const records = await withinDeadline(query, timeout, signal, () => resolver.cancel());
  const hosts = [...new Set(records.map((record) => nameOf(record.name)).filter((host) => host !== ""))];
  const failed: { host: string; reason: string }[] = [];
  let ttl = Infinity;
  const addresses = new Map<string, string[]>();
  await Promise.all(
    hosts.map(async (host) => {
      if (isIP(host) !== 0) return void addresses.set(host, [host]);
      try {
        const answer = await lookup(host, servers, timeout, signal);
        addresses.set(host, answer.addresses);
        if (answer.ttl !== null) ttl = Math.min(ttl, answer.ttl);
      } catch (error) {
        failed.push({ host, reason: (error as Error).message });
        addresses.set(host, [...(known.get(host) ?? [])]);
      }
    }),
  );
  const entries = records
    .filter((record) => nameOf(record.name) !== "")
    .map((record) => ({
      host: nameOf(record.name),
      port: record.port,
      priority: record.priority,
      weight: record.weight,
      addresses: addresses.get(nameOf(record.name)) ?? [],
    }))
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight || (a.host < b.host ? -1 : a.host > b.host ? 1 : a.port - b.port));
  return { entries, ttl: ttl === Infinity ? null : ttl, failed };
}

/** `127.0.0.1:6380 (a.example.internal, weight 5), 127.0.0.2:6381 (b.example.internal, weight 1, backup)`. */
function describeTargets(targets: readonly TargetOptions[]): string {
  if (targets.length === 0) return "no targets";
  return targets.map((t) => `${formatAddress(t.address)} (${t.name}, weight ${t.weight}${t.backup ? ", backup" : ""})`).join(", ");
}

export class SrvSource extends NameFollower<SrvAnswer> {
  readonly kind = "srv";

  constructor(log: Logger, lookupTimeout: number = DEFAULTS.discovery.lookupTimeout, expand?: Expand) {
    super(log, lookupTimeout, "SRV lookup", expand);
  }

  /** The targets an SRV target gives now (none before its first answer). */
  targetsOf(srv: SrvTargetConfig): TargetOptions[] {
    const entries = this.names.get(srv.srv)?.answer?.entries ?? [];
    return srvTargets(entries, srv.maxConnections);
  }

  /** The listed targets, then those of the backend's SRV names; an address met twice is used once (the first). */
  expand(targets: readonly TargetOptions[], backend: BackendConfig): TargetOptions[] {
    if ((backend.srv ?? []).length === 0) return [...targets];
    const out = [...targets];
    const seen = new Set(targets.map((target) => formatAddress(target.address)));
    for (const srv of backend.srv ?? []) {
      for (const target of this.targetsOf(srv)) {
        const key = formatAddress(target.address);
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(target);
      }
    }
    return out;
  }

  /** The SRV names of a backend. */
  protected namesOf(backend: BackendConfig): string[] {
    return (backend.srv ?? []).map((srv) => srv.srv);
  }

  /** The records, then their hosts; a host that fails keeps its last good addresses. */
  protected ask(name: FollowedName<SrvAnswer>, servers: readonly string[] | null, signal: AbortSignal): Promise<SrvAnswer> {
    const known = new Map((name.answer?.entries ?? []).map((entry) => [entry.host, entry.addresses]));
    return lookupSrv(name.name, servers, known, this.lookupTimeout, signal);
  }

  /** A host that did not resolve is logged once (warn) until it does again. */
  protected override onAnswer(name: string, before: SrvAnswer | null, answer: SrvAnswer): void {
    for (const { host, reason } of answer.failed) {
      if (before?.failed.some((failed) => failed.host === host)) continue;
      this.log.warn(event(`${name}: host ${host} did not resolve (${reason}); keeping its last addresses`, { name, host, reason }));
    }
  }

  /** The targets the answer gives, compared by address, weight and tier. */
  protected view(answer: SrvAnswer): AnswerView {
    const targets = srvTargets(answer.entries, 0);
    return {
      list: describeTargets(targets),
      key: targets.map((t) => `${formatAddress(t.address)}/${t.weight}/${t.backup}`).join(),
      addresses: targets.map((t) => formatAddress(t.address)),
    };
  }

  protected fields(): NameFields {
    return {};
  }

  protected kept(): string {
    return "its last targets";
  }
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? (code === "ECANCELLED" ? "cancelled" : code) : error instanceof Error ? error.message : String(error);
}

/** SRV targets: no status line, nothing to merge; `check` lists them among the targets. */
export const SRV: SourceKind<"srv"> = {
  kind: "srv",
  summary: "",
  merge: (into, from) => ({ ...into, ...from }),
  describe: () => null,
  create: (log, expand) => new SrvSource(log.withTag("srv"), DEFAULTS.discovery.lookupTimeout, expand),
};
