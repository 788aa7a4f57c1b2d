/**
 * DNS discovery: a target given as a hostname (`redis.svc:6379`) becomes one target per A/AAAA
 * address of that name, and follows the name as its addresses change.
 *
 * - Each name is looked up again `min(resolve_interval, TTL)` after its last answer, and never
 *   sooner than 1 s. The TTL is known only with `dns_servers`; the system resolver gives none,
 *   so there it is `resolve_interval`. A failed lookup is tried again after
 *   `min(resolve_interval, 5s)`. Lookups of one name never overlap: the next is scheduled when
 *   the previous one has ended (or timed out after 5 s).
 * - A lookup that fails (no answer, SERVFAIL, a timeout, or a name with no address at all)
 *   keeps the last good addresses. It is logged once (warn) until a lookup succeeds again
 *   (info "resolved again").
 * - With `dns_servers` the names are asked of those servers (A and AAAA, each with its TTL);
 *   without, of the system resolver (`getaddrinfo`: /etc/hosts, then DNS). `localhost` and
 *   `*.localhost` always go to the system resolver.
 * - IP literals and unix paths are never looked up.
 *
 * A target source (source.ts): the router holds one Discovery among its sources. It is told
 * the live config and backends on every (re)load (`update`), and replaces a backend's targets
 * through `Backend.replaceTargets` when a name's addresses change. State is kept by name across
 * reloads: a name that stays keeps its addresses and its schedule. The Discovery owns its timers
 * and lookups; `stop()` ends them. It reports no status of its own (the targets show what it
 * found).
 */
import { formatAddress } from "../../util/address.ts";
import type { Backend, TargetOptions } from "../backend.ts";
import type { Config } from "../../config/types.ts";
import { formatDuration } from "../../util/duration.ts";
import { DEFAULTS } from "../../config/defaults.ts";
import { isHostname, lookup, nameOf, nextLookupDelay, type Answer, type DiscoveryOptions } from "./dns.ts";
import { event, type Logger } from "../../util/log.ts";
import type { SourceKind, SourceStatus, TargetSource } from "./source.ts";

export { isHostname, lookup, nameOf, nextLookupDelay } from "./dns.ts";
export type { Answer, DiscoveryOptions } from "./dns.ts";

/** One name: its last good addresses, its schedule and the lookup in flight. */
class Name {
  /** The last good answer, sorted; null until the first one. */
  addresses: string[] | null = null;
  /** The shortest resolve interval of the backends that use the name. */
  interval: number = DEFAULTS.discovery.resolveInterval;
  /** Used by the live config (false for a name only looked up ahead of a reload). */
  used = false;
  /** The TTL of the last good answer in ms; null when unknown. */
  ttl: number | null = null;
  /** Failed lookups since the last good one; the first is logged. */
  failures = 0;
  pending: Promise<void> | null = null;
  /** The servers of the last lookup (`String(servers)`), to notice a change of servers meanwhile. */
  askedWith = "";
  timer: ReturnType<typeof setTimeout> | undefined;
  removed = false;

  constructor(
    readonly discovery: Discovery,
    readonly host: string,
  ) {}

  schedule(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(due, delay, this);
    this.timer.unref();
  }

  remove(): void {
    this.removed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** The wait after the last lookup of `name`: by TTL and interval after a good one, shorter after a failure. */
function delayOf(name: Name): number {
  if (name.failures > 0) return Math.max(DEFAULTS.discovery.minInterval, Math.min(name.interval, DEFAULTS.discovery.retryInterval));
  return nextLookupDelay(name.interval, name.ttl);
}

function due(name: Name): void {
  name.timer = undefined;
  void name.discovery.lookupNow(name);
}

/** A backend whose targets include names, with its targets as configured. */
interface User {
  backend: Backend;
  targets: readonly TargetOptions[];
  hosts: Set<string>;
}

export class Discovery implements TargetSource {
  readonly kind = "dns";
  private readonly names = new Map<string, Name>();
  private users: User[] = [];
  /** undefined until the first config: then null (system resolver) or the servers. */
  private servers: readonly string[] | null | undefined = undefined;
  private readonly lookupTimeout: number;
  /** Aborted by stop(): ends the lookups in flight. */
  private readonly stopping = new AbortController();
  private stopped = false;

  constructor(
    private readonly log: Logger,
    options: DiscoveryOptions = {},
  ) {
    this.lookupTimeout = options.lookupTimeout ?? DEFAULTS.discovery.lookupTimeout;
  }

  /** The last good addresses of a name; null when it never resolved (or is not known). */
  addresses(host: string): readonly string[] | null {
    return this.names.get(nameOf(host))?.addresses ?? null;
  }

  /**
   * The targets to use now: hostnames replaced by one target per known address, each with the
   * settings of its configured target and `name` = the configured address. A name with no
   * address yet gives no target. An address met twice (two names, or a name and a literal)
   * is used once, with the settings of the first.
   */
  expand(targets: readonly TargetOptions[]): TargetOptions[] {
    const out: TargetOptions[] = [];
    const seen = new Set<string>();
    const add = (target: TargetOptions) => {
      const key = formatAddress(target.address);
      if (seen.has(key)) return;
      seen.add(key);
      out.push(target);
    };
    for (const target of targets) {
      if (!isHostname(target.address)) {
        add(target);
        continue;
      }
      const name = formatAddress(target.address);
      for (const ip of this.addresses(target.address.host) ?? []) {
        add({ ...target, address: { kind: "tcp", host: ip, port: target.address.port }, name });
      }
    }
    return out;
  }

  /**
   * Looks up the names of `config` that have no address yet, with its `dns_servers`, so that a
   * following `update(config)` starts with their addresses. Resolves when those lookups have
   * ended; never rejects (failures are logged). The live servers do not change here: names
   * already known are looked up with new servers by `update`.
   */
  async prefetch(config: Config): Promise<void> {
    if (this.stopped) return;
    const servers = config.dnsServers ?? null;
    const waits: Promise<void>[] = [];
    for (const [host, interval] of hostsOf(config)) {
      let name = this.names.get(host);
      if (name === undefined) {
        name = new Name(this, host);
        name.interval = interval;
        this.names.set(host, name);
      }
      if (name.pending !== null) waits.push(name.pending);
      else if (name.addresses === null) waits.push(this.lookupNow(name, servers));
    }
    await Promise.all(waits);
  }

  /**
   * Makes `config` and its `backends` the live ones: names no backend uses any more are
   * dropped, new names are looked up at once, names that stay keep their addresses and
   * schedule. Synchronous; called by the router right after it built the backends from
   * `expand`.
   */
  update(config: Config, backends: ReadonlyMap<string, Backend>): void {
    if (this.stopped) return;
    const wanted = hostsOf(config);
    this.users = [];
    for (const options of config.backends.values()) {
      const backend = backends.get(options.name);
      const hosts = new Set(options.targets.filter((target) => isHostname(target.address)).map((target) => nameOf((target.address as { host: string }).host)));
      if (backend !== undefined && hosts.size > 0) this.users.push({ backend, targets: options.targets, hosts });
    }
    for (const [host, name] of this.names) {
      if (wanted.has(host)) continue;
      name.remove();
      this.names.delete(host);
    }
    this.useServers(config.dnsServers ?? null);
    for (const [host, interval] of wanted) {
      let name = this.names.get(host);
      if (name === undefined) {
        name = new Name(this, host);
        this.names.set(host, name);
      }
      const changed = name.used && name.interval !== interval;
      name.used = true;
      name.interval = interval;
      if (name.pending !== null) continue; // it schedules the next lookup when it ends
      if (name.addresses === null && name.failures === 0) void this.lookupNow(name);
      else if (name.timer === undefined || changed) name.schedule(delayOf(name));
    }
  }

  /** None: what a name resolved to shows in the backend's targets. */
  status(): Map<string, SourceStatus> {
    return new Map();
  }

  /** Ends every timer and lookup. Final. */
  stop(): void {
    this.stopped = true;
    this.stopping.abort();
    for (const name of this.names.values()) name.remove();
    this.names.clear();
    this.users = [];
  }

  /** @internal Starts a lookup of `name` unless one is in flight; resolves when it has ended. */
  lookupNow(name: Name, servers: readonly string[] | null = this.servers ?? null): Promise<void> {
    if (name.pending !== null) return name.pending;
    clearTimeout(name.timer);
    name.timer = undefined;
    name.askedWith = String(servers);
    name.pending = lookup(name.host, servers, this.lookupTimeout, this.stopping.signal).then(
      (answer) => this.answered(name, answer),
      (error: Error) => this.failed(name, error.message),
    );
    return name.pending;
  }

  private answered(name: Name, answer: Answer): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    const before = name.addresses;
    const failures = name.failures;
    const changed = before === null || before.join() !== answer.addresses.join();
    name.addresses = answer.addresses;
    name.ttl = answer.ttl;
    name.failures = 0;
    const list = answer.addresses.join(", ");
    if (failures > 0) {
      const times = failures === 1 ? "1 failed lookup" : `${failures} failed lookups`;
      this.log.info(event(`${name.host} resolved again: ${list} (after ${times})`, { name: name.host, addresses: answer.addresses, failures }));
    } else if (before === null) {
      this.log.info(event(`${name.host} resolved to ${list}`, { name: name.host, addresses: answer.addresses }));
    } else if (changed) {
      const added = answer.addresses.filter((ip) => !before.includes(ip));
      const removed = before.filter((ip) => !answer.addresses.includes(ip));
      const parts = [added.length > 0 ? `added ${added.join(", ")}` : "", removed.length > 0 ? `removed ${removed.join(", ")}` : ""].filter(Boolean);
      this.log.info(event(`${name.host} now resolves to ${list} (${parts.join("; ")})`, { name: name.host, addresses: answer.addresses, added, removed }));
    } else {
      this.log.debug(`${name.host} still resolves to ${list}; next lookup in ${formatDuration(delayOf(name))}`);
    }
    if (changed) this.apply(name.host);
    if (name.used) name.schedule(this.nextDelay(name));
  }

  private failed(name: Name, reason: string): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    name.failures++;
    if (name.failures === 1) {
      const keeping = name.addresses === null ? "no targets from this name until it resolves" : `keeping ${name.addresses.join(", ")} until a lookup succeeds`;
      this.log.warn(
        event(`${name.host}: lookup failed (${reason}); ${keeping}; retrying every ${formatDuration(delayOf(name))}`, {
          name: name.host,
          reason,
          addresses: name.addresses ?? [],
        }),
      );
    } else {
      this.log.debug(`${name.host}: lookup failed again (${reason})`);
    }
    if (name.used) name.schedule(this.nextDelay(name));
  }

  /** delayOf, or at once when the servers changed while the lookup was in flight. */
  private nextDelay(name: Name): number {
    return name.askedWith === String(this.servers ?? null) ? delayOf(name) : 0;
  }

  /** Gives every backend that uses `host` its targets from the current addresses. */
  private apply(host: string): void {
    for (const user of this.users) {
      if (user.hosts.has(host)) user.backend.replaceTargets(this.expand(user.targets));
    }
  }

  /** New servers: every known name is looked up again with them (its addresses stay meanwhile). */
  private useServers(servers: readonly string[] | null): void {
    const before = this.servers;
    this.servers = servers;
    if (before === undefined || String(before) === String(servers)) return;
    this.log.info(`looking names up with ${servers === null ? "the system resolver" : servers.join(", ")}`);
    for (const name of this.names.values()) if (name.pending === null) void this.lookupNow(name);
  }
}

/** The names of a config's hostname targets, each with the shortest resolve interval of the backends that use it. */
function hostsOf(config: Config): Map<string, number> {
  const hosts = new Map<string, number>();
  for (const backend of config.backends.values()) {
    const interval = backend.resolveInterval ?? DEFAULTS.discovery.resolveInterval;
    for (const target of backend.targets) {
      if (!isHostname(target.address)) continue;
      const host = nameOf(target.address.host);
      hosts.set(host, Math.min(hosts.get(host) ?? Infinity, interval));
    }
  }
  return hosts;
}

/** Hostname targets: no status line, nothing to merge, and `check` lists the names as targets. */
export const DNS: SourceKind<"dns"> = {
  kind: "dns",
  summary: "",
  merge: (into, from) => ({ ...into, ...from }),
  describe: () => null,
  create: (log) => new Discovery(log.withTag("dns")),
};
