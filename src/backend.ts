/**
 * A backend is a named pool of targets with a balancer, optional health checks, retries and a
 * queue for sessions that arrive while every target is full.
 *
 * The backend owns its target objects: the balancer reads them, the health checker sets
 * `healthy`, and sessions count themselves in `active` through `acquire`/`release`.
 */
import { formatAddress, type Address } from "./address.ts";
import { createBalancer, isAvailable, type Balance, type Balancer, type Target } from "./balancer.ts";
import { HealthChecker, type HealthConfig } from "./health.ts";
import { LogLimiter, type Logger } from "./log.ts";
import type { Session } from "./session.ts";

export interface TargetOptions {
  address: Address;
  /** ≥ 1. Default 1. */
  weight?: number;
  /** 0 = no limit (default). */
  maxConnections?: number;
  /** Used only when no primary target is available. Default false. */
  backup?: boolean;
}

export interface BackendOptions {
  name: string;
  targets: TargetOptions[];
  /** Default round-robin. */
  balance?: Balance;
  /** Other targets tried after a failed connect. Default 0. */
  retries?: number;
  /** null (default) = no active checks: targets are healthy until a connect to them fails. */
  health?: HealthConfig | null;
  /** How long a session waits when every target is full; 0 (default) = closed at once. */
  queueTimeout?: number;
}

/** Counters of one target, for stats and metrics. */
export interface TargetState extends Target {
  /** Sessions sent to this target since start. */
  sessions: number;
  connectFailures: number;
}

export class Backend {
  readonly name: string;
  readonly retries: number;
  readonly queueTimeout: number;
  targets: TargetState[];
  /** Connect failures and "no target" lines of this backend: one per second, with a count. */
  readonly failureLog = new LogLimiter();
  private readonly balancer: Balancer;
  private readonly health: HealthChecker | null;
  /** Sessions waiting for a target that is not full, oldest first. */
  private readonly waiting: Session[] = [];

  constructor(options: BackendOptions, log: Logger) {
    this.name = options.name;
    this.retries = options.retries ?? 0;
    this.queueTimeout = options.queueTimeout ?? 0;
    this.balancer = createBalancer(options.balance ?? "round-robin");
    this.targets = options.targets.map((target) => ({
      address: target.address,
      key: formatAddress(target.address),
      weight: target.weight ?? 1,
      maxConnections: target.maxConnections ?? 0,
      backup: target.backup ?? false,
      healthy: true,
      active: 0,
      sessions: 0,
      connectFailures: 0,
    }));
    this.health = options.health ? new HealthChecker(this.name, options.health, log.withTag("health")) : null;
    this.health?.setTargets(this.targets);
  }

  /**
   * Picks a target and counts the session on it. Returns null when none is available;
   * `full()` then tells whether waiting could help.
   */
  acquire(clientKey: string, exclude: ReadonlySet<Target> | null): TargetState | null {
    const target = this.balancer.pick(this.targets, clientKey, exclude) as TargetState | null;
    if (target !== null) {
      target.active++;
      target.sessions++;
    }
    return target;
  }

  /** A session to `target` ended: free its place and let a waiting session in. */
  release(target: TargetState): void {
    target.active--;
    const next = this.waiting.shift();
    if (next !== undefined) next.dequeued();
  }

  /** A connect to `target` failed: a passive health check failure. */
  connectFailed(target: TargetState): void {
    target.connectFailures++;
    this.health?.reportFailure(target);
  }

  /** True when some healthy target is only full (waiting for a free place can help). */
  full(exclude: ReadonlySet<Target> | null): boolean {
    return this.targets.some((target) => target.healthy && !isAvailable(target) && (exclude === null || !exclude.has(target)));
  }

  enqueue(session: Session): void {
    this.waiting.push(session);
  }

  dequeue(session: Session): void {
    const index = this.waiting.indexOf(session);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  stop(): void {
    this.health?.stop();
  }
}
