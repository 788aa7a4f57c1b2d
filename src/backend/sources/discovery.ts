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
 * A target source (source.ts): the router holds one Discovery among its sources. The schedule,
 * the last good answers across reloads, the log lines and `replaceTargets` on a change are
 * those of every followed name (name-following.ts); this file has what is a hostname's own: its
 * A/AAAA lookup and a target per address. It reports no status of its own (the targets show
 * what it found).
 */
import { formatAddress } from "../../util/address.ts";
import type { TargetOptions } from "../backend.ts";
import type { BackendConfig } from "../../config/types.ts";
import { DEFAULTS } from "../../config/defaults.ts";
import { isHostname, lookup, nameOf, type Answer, type DiscoveryOptions } from "./dns.ts";
import type { Logger } from "../../util/log.ts";
import { type AnswerView, type FollowedName, NameFollower } from "./name-following.ts";
import type { Expand, SourceKind } from "./source.ts";

export { isHostname, lookup, nameOf, nextLookupDelay } from "./dns.ts";
export type { Answer, DiscoveryOptions } from "./dns.ts";

export class Discovery extends NameFollower<Answer> {
  readonly kind = "dns";

  constructor(log: Logger, options: DiscoveryOptions = {}, expand?: Expand) {
    super(log, options.lookupTimeout ?? DEFAULTS.discovery.lookupTimeout, "lookup", expand);
  }

  /** The last good addresses of a name; null when it never resolved (or is not known). */
  addresses(host: string): readonly string[] | null {
    return this.names.get(nameOf(host))?.answer?.addresses ?? null;
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

  /** The names of a backend's hostname targets. */
  protected namesOf(backend: BackendConfig): string[] {
    return backend.targets.filter((target) => isHostname(target.address)).map((target) => nameOf((target.address as { host: string }).host));
  }

  protected ask(name: FollowedName<Answer>, servers: readonly string[] | null, signal: AbortSignal): Promise<Answer> {
    return lookup(name.name, servers, this.lookupTimeout, signal);
  }

  protected view(answer: Answer): AnswerView {
    return { list: answer.addresses.join(", "), key: answer.addresses.join(), addresses: answer.addresses };
  }

  protected fields(answer: Answer | null): { addresses: string[] } {
    return { addresses: answer?.addresses ?? [] };
  }

  protected kept(answer: Answer): string {
    return answer.addresses.join(", ");
  }

  protected override serversChanged(servers: readonly string[] | null): void {
    this.log.info(`looking names up with ${servers === null ? "the system resolver" : servers.join(", ")}`);
  }
}

/** Hostname targets: no status line, nothing to merge, and `check` lists the names as targets. */
export const DNS: SourceKind<"dns"> = {
  kind: "dns",
  summary: "",
  merge: (into, from) => ({ ...into, ...from }),
  describe: () => null,
  create: (log, expand) => new Discovery(log.withTag("dns"), {}, expand),
};
