/**
 * Redis Sentinel as a target source: a backend with `sentinel = { master, sentinels }` has one
 * target, the primary the sentinels name, and follows it through failovers.
 *
 * - At start (`prefetch`) every sentinel is asked `SENTINEL get-master-addr-by-name`; the
 *   address a majority of the configured sentinels gives is the target. Without a majority
 *   the backend starts with no target (sessions fail with no_target) until one forms.
 * - Each sentinel gets a long-lived connection subscribed to `+switch-master` and
 *   `+promoted-slave`. Either event (the promotion comes first, from the leader sentinel, once
 *   the replica reports role:master; `+switch-master` after the other replicas were
 *   reconfigured) switches the target at once, and the
 *   sessions on the old primary are closed (reason target_down): a client that keeps its
 *   connection never writes to a demoted node. A lost subscription is made again after
 *   `DEFAULTS.sentinel.reconnectDelay`.
 * - Every `poll_interval` all sentinels are asked again (the fallback for a missed event);
 *   a majority answer other than the current target switches as the event does.
 *
 * A target source (source.ts): the router holds one SentinelWatch among its sources.
 * `update(config, backends)` on every (re)load keeps the watch of a backend whose sentinel
 * settings stay (with its primary), and `stop()` ends every timer and socket. The sockets (a
 * `Link` per subscription, a `Query` per question) are in sentinel-links.ts; what it reports
 * (/status fields, metrics, the workers' merge) in sentinel-status.ts; RESP is protocol/resp.ts.
 */
import { DEFAULTS } from "../../config/defaults.ts";
import type { BackendConfig, Config, SentinelConfig } from "../../config/types.ts";
import { formatAddress, type Address } from "../../util/address.ts";
import { DEBUG, event, type Logger } from "../../util/log.ts";
import type { Backend, TargetState } from "../backend.ts";
import { authCommand, type Resp } from "../../protocol/resp.ts";
import { askAll, askRole, Link } from "./sentinel-links.ts";
import { describeSentinel, mergeSentinel, SENTINEL_SUMMARY, sentinelSourceStatus, type SentinelStatus } from "./sentinel-status.ts";
import type { SourceKind, SourceStatus, TargetSource } from "./source.ts";

export type { SentinelStatus } from "./sentinel-status.ts";

/** The address of a `get-master-addr-by-name` reply (`["127.0.0.1", "6379"]`); null for anything else. */
export function masterAddress(reply: Resp): Address | null {
  if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[0] !== "string" || typeof reply[1] !== "string") return null;
  const port = Number(reply[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || reply[0] === "") return null;
  return { kind: "tcp", host: reply[0], port };
}

/** The new primary of a `+switch-master` message for `name` (`mymaster 10.0.0.1 6379 10.0.0.2 6379`); null when it is another master's or malformed. */
export function switchedTo(payload: string, name: string): Address | null {
  const parts = payload.split(" ");
  if (parts.length !== 5 || parts[0] !== name) return null;
  return masterAddress([parts[3]!, parts[4]!]);
}

/**
 * The replica a failover event names for `name` (`+selected-slave`,
 * `+failover-state-wait-promotion`, `+promoted-slave`: `slave 10.0.0.2:6379 10.0.0.2 6379 @
 * mymaster 10.0.0.1 6379`); null otherwise.
 */
export function promotedTo(payload: string, name: string): Address | null {
  const parts = payload.split(" ");
  if (parts.length !== 8 || parts[0] !== "slave" || parts[4] !== "@" || parts[5] !== name) return null;
  return masterAddress([parts[2]!, parts[3]!]);
}

/** The address most answers give, when more than half of `asked` sentinels give it; else null. */
export function majority(answers: readonly (Address | null)[], asked: number): Address | null {
  const counts = new Map<string, { address: Address; n: number }>();
  for (const answer of answers) {
    if (answer === null) continue;
    const key = formatAddress(answer);
    const entry = counts.get(key) ?? { address: answer, n: 0 };
    entry.n++;
    counts.set(key, entry);
  }
  for (const { address, n } of counts.values()) if (n * 2 > asked) return address;
  return null;
}

// ── The watch of one backend ────────────────────────────────────────────────────────────────

export class Watch {
  primary: Address | null = null;
  switches = 0;
  lastSwitch = 0;
  readonly links: Link[];
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  polling = false;
  stopped = false;
  /** The connect options for sentinels: the AUTH command sent first, if any. */
  readonly hello: Uint8Array | null;
  /** The AUTH command sent before ROLE to a replica being promoted (the backend's check credentials, else the sentinels'), if any. */
  nodeHello: Uint8Array | null = null;

  constructor(
    readonly owner: SentinelWatch,
    public backend: Backend,
    readonly config: SentinelConfig,
  ) {
    this.hello = helloOf(config);
    this.links = config.sentinels.map((address) => new Link(this, address));
  }

  get log(): Logger {
    return this.owner.log;
  }

  start(): void {
    for (const link of this.links) link.connect();
    this.pollTimer = setInterval(pollTick, this.config.pollInterval, this);
    this.pollTimer.unref();
    if (this.primary === null) void this.poll();
  }

  /** Asks every sentinel; a majority answer other than the current primary switches to it. */
  async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      const answers = await askAll(this.config, this.hello);
      const silent = this.config.sentinels.filter((_, i) => answers[i] === null).map(formatAddress);
      if (silent.length > 0 && this.log.level >= DEBUG)
        this.log.debug(`backend ${this.backend.name}: no answer from sentinel ${silent.join(", ")} for ${this.config.master}`);
      const agreed = majority(answers, this.config.sentinels.length);
      if (agreed === null || this.stopped) return;
      // Right after a switch on a promotion event the majority still names the old primary
      // until the leader sends +switch-master: that answer does not switch back for a while.
      const demoted = this.demoted;
      if (demoted !== null && formatAddress(agreed) === demoted.key && Date.now() < demoted.until) return;
      this.demoted = null;
      this.switchTo(agreed, "sentinels polled");
    } finally {
      this.polling = false;
    }
  }

  /** The primary a promotion event moved away from, which polls do not switch back to until `until`. */
  private demoted: { key: string; until: number } | null = null;

  /** The replica being promoted (its key) while its ROLE is asked; null when none is. */
  private candidate: string | null = null;

  /** A failover picked `replica`: ask it ROLE until it answers master (then switch), or until DEFAULTS.sentinel.promotionWatch passed. */
  promoting(replica: Address, why: string): void {
    const key = formatAddress(replica);
    if (this.stopped || this.candidate === key || (this.primary !== null && formatAddress(this.primary) === key)) return;
    this.candidate = key;
    void this.watchPromotion(replica, key, why);
  }

  private async watchPromotion(replica: Address, key: string, why: string): Promise<void> {
    const deadline = Date.now() + DEFAULTS.sentinel.promotionWatch;
    while (!this.stopped && this.candidate === key && Date.now() < deadline) {
      if (await askRole(replica, this.config.timeout, this.nodeHello)) {
        if (this.candidate === key && !this.stopped) this.switchTo(replica, `${why}; it answers ROLE master`, true);
        break;
      }
      await Bun.sleep(DEFAULTS.sentinel.promotionProbe);
    }
    if (this.candidate === key) this.candidate = null;
  }

  /** Makes `address` the backend's only target; closes the sessions on the one it replaces. No-op when it already is. */
  switchTo(address: Address, why: string, promotion = false): void {
    const key = formatAddress(address);
    const previous = this.primary === null ? null : formatAddress(this.primary);
    if (promotion && previous !== null && previous !== key) this.demoted = { key: previous, until: Date.now() + DEFAULTS.sentinel.promotionWatch };
    if (this.candidate !== null && this.candidate !== key) this.candidate = null;
    if (previous === key) return;
    const old: TargetState | undefined = previous === null ? undefined : this.backend.targets.find((target) => target.key === previous);
    this.primary = address;
    this.backend.replaceTargets([{ address }]);
    const name = this.backend.name;
    if (previous !== null) {
      this.switches++;
      this.lastSwitch = Date.now();
    }
    const message =
      previous === null
        ? `backend ${name}: primary of ${this.config.master} is ${key} (${why})`
        : `backend ${name}: primary of ${this.config.master} moved from ${previous} to ${key} (${why})`;
    this.log.info(event(message, { backend: name, master: this.config.master, primary: key, previous, detail: why }));
    if (old !== undefined) this.backend.closeSessions?.(old, `${old.key} is no longer the primary of ${this.config.master}`);
  }

  status(): SentinelStatus {
    return {
      master: this.config.master,
      primary: this.primary === null ? "-" : formatAddress(this.primary),
      switches: this.switches,
      lastSwitch: this.lastSwitch,
      subscribed: this.links.filter((link) => link.subscribed).length,
      sentinels: this.links.length,
    };
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.pollTimer);
    for (const link of this.links) link.stop();
  }
}

function pollTick(watch: Watch): void {
  void watch.poll();
}

/** Same master name, sentinels, timings and credentials: a reload keeps the watch. */
function sameSentinel(a: SentinelConfig, b: SentinelConfig): boolean {
  const key = (c: SentinelConfig) =>
    JSON.stringify([c.master, c.sentinels.map(formatAddress), c.pollInterval, c.timeout, c.auth?.username ?? null, c.auth?.password.reveal() ?? null]);
  return key(a) === key(b);
}

export class SentinelWatch implements TargetSource {
  readonly kind = "sentinel";
  private readonly watches = new Map<string, Watch>();
  /** Primaries found by `prefetch`, by backend name, for the `update` that follows. */
  private readonly found = new Map<string, Address>();
  private stopped = false;

  constructor(readonly log: Logger) {}

  /**
   * Asks the sentinels of every sentinel backend of `config` that has no known primary yet;
   * a majority answer becomes its first target at the next `update`. Never rejects; bounded by
   * the sentinel timeout.
   */
  async prefetch(config: Config): Promise<void> {
    const asks: Promise<void>[] = [];
    for (const backend of config.backends.values()) {
      const sentinel = backend.sentinel ?? null;
      if (sentinel === null || this.watches.get(backend.name)?.primary) continue;
      asks.push(
        askAll(sentinel, helloOf(sentinel)).then((answers) => {
          const agreed = majority(answers, sentinel.sentinels.length);
          if (agreed !== null) this.found.set(backend.name, agreed);
          else {
            const given = answers.map((a) => (a === null ? "-" : formatAddress(a))).join(", ");
            this.log.warn(
              event(`backend ${backend.name}: no majority of sentinels names a primary for ${sentinel.master} (answers: ${given}); no target until one does`, {
                backend: backend.name,
                master: sentinel.master,
              }),
            );
          }
        }),
      );
    }
    await Promise.all(asks);
  }

  /** Follows the sentinel backends of the live config; watches of backends gone are stopped. */
  update(config: Config, backends: ReadonlyMap<string, Backend>): void {
    if (this.stopped) return;
    for (const [name, watch] of this.watches) {
      const next = config.backends.get(name)?.sentinel ?? null;
      if (next === null || !sameSentinel(watch.config, next)) {
        watch.stop();
        this.watches.delete(name);
      }
    }
    for (const options of config.backends.values()) {
      const sentinel = options.sentinel ?? null;
      const backend = backends.get(options.name);
      if (sentinel === null || backend === undefined) continue;
      let watch = this.watches.get(options.name);
      if (watch !== undefined) {
        watch.backend = backend;
        watch.nodeHello = nodeHelloOf(options);
        if (watch.primary !== null) backend.replaceTargets([{ address: watch.primary }]);
        continue;
      }
      watch = new Watch(this, backend, sentinel);
      watch.nodeHello = nodeHelloOf(options);
      this.watches.set(options.name, watch);
      const found = this.found.get(options.name);
      this.found.delete(options.name);
      if (found !== undefined) watch.switchTo(found, `a majority of ${sentinel.sentinels.length} sentinels`);
      watch.start();
    }
  }

  /** By backend name. */
  status(): Map<string, SourceStatus> {
    return new Map([...this.watches].map(([name, watch]) => [name, sentinelSourceStatus(watch.status())]));
  }

  stop(): void {
    this.stopped = true;
    for (const watch of this.watches.values()) watch.stop();
    this.watches.clear();
  }
}

/**
 * The AUTH command sent before ROLE to a Redis node: with the credentials the backend's health
 * checks use (`health.auth`), else the sentinels' (`sentinel.auth`, one password for both is
 * common); null without either. A node without a password answers AUTH with an error and ROLE
 * all the same.
 */
export function nodeHelloOf(backend: BackendConfig): Uint8Array | null {
  const auth = backend.health?.auth ?? backend.sentinel?.auth ?? null;
  return auth === null ? null : authCommand(auth.username, auth.password.reveal());
}

/** The AUTH command sent first to every sentinel, or null without credentials. */
export function helloOf(config: SentinelConfig): Uint8Array | null {
  return config.auth === null ? null : authCommand(config.auth.username, config.auth.password.reveal());
}

/** Redis Sentinel as a target source: its kind, for the status page, the supervisor and `check`. */
export const SENTINEL: SourceKind<"sentinel"> = {
  kind: "sentinel",
  summary: SENTINEL_SUMMARY,
  merge: mergeSentinel,
  describe: describeSentinel,
  create: (log) => new SentinelWatch(log.withTag("sentinel")),
};
