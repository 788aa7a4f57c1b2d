/**
 * What a backend gives and takes in an upgrade in place (proxy/handover.ts): the old process
 * saves each target's state, the new one restores it on the target with the same key and
 * counts the sessions handed over on their targets.
 */
import type { Backend } from "./backend.ts";
import { enable, type AdminState, type TargetState } from "./target.ts";

/** A target as an older process hands it to the new one in an upgrade (see restoreTarget). */
export interface SavedTarget {
  state: AdminState;
  weight: number;
  configuredWeight: number;
  healthy: boolean;
  sessions: number;
  connectFailures: number;
}

/** What an upgrade carries over of a target (see restoreTarget). */
export function saveTarget(target: TargetState): SavedTarget {
  const { state, weight, configuredWeight, healthy, sessions, connectFailures } = target;
  return { state, weight, configuredWeight, healthy, sessions, connectFailures };
}

/** What an older process knew of the target with this key (an upgrade): admin state, runtime weight, health, counters. */
export function restoreTarget(backend: Backend, key: string, saved: SavedTarget): void {
  const target = backend.targets.find((t) => t.key === key);
  if (target === undefined) return;
  target.state = saved.state;
  if (target.configuredWeight === saved.configuredWeight) target.weight = saved.weight; // as a reload keeps a runtime weight
  target.healthy = saved.healthy;
  target.sessions += saved.sessions;
  target.connectFailures += saved.connectFailures;
  enable(target);
}

/**
 * A session handed over by an older process (an upgrade), connected to the target with this
 * key: counted on it as `Backend.acquire` counts a new one. Null when this config has no such target.
 */
export function adoptSession(backend: Backend, key: string): TargetState | null {
  const target = backend.targets.find((t) => t.key === key) ?? null;
  if (target !== null) target.active++;
  return target;
}
