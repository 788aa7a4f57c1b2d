/**
 * What happens to a target around a failure besides active checks:
 *
 * - Passive ejection (`max_fails` within `fail_timeout`, nginx's semantics), for backends
 *   without active checks: `max_fails` failed connects to a target within `fail_timeout` of the
 *   first of them mark it down for `fail_timeout`; then it is tried again (and ejected again
 *   by the next `max_fails` failures). `max_fails = 0` (the default) turns it off.
 * - Slow start (`slow_start`): after a target comes up (a check marked it up, or its ejection
 *   ended), its weight ramps linearly from 1/20 of its weight to all of it over `slow_start`,
 *   so a cold cache or a fresh connection pool is not handed a full share at once. Not at start
 *   (as in nginx and HAProxy). An operator's `setWeight` during a ramp ends it.
 *
 * Both own their timers (unref'd) and stop them in `stop()`; the target objects are the
 * backend's: ejection writes `healthy`, slow start writes `weight` (and restores it).
 */
import { formatAddress } from "../../util/address.ts";
import { event, type Logger } from "../../util/log.ts";
import type { TargetState } from "../target.ts";

/** A ramping target starts at this share of its weight. */
export const SLOW_START_FLOOR = 0.05;
/** The ramp is updated this often at most (and 20 times per slow_start at least). */
const RAMP_TICK = 100;

export class Ejector {
  /** The failures counted in the current window, by target. */
  private readonly windows = new Map<TargetState, { start: number; fails: number }>();
  private readonly timers = new Map<TargetState, ReturnType<typeof setTimeout>>();

  constructor(
    readonly backendName: string,
    readonly maxFails: number,
    readonly failTimeout: number,
    readonly log: Logger,
    /** Called when an ejection ends (the backend wakes its queue and starts a slow start). */
    readonly onBack: (target: TargetState) => void,
  ) {}

  /** A connect to `target` failed. */
  failed(target: TargetState, now = Date.now()): void {
    if (this.maxFails === 0 || this.timers.has(target)) return;
    let window = this.windows.get(target);
    if (window === undefined || now - window.start >= this.failTimeout) {
      window = { start: now, fails: 0 };
      this.windows.set(target, window);
    }
    window.fails++;
    if (window.fails < this.maxFails) return;
    this.windows.delete(target);
    target.healthy = false;
    target.ejectedUntil = now + this.failTimeout;
    const key = formatAddress(target.address);
    const message = `backend ${this.backendName}: target ${key} is down for ${this.failTimeout} ms (${window.fails} failed ${window.fails === 1 ? "connect" : "connects"} within fail_timeout)`;
    this.log.info(event(message, { backend: this.backendName, target: key, health: "down", reason: "max_fails", fails: window.fails }));
    const timer = setTimeout(() => this.back(target), this.failTimeout);
    timer.unref();
    this.timers.set(target, timer);
  }

  private back(target: TargetState): void {
    this.timers.delete(target);
    target.healthy = true;
    target.ejectedUntil = 0;
    const key = formatAddress(target.address);
    this.log.info(
      event(`backend ${this.backendName}: target ${key} is tried again (fail_timeout passed)`, { backend: this.backendName, target: key, health: "up" }),
    );
    this.onBack(target);
  }

  /** Takes over the ejections of the backend this one replaces (a reload); targets not kept are dropped. */
  adopt(previous: Ejector, targets: readonly TargetState[]): void {
    for (const [target, timer] of previous.timers) {
      clearTimeout(timer);
      if (!targets.includes(target)) continue;
      const left = Math.max(0, (target.ejectedUntil ?? 0) - Date.now());
      const next = setTimeout(() => this.back(target), left);
      next.unref();
      this.timers.set(target, next);
    }
    previous.timers.clear();
  }

  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.windows.clear();
  }
}

export class SlowStart {
  /** Targets ramping now: when they came up and the weight they ramp to. */
  private readonly ramps = new Map<TargetState, { since: number; full: number }>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly duration: number) {}

  /** `target` came up: ramp its weight from SLOW_START_FLOOR of it. No-op with slow_start off or a weight of 0. */
  start(target: TargetState, now = Date.now()): void {
    if (this.duration <= 0) return;
    const full = this.ramps.get(target)?.full ?? target.weight;
    if (full <= 0) return;
    this.ramps.set(target, { since: now, full });
    target.weight = full * SLOW_START_FLOOR;
    target.slowStartUntil = now + this.duration;
    this.schedule();
  }

  /** Ends a ramp, leaving the weight as it is (an operator set it). */
  cancel(target: TargetState): void {
    if (this.ramps.delete(target)) target.slowStartUntil = 0;
  }

  /** The weight `target` ramps to, or null when it is not ramping. */
  fullWeight(target: TargetState): number | null {
    return this.ramps.get(target)?.full ?? null;
  }

  /** Moves every ramp one step; ends those that are done. */
  tick(now = Date.now()): void {
    for (const [target, ramp] of this.ramps) {
      const share = (now - ramp.since) / this.duration;
      if (share >= 1) {
        target.weight = ramp.full;
        target.slowStartUntil = 0;
        this.ramps.delete(target);
      } else target.weight = ramp.full * Math.max(SLOW_START_FLOOR, share);
    }
    if (this.ramps.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Takes over the ramps of the backend this one replaces; without slow_start now, their weights are restored at once. */
  adopt(previous: SlowStart, targets: readonly TargetState[]): void {
    for (const [target, ramp] of previous.ramps) {
      if (this.duration > 0 && targets.includes(target)) this.ramps.set(target, ramp);
      else {
        target.weight = ramp.full;
        target.slowStartUntil = 0;
      }
    }
    previous.stop();
    if (this.ramps.size > 0) this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(rampTick, Math.min(RAMP_TICK, Math.max(10, this.duration / 20)), this);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.ramps.clear();
  }
}

function rampTick(slowStart: SlowStart): void {
  slowStart.tick();
}
