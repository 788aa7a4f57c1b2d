/**
 * A backend is a named pool of targets with a balancer, optional health checks, retries and a
 * queue for sessions that arrive while every target is full.
 *
 * The backend owns its target objects (target.ts): the balancer reads them, the health checker
 * sets `healthy`, sessions count themselves in `active` through `acquire`/`release`, and the
 * admin API changes `state` and `weight` through `setState`/`setWeight`. An upgrade in place
 * restores them and counts the sessions it hands over through handover.ts.
 */
import { DEFAULTS } from "../config/defaults.ts";
import type { BackendTlsConfig, SessionControls } from "../config/types.ts";
import { createBalancer, isAvailable, type Balance, type Balancer, type Target } from "./balancer.ts";
import { HealthChecker, sameChecks, type HealthConfig } from "./health/checker.ts";
import { Ejector, SlowStart } from "./health/recovery.ts";
import { enable, targetStates, type AdminState, type TargetOptions, type TargetState } from "./target.ts";
import { loadUpstreamTls, type UpstreamTls } from "./upstream-tls.ts";
import { defaultLogger, LogLimiter, type Logger } from "../util/log.ts";

// What callers use with a backend's methods, defined with the target and its TLS options.
export { ADMIN_STATES, MAX_WEIGHT, type AdminState, type TargetOptions, type TargetState } from "./target.ts";
export type { UpstreamTls } from "./upstream-tls.ts";

export interface BackendOptions {
  name: string;
  targets: TargetOptions[];
  /** Default DEFAULTS.balance. */
  balance?: Balance;
  /** Other targets tried after a failed connect. Default DEFAULTS.retries. */
  retries?: number;
  /** null (default) = no active checks: targets are healthy until a connect to them fails. */
  health?: HealthConfig | null;
  /** How long a session waits when every target is full; 0 = closed at once. Default DEFAULTS.queueTimeout. */
  queueTimeout?: number;
  /** Send a PROXY protocol header to targets. Default null (none). */
  sendProxy?: "v1" | "v2" | null;
  /** Dial targets over TLS. Default null (plain TCP). */
  tls?: BackendTlsConfig | null;
  /** Without active checks: this many failed connects within `failTimeout` mark a target down for `failTimeout` (health/recovery.ts); 0 = off. Default DEFAULTS.maxFails. */
  maxFails?: number;
  /** ms. Default DEFAULTS.failTimeout. */
  failTimeout?: number;
  /** ms over which a target's weight ramps up after it comes up; 0 = off. Default DEFAULTS.slowStart. */
  slowStart?: number;
  /** Bandwidth limits and TCP options of upstream sockets (proxy/rate.ts, the connector). Default null (none). */
  controls?: SessionControls | null;
  /** The local address upstream connections are made from. Default null (the system's choice). */
  source?: string | null;
}

/** A session waiting in a backend's queue for a free place (the proxy's Session). */
export interface Waiter {
  /** Called once a place may be free; the waiter picks again and may queue again. */
  dequeued(): void;
}

export class Backend {
  readonly name: string;
  readonly retries: number;
  readonly queueTimeout: number;
  readonly sendProxy: "v1" | "v2" | null;
  readonly tls: UpstreamTls | null;
  /** Bandwidth limits and TCP options of upstream sockets; null = none. */
  readonly controls: SessionControls | null;
  /** The local address upstream connections are made from; null = the system's choice. */
  readonly source: string | null;
  targets: TargetState[];
  /** Connect failures and "no target" lines of this backend: one per second, with a count. */
  readonly failureLog = new LogLimiter();
  private readonly balance: Balance;
  private readonly balancer: Balancer;
  private readonly healthConfig: HealthConfig | null;
  private health: HealthChecker | null;
  /** Sessions waiting for a target that is not full, oldest first. */
  private readonly waiting: Waiter[] = [];
  /** Passive ejection, for backends without active checks; null = off. */
  private ejector: Ejector | null = null;
  readonly slowStart: SlowStart;
  /** After a reload, the backend that replaced this one: freed places wake its queue. */
  private successor: Backend | null = null;

  /**
   * With `previous` (a reload), targets whose address stays keep their object (health, open
   * sessions, counters), the health checker is kept if its settings did not change, and
   * waiting sessions move over. Nothing here can fail once the config is valid.
   */
  constructor(options: BackendOptions, log: Logger, previous?: Backend) {
    this.name = options.name;
    this.retries = options.retries ?? DEFAULTS.retries;
    this.queueTimeout = options.queueTimeout ?? DEFAULTS.queueTimeout;
    this.sendProxy = options.sendProxy ?? null;
    this.controls = options.controls ?? null;
    this.source = options.source ?? null;
    this.tls = loadUpstreamTls(options.tls ?? null);
    this.balance = options.balance ?? DEFAULTS.balance;
    this.balancer = previous !== undefined && previous.balance === this.balance ? previous.balancer : createBalancer(this.balance);
    this.targets = targetStates(options.targets, previous?.targets ?? []);
    this.healthConfig = options.health ?? null;
    const sameTls = JSON.stringify(previous?.tls ?? null) === JSON.stringify(this.tls); // checks of a TLS backend use its TLS
    if (previous !== undefined && previous.health !== null && sameTls && sameHealth(previous.healthConfig, this.healthConfig)) {
      this.health = previous.health;
      previous.health = null;
    } else {
      previous?.health?.stop();
      if (previous !== undefined) previous.health = null;
      this.health = this.healthConfig ? new HealthChecker(this.name, this.healthConfig, log.withTag("health"), this.tls) : null;
      if (this.health === null) for (const target of this.targets) target.healthy = true; // no checks: healthy until a connect fails
    }
    this.health?.setTargets(this.targets);
    this.slowStart = new SlowStart(options.slowStart ?? DEFAULTS.slowStart);
    if (previous !== undefined) this.slowStart.adopt(previous.slowStart, this.targets);
    const maxFails = options.maxFails ?? DEFAULTS.maxFails;
    if (this.health === null && maxFails > 0) {
      this.ejector = new Ejector(this.name, maxFails, options.failTimeout ?? DEFAULTS.failTimeout, log, (target) => {
        this.slowStart.start(target);
        this.wake();
      });
      if (previous?.ejector) this.ejector.adopt(previous.ejector, this.targets);
    }
    if (previous !== undefined) {
      previous.ejector?.stop();
      previous.ejector = null;
    }
    if (this.health !== null) this.health.onChange = (target, up) => this.healthChanged(target as TargetState, up);
    if (previous !== undefined) {
      previous.successor = this;
      this.waiting.push(...previous.waiting.splice(0));
    }
  }

  /**
   * Picks a target and counts the session on it. Returns null when none is available;
   * `full()` then tells whether waiting could help.
   */
  acquire(client: { readonly clientHost: string }, exclude: ReadonlySet<Target> | null): TargetState | null {
    const targets = this.targets;
    let target: TargetState | null;
    // One target: every balance picks it when it is available, and none has state to step.
    if (targets.length === 1) target = onlyTarget(targets[0]!, exclude);
    else {
      // Only source-hash reads the client's address: the others spare its getpeername(2).
      const clientKey = this.balance === "source-hash" ? client.clientHost : "";
      target = this.balancer.pick(targets, clientKey, exclude) as TargetState | null;
    }
    if (target !== null) target.active++;
    return target;
  }

  /**
   * Replaces the targets at runtime (DNS discovery): as in a reload, a target whose key stays
   * keeps its object (health, open sessions, counters) with its settings updated, and a new
   * one starts healthy. A removed target is no longer picked; sessions on it hold its object
   * and finish normally. Waiting sessions get a chance at new places.
   */
  replaceTargets(targets: TargetOptions[]): void {
    this.targets = targetStates(targets, this.targets);
    this.health?.setTargets(this.targets);
    this.wake();
  }

  /** A session to `target` ended: free its place and let a waiting session in. */
  release(target: TargetState): void {
    target.active--;
    let backend: Backend = this;
    while (backend.successor !== null) backend = backend.successor;
    const next = backend.waiting.shift();
    if (next !== undefined) next.dequeued();
  }

  /**
   * Set by the router: closes the sessions on `target` (reason `target_down`) and returns how
   * many. Used by on_down = "close-sessions", on_up = "close-backup-sessions" and target sources
   * that move the primary (Sentinel).
   */
  closeSessions: ((target: TargetState, why: string) => number) | null = null;

  /** The health checker marked `target` up or down: wake the queue, and close sessions as the check's on_down / on_up say. */
  private healthChanged(target: TargetState, up: boolean): void {
    const config = this.healthConfig;
    if (!up) {
      if (config?.onDown === "close-sessions") this.closeSessions?.(target, `${target.key} marked down`);
      return;
    }
    this.slowStart.start(target);
    if (config?.onUp === "close-backup-sessions" && !target.backup) {
      for (const backup of this.targets) if (backup.backup && backup.active > 0) this.closeSessions?.(backup, `primary ${target.key} is up`);
    }
    this.wake();
  }

  /** A target came up: let waiting sessions in while some target is available. */
  wake(): void {
    for (let n = this.waiting.length; n > 0 && this.targets.some(isAvailable); n--) this.waiting.shift()!.dequeued();
  }

  /**
   * Sets a target's admin state; returns the one it had. A target that turns ready lets
   * waiting sessions in. Open sessions are the caller's (the admin API closes them for maint).
   */
  setState(target: TargetState, state: AdminState): AdminState {
    const was = target.state;
    target.state = state;
    enable(target);
    this.wake();
    return was;
  }

  /** Sets a target's runtime weight (0..MAX_WEIGHT; 0 = no new sessions); returns the one it had. */
  setWeight(target: TargetState, weight: number): number {
    const was = target.weight;
    this.slowStart.cancel(target);
    target.weight = weight;
    enable(target);
    this.wake();
    return was;
  }

  /** The targets whose key (`10.0.0.5:6379`) or configured name (`redis.svc:6379`, maybe several addresses) is `id`. */
  find(id: string): TargetState[] {
    const byKey = this.targets.find((target) => target.key === id);
    return byKey !== undefined ? [byKey] : this.targets.filter((target) => target.name === id);
  }

  /** A connect to `target` failed: a passive health check failure. */
  connectFailed(target: TargetState): void {
    target.connectFailures++;
    this.health?.reportFailure(target);
    this.ejector?.failed(target);
  }

  /** True when some healthy, enabled target is only full (waiting for a free place can help). */
  full(exclude: ReadonlySet<Target> | null): boolean {
    return this.targets.some((target) => target.healthy && target.enabled && !isAvailable(target) && (exclude === null || !exclude.has(target)));
  }

  /** `first`: a woken session that could not use the free place keeps its turn. */
  enqueue(session: Waiter, first = false): void {
    if (first) this.waiting.unshift(session);
    else this.waiting.push(session);
  }

  dequeue(session: Waiter): void {
    const index = this.waiting.indexOf(session);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  stop(): void {
    this.health?.stop();
    this.health = null;
    this.ejector?.stop();
    this.slowStart.stop();
  }
}

function sameHealth(a: HealthConfig | null, b: HealthConfig | null): boolean {
  return sameChecks(a, b);
}

/** The backend of a session not routed yet (an SNI listener without a default route): no targets. */
export const NO_BACKEND = new Backend({ name: "-", targets: [] }, defaultLogger);

/** A backend's only target, when a balancer would pick it: available and not tried yet. */
function onlyTarget(target: TargetState, exclude: ReadonlySet<Target> | null): TargetState | null {
  return isAvailable(target) && (exclude === null || !exclude.has(target)) ? target : null;
}
