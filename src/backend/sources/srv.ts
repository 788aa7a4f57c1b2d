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
 * Timing is DNS discovery's (DEFAULTS.discovery): the name is asked again `min(resolve_interval,
 * TTL)` after its last answer, never sooner than 1 s, and `min(resolve_interval, 5s)` after a
 * failure. node:dns gives no TTL for SRV records, so the TTL is the lowest of the hosts' A/AAAA
 * records (known with `dns_servers`). A failed SRV query (no answer, SERVFAIL, NXDOMAIN, a
 * timeout) keeps the last good targets; a host that fails to resolve keeps its last good
 * addresses (none before its first). `dns_servers` applies; without it, the system's resolver
 * configuration.
 *
 * A target source (source.ts): `expand` adds the targets of a backend's SRV names to its listed
 * ones (the config keeps hostname targets out of such backends, so this list is the whole
 * list); `update` follows the live config; `replaceTargets` applies a change.
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { DEFAULTS } from "../../config/defaults.ts";
import type { BackendConfig, Config, SrvTargetConfig } from "../../config/types.ts";
import { formatAddress, formatHostPort } from "../../util/address.ts";
import { formatDuration } from "../../util/duration.ts";
import { event, type Logger } from "../../util/log.ts";
import type { Backend, TargetOptions } from "../backend.ts";
import { lookup, nameOf, nextLookupDelay } from "./dns.ts";
import type { SourceKind, SourceStatus, TargetSource } from "./source.ts";

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
  let timer: ReturnType<typeof setTimeout> | undefined;
  let abort = () => {};
  const deadline = new Promise<never>((_, reject) => {
    const end = (reason: string) => {
      resolver.cancel();
      reject(new Error(reason));
    };
    timer = setTimeout(end, timeout, `timed out after ${formatDuration(timeout)}`);
    abort = () => end("stopped");
    if (signal?.aborted) abort();
    signal?.addEventListener("abort", abort);
  });
  try {
    const records = await Promise.race([
      resolver.resolveSrv(name).catch((error: unknown) => {
        throw new Error(errorCode(error));
      }),
      deadline,
    ]);
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
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", abort);
  }
}

/** One SRV name: its last good answer, its schedule and the lookup in flight. */
class SrvName {
  entries: SrvEntry[] | null = null;
  interval: number = DEFAULTS.discovery.resolveInterval;
  ttl: number | null = null;
  failures = 0;
  /** Hosts whose last lookup failed (logged once each until they resolve). */
  failedHosts = new Set<string>();
  pending: Promise<void> | null = null;
  askedWith = "";
  timer: ReturnType<typeof setTimeout> | undefined;
  used = false;
  removed = false;

  constructor(
    readonly source: SrvSource,
    readonly name: string,
  ) {}

  schedule(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(srvDue, delay, this);
    this.timer.unref();
  }

  remove(): void {
    this.removed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Each host's last good addresses. */
  known(): Map<string, string[]> {
    return new Map((this.entries ?? []).map((entry) => [entry.host, entry.addresses]));
  }
}

function srvDue(name: SrvName): void {
  name.timer = undefined;
  void name.source.lookupNow(name);
}

function delayOf(name: SrvName): number {
  if (name.failures > 0) return Math.max(DEFAULTS.discovery.minInterval, Math.min(name.interval, DEFAULTS.discovery.retryInterval));
  return nextLookupDelay(name.interval, name.ttl);
}

/** `127.0.0.1:6380 (a.example.internal, weight 5), 127.0.0.2:6381 (b.example.internal, weight 1, backup)`. */
function describeTargets(targets: readonly TargetOptions[]): string {
  if (targets.length === 0) return "no targets";
  return targets.map((t) => `${formatAddress(t.address)} (${t.name}, weight ${t.weight}${t.backup ? ", backup" : ""})`).join(", ");
}

export class SrvSource implements TargetSource {
  readonly kind = "srv";
  private readonly names = new Map<string, SrvName>();
  private users: { backend: Backend; options: BackendConfig }[] = [];
  private servers: readonly string[] | null | undefined = undefined;
  private readonly stopping = new AbortController();
  private stopped = false;

  constructor(
    private readonly log: Logger,
    private readonly lookupTimeout: number = DEFAULTS.discovery.lookupTimeout,
  ) {}

  /** The targets an SRV target gives now (none before its first answer). */
  targetsOf(srv: SrvTargetConfig): TargetOptions[] {
    const entries = this.names.get(srv.srv)?.entries ?? [];
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

  /** Looks up the SRV names of `config` that have no answer yet, with its `dns_servers`. Never rejects. */
  async prefetch(config: Config): Promise<void> {
    if (this.stopped) return;
    const servers = config.dnsServers ?? null;
    const waits: Promise<void>[] = [];
    for (const [key, interval] of srvNamesOf(config)) {
      let name = this.names.get(key);
      if (name === undefined) {
        name = new SrvName(this, key);
        name.interval = interval;
        this.names.set(key, name);
      }
      if (name.pending !== null) waits.push(name.pending);
      else if (name.entries === null) waits.push(this.lookupNow(name, servers));
    }
    await Promise.all(waits);
  }

  /** Follows the SRV names of the live config: new ones are looked up at once, those that stay keep their answer and schedule. */
  update(config: Config, backends: ReadonlyMap<string, Backend>): void {
    if (this.stopped) return;
    const wanted = srvNamesOf(config);
    this.users = [];
    for (const options of config.backends.values()) {
      const backend = backends.get(options.name);
      if (backend !== undefined && (options.srv ?? []).length > 0) this.users.push({ backend, options });
    }
    for (const [key, name] of this.names) {
      if (wanted.has(key)) continue;
      name.remove();
      this.names.delete(key);
    }
    const before = this.servers;
    this.servers = config.dnsServers ?? null;
    const newServers = before !== undefined && String(before) !== String(this.servers);
    for (const [key, interval] of wanted) {
      let name = this.names.get(key);
      if (name === undefined) {
        name = new SrvName(this, key);
        this.names.set(key, name);
      }
      const changed = name.used && name.interval !== interval;
      name.used = true;
      name.interval = interval;
      if (name.pending !== null) continue;
      if (newServers || (name.entries === null && name.failures === 0)) void this.lookupNow(name);
      else if (name.timer === undefined || changed) name.schedule(delayOf(name));
    }
  }

  /** None: what the records gave shows in the backend's targets. */
  status(): Map<string, SourceStatus> {
    return new Map();
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    for (const name of this.names.values()) name.remove();
    this.names.clear();
    this.users = [];
  }

  /** @internal Starts a lookup of `name` unless one is in flight; resolves when it has ended. */
  lookupNow(name: SrvName, servers: readonly string[] | null = this.servers ?? null): Promise<void> {
    if (name.pending !== null) return name.pending;
    clearTimeout(name.timer);
    name.timer = undefined;
    name.askedWith = String(servers);
    name.pending = lookupSrv(name.name, servers, name.known(), this.lookupTimeout, this.stopping.signal).then(
      (answer) => this.answered(name, answer),
      (error: Error) => this.failed(name, error.message),
    );
    return name.pending;
  }

  private answered(name: SrvName, answer: SrvAnswer): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    const before = name.entries === null ? null : srvTargets(name.entries, 0);
    const after = srvTargets(answer.entries, 0);
    const failures = name.failures;
    name.entries = answer.entries;
    name.ttl = answer.ttl;
    name.failures = 0;
    for (const { host, reason } of answer.failed) {
      if (name.failedHosts.has(host)) continue;
      name.failedHosts.add(host);
      this.log.warn(event(`${name.name}: host ${host} did not resolve (${reason}); keeping its last addresses`, { name: name.name, host, reason }));
    }
    for (const host of name.failedHosts) if (!answer.failed.some((failed) => failed.host === host)) name.failedHosts.delete(host);
    const key = (targets: readonly TargetOptions[]) => targets.map((t) => `${formatAddress(t.address)}/${t.weight}/${t.backup}`).join();
    const changed = before === null || key(before) !== key(after);
    const list = describeTargets(after);
    if (failures > 0) {
      const times = failures === 1 ? "1 failed lookup" : `${failures} failed lookups`;
      this.log.info(event(`${name.name} resolved again: ${list} (after ${times})`, { name: name.name, failures }));
    } else if (before === null) {
      this.log.info(event(`${name.name} resolved to ${list}`, { name: name.name }));
    } else if (changed) {
      const keys = (targets: readonly TargetOptions[]) => targets.map((t) => formatAddress(t.address));
      const added = keys(after).filter((k) => !keys(before).includes(k));
      const removed = keys(before).filter((k) => !keys(after).includes(k));
      const parts = [added.length > 0 ? `added ${added.join(", ")}` : "", removed.length > 0 ? `removed ${removed.join(", ")}` : ""].filter(Boolean);
      this.log.info(event(`${name.name} now resolves to ${list}${parts.length > 0 ? ` (${parts.join("; ")})` : ""}`, { name: name.name, added, removed }));
    } else {
      this.log.debug(`${name.name} still resolves to ${list}; next lookup in ${formatDuration(delayOf(name))}`);
    }
    if (changed) this.apply(name.name);
    if (name.used) name.schedule(name.askedWith === String(this.servers ?? null) ? delayOf(name) : 0);
  }

  private failed(name: SrvName, reason: string): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    name.failures++;
    if (name.failures === 1) {
      const keeping = name.entries === null ? "no targets from this name until it resolves" : "keeping its last targets until a lookup succeeds";
      this.log.warn(
        event(`${name.name}: SRV lookup failed (${reason}); ${keeping}; retrying every ${formatDuration(delayOf(name))}`, { name: name.name, reason }),
      );
    } else {
      this.log.debug(`${name.name}: SRV lookup failed again (${reason})`);
    }
    if (name.used) name.schedule(name.askedWith === String(this.servers ?? null) ? delayOf(name) : 0);
  }

  /** Gives every backend that uses `srv` its targets from the current answers. */
  private apply(srv: string): void {
    for (const { backend, options } of this.users) {
      if ((options.srv ?? []).some((entry) => entry.srv === srv)) backend.replaceTargets(this.expand(options.targets, options));
    }
  }
}

/** The SRV names of a config, each with the shortest resolve interval of the backends that use it. */
function srvNamesOf(config: Config): Map<string, number> {
  const names = new Map<string, number>();
  for (const backend of config.backends.values()) {
    const interval = backend.resolveInterval ?? DEFAULTS.discovery.resolveInterval;
    for (const srv of backend.srv ?? []) names.set(srv.srv, Math.min(names.get(srv.srv) ?? Infinity, interval));
  }
  return names;
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
  create: (log) => new SrvSource(log.withTag("srv")),
};
