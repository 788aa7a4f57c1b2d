/**
 * Following names in DNS: what hostname targets (discovery.ts) and SRV targets (srv.ts) share.
 * A `NameFollower` is a target source (source.ts) that keeps, for each name the live config
 * uses, its last good answer and its schedule; a subclass says which names a backend follows,
 * how one is asked, what its answer gives (`expand`) and how log lines show an answer.
 *
 * - **Start**: `prefetch` asks the names that have no answer yet, with the config's
 *   `dns_servers`, before the router listens (and before a reload).
 * - **Schedule**: a name is asked again `min(resolve_interval, TTL)` after its last answer,
 *   never sooner than 1 s, and `min(resolve_interval, 5s)` after a failure (DEFAULTS.discovery).
 *   Lookups of one name never overlap: the next is scheduled when the previous has ended. A
 *   name used by several backends follows the shortest of their intervals.
 * - **Failures** keep the last good answer: one warn line until a lookup succeeds again (info
 *   "resolved again … (after N failed lookups)"), debug lines meanwhile.
 * - **Changes**: an answer that changes what a name gives replaces the targets of every backend
 *   that uses it (`Backend.replaceTargets`, with the targets every source gives: a backend may
 *   follow hostnames and SRV names at once), with one info line; an unchanged one is a debug line.
 * - **Reloads** (`update`): names no backend uses any more are dropped, new ones asked at once,
 *   those that stay keep their answer and schedule; new `dns_servers` ask every name again
 *   (a lookup in flight with the old servers is followed by one at once).
 * - `stop()` ends every timer and lookup. Neither kind reports a status of its own: what a name
 *   gave shows in the backend's targets.
 */
import type { BackendConfig, Config } from "../../config/types.ts";
import { DEFAULTS } from "../../config/defaults.ts";
import { formatDuration } from "../../util/duration.ts";
import { event, type Logger } from "../../util/log.ts";
import type { Backend, TargetOptions } from "../backend.ts";
import { nextLookupDelay } from "./dns.ts";
import type { Expand, SourceStatus, TargetSource } from "./source.ts";

/** What every answer carries: the TTL that bounds the next lookup (ms; null: unknown). */
export interface TimedAnswer {
  ttl: number | null;
}

/** What a name's log lines carry besides `name` (JSON logs). */
export type NameFields = Record<string, string | number | readonly (string | number)[]>;

/** How log lines show an answer. */
export interface AnswerView {
  /** For people: `10.0.0.1, 10.0.0.2`. */
  list: string;
  /** Equal for two answers that give the same targets. */
  key: string;
  /** The addresses it gives, for the `added …; removed …` of a change. */
  addresses: string[];
}

/** One followed name: its last good answer, its schedule and the lookup in flight. */
export class FollowedName<A extends TimedAnswer> {
  /** The last good answer; null until the first one. */
  answer: A | null = null;
  /** The shortest resolve interval of the backends that use the name. */
  interval: number = DEFAULTS.discovery.resolveInterval;
  /** Used by the live config (false for a name only looked up ahead of a reload). */
  used = false;
  /** Failed lookups since the last good one; the first is logged. */
  failures = 0;
  pending: Promise<void> | null = null;
  /** The servers of the last lookup (`String(servers)`), to notice a change of servers meanwhile. */
  askedWith = "";
  timer: ReturnType<typeof setTimeout> | undefined;
  removed = false;

  constructor(
    readonly follower: NameFollower<A>,
    readonly name: string,
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

function due(name: FollowedName<TimedAnswer>): void {
  name.timer = undefined;
  void name.follower.lookupNow(name);
}

/** The wait after the last lookup of `name`: by TTL and interval after a good one, shorter after a failure. */
function delayOf(name: FollowedName<TimedAnswer>): number {
  if (name.failures > 0) return Math.max(DEFAULTS.discovery.minInterval, Math.min(name.interval, DEFAULTS.discovery.retryInterval));
  return nextLookupDelay(name.interval, name.answer?.ttl ?? null);
}

/** A backend that follows names, with its config (its targets as configured). */
interface User {
  backend: Backend;
  options: BackendConfig;
  names: Set<string>;
}

export abstract class NameFollower<A extends TimedAnswer> implements TargetSource {
  abstract readonly kind: string;
  /** By name, as `namesOf` gives it. */
  protected readonly names = new Map<string, FollowedName<A>>();
  private users: User[] = [];
  /** undefined until the first config: then null (system resolver) or the servers. */
  private servers: readonly string[] | null | undefined = undefined;
  /** Aborted by stop(): ends the lookups in flight. */
  private readonly stopping = new AbortController();
  private stopped = false;

  constructor(
    protected readonly log: Logger,
    protected readonly lookupTimeout: number,
    /** What log lines call one lookup: `lookup failed`, `SRV lookup failed`. */
    private readonly lookupWord: string,
    /** A backend's targets from every source (the router's; all.ts); without it, from this one only. */
    private readonly expandAll: Expand = (targets, backend) => this.expand(targets, backend),
  ) {}

  /** The names `backend` follows, in the form they are shared in. */
  protected abstract namesOf(backend: BackendConfig): Iterable<string>;
  /** Asks `name` once (`name.answer` is the last good one). Rejects with an Error whose message says why. */
  protected abstract ask(name: FollowedName<A>, servers: readonly string[] | null, signal: AbortSignal): Promise<A>;
  /** How log lines show `answer`. */
  protected abstract view(answer: A): AnswerView;
  /** The structured fields a name's log lines carry besides `name` (the last good answer's; null before the first). */
  protected abstract fields(answer: A | null): NameFields;
  /** What a failure keeps of the last good answer: `10.0.0.1, 10.0.0.2`, `its last targets`. */
  protected abstract kept(answer: A): string;
  /** A good answer came, before it is logged (`before`: the last one). */
  protected onAnswer(_name: string, _before: A | null, _answer: A): void {}
  /** Other servers than before are used from now on. */
  protected serversChanged(_servers: readonly string[] | null): void {}
  abstract expand(targets: readonly TargetOptions[], backend: BackendConfig): TargetOptions[];

  /**
   * Looks up the names of `config` that have no answer yet, with its `dns_servers`, so that a
   * following `update(config)` starts with their answers. Resolves when those lookups have
   * ended; never rejects (failures are logged). The live servers do not change here: names
   * already known are looked up with new servers by `update`.
   */
  async prefetch(config: Config): Promise<void> {
    if (this.stopped) return;
    const servers = config.dnsServers ?? null;
    const waits: Promise<void>[] = [];
    for (const [key, interval] of this.wanted(config)) {
      let name = this.names.get(key);
      if (name === undefined) {
        name = new FollowedName(this, key);
        name.interval = interval;
        this.names.set(key, name);
      }
      if (name.pending !== null) waits.push(name.pending);
      else if (name.answer === null) waits.push(this.lookupNow(name, servers));
    }
    await Promise.all(waits);
  }

  /**
   * Makes `config` and its `backends` the live ones: names no backend uses any more are
   * dropped, new names are looked up at once, names that stay keep their answer and schedule
   * (all are looked up again when the servers changed). Synchronous; called by the router right
   * after it built the backends from `expand`.
   */
  update(config: Config, backends: ReadonlyMap<string, Backend>): void {
    if (this.stopped) return;
    const wanted = this.wanted(config);
    this.users = [];
    for (const options of config.backends.values()) {
      const backend = backends.get(options.name);
      const names = new Set(this.namesOf(options));
      if (backend !== undefined && names.size > 0) this.users.push({ backend, options, names });
    }
    for (const [key, name] of this.names) {
      if (wanted.has(key)) continue;
      name.remove();
      this.names.delete(key);
    }
    const before = this.servers;
    this.servers = config.dnsServers ?? null;
    const newServers = before !== undefined && String(before) !== String(this.servers);
    if (newServers) this.serversChanged(this.servers);
    for (const [key, interval] of wanted) {
      let name = this.names.get(key);
      if (name === undefined) {
        name = new FollowedName(this, key);
        this.names.set(key, name);
      }
      const changed = name.used && name.interval !== interval;
      name.used = true;
      name.interval = interval;
      if (name.pending !== null) continue; // it schedules the next lookup when it ends
      if (newServers || (name.answer === null && name.failures === 0)) void this.lookupNow(name);
      else if (name.timer === undefined || changed) name.schedule(delayOf(name));
    }
  }

  /** None: what a name gave shows in the backend's targets. */
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
  lookupNow(name: FollowedName<A>, servers: readonly string[] | null = this.servers ?? null): Promise<void> {
    if (name.pending !== null) return name.pending;
    clearTimeout(name.timer);
    name.timer = undefined;
    name.askedWith = String(servers);
    name.pending = this.ask(name, servers, this.stopping.signal).then(
      (answer) => this.answered(name, answer),
      (error: Error) => this.failed(name, error.message),
    );
    return name.pending;
  }

  private answered(name: FollowedName<A>, answer: A): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    const before = name.answer;
    const failures = name.failures;
    name.answer = answer;
    name.failures = 0;
    this.onAnswer(name.name, before, answer);
    const after = this.view(answer);
    const was = before === null ? null : this.view(before);
    const changed = was === null || was.key !== after.key;
    const fields = { name: name.name, ...this.fields(answer) };
    if (failures > 0) {
      const times = failures === 1 ? "1 failed lookup" : `${failures} failed lookups`;
      this.log.info(event(`${name.name} resolved again: ${after.list} (after ${times})`, { ...fields, failures }));
    } else if (was === null) {
      this.log.info(event(`${name.name} resolved to ${after.list}`, fields));
    } else if (changed) {
      const added = after.addresses.filter((address) => !was.addresses.includes(address));
      const removed = was.addresses.filter((address) => !after.addresses.includes(address));
      const parts = [added.length > 0 ? `added ${added.join(", ")}` : "", removed.length > 0 ? `removed ${removed.join(", ")}` : ""].filter(Boolean);
      const why = parts.length > 0 ? ` (${parts.join("; ")})` : "";
      this.log.info(event(`${name.name} now resolves to ${after.list}${why}`, { ...fields, added, removed }));
    } else {
      this.log.debug(`${name.name} still resolves to ${after.list}; next lookup in ${formatDuration(delayOf(name))}`);
    }
    if (changed) this.apply(name.name);
    if (name.used) name.schedule(this.nextDelay(name));
  }

  private failed(name: FollowedName<A>, reason: string): void {
    name.pending = null;
    if (this.stopped || name.removed) return;
    name.failures++;
    if (name.failures === 1) {
      const keeping = name.answer === null ? "no targets from this name until it resolves" : `keeping ${this.kept(name.answer)} until a lookup succeeds`;
      this.log.warn(
        event(`${name.name}: ${this.lookupWord} failed (${reason}); ${keeping}; retrying every ${formatDuration(delayOf(name))}`, {
          name: name.name,
          reason,
          ...this.fields(name.answer),
        }),
      );
    } else {
      this.log.debug(`${name.name}: ${this.lookupWord} failed again (${reason})`);
    }
    if (name.used) name.schedule(this.nextDelay(name));
  }

  /** delayOf, or at once when the servers changed while the lookup was in flight. */
  private nextDelay(name: FollowedName<A>): number {
    return name.askedWith === String(this.servers ?? null) ? delayOf(name) : 0;
  }

  /** Gives every backend that uses `name` its targets from the current answers. */
  private apply(name: string): void {
    for (const user of this.users) {
      if (user.names.has(name)) user.backend.replaceTargets(this.expandAll(user.options.targets, user.options));
    }
  }

  /** The names of a config, each with the shortest resolve interval of the backends that use it. */
  private wanted(config: Config): Map<string, number> {
    const names = new Map<string, number>();
    for (const backend of config.backends.values()) {
      const interval = backend.resolveInterval ?? DEFAULTS.discovery.resolveInterval;
      for (const name of this.namesOf(backend)) names.set(name, Math.min(names.get(name) ?? Infinity, interval));
    }
    return names;
  }
}
