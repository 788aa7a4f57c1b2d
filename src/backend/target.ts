/**
 * A target of a backend: its options, its state and counters, and how a reload or a target
 * source's update carries a target's object over to the new list of targets.
 *
 * The objects are their backend's (backend.ts): the balancer reads them, the health checker
 * sets `healthy`, sessions count themselves in `active`, and the admin API changes `state` and
 * `weight` through the backend.
 */
import { DEFAULTS } from "../config/defaults.ts";
import { formatAddress, type Address } from "../util/address.ts";
import type { Target } from "./balancer.ts";

/**
 * What an operator set a target to (admin API, `tcprouter ctl`), apart from its health:
 * - `ready`: takes new sessions (when healthy and not full);
 * - `drain`: no new sessions; open ones go on until they end;
 * - `maint`: no new sessions; open ones go on unless the change asked to close them.
 * Health checks keep running in every state, so a target shows its health before it is made ready.
 */
export const ADMIN_STATES = ["ready", "drain", "maint"] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

/** The highest runtime weight, HAProxy's (`set weight`); 0 takes no new sessions, as in HAProxy. */
export const MAX_WEIGHT = 256;

export interface TargetOptions {
  address: Address;
  /** ≥ 1. Default DEFAULTS.weight. */
  weight?: number;
  /** 0 = no limit. Default DEFAULTS.maxConnections. */
  maxConnections?: number;
  /** Used only when no primary target is available. Default false. */
  backup?: boolean;
  /** The configured address when this target is one address of a hostname (`redis.svc:6379`). Default: the address. */
  name?: string;
  /** The local address its upstream connections are made from. Default: the backend's `source`. */
  source?: string;
}

/**
 * One target and its counters. A reload keeps the object of a target whose address stays
 * (sessions on it keep counting in `active`) and updates its settings in place.
 */
export interface TargetState extends Target {
  /** The address as configured: `key` for a literal address, the hostname form (`redis.svc:6379`) for a resolved one. */
  name: string;
  /** The weight the balancer uses: the file's, or a runtime one (0..MAX_WEIGHT) set with `setWeight`. */
  weight: number;
  /** The weight the config file gives. A reload that changes it drops a runtime weight; one that keeps it keeps the runtime weight. */
  configuredWeight: number;
  /** Set by an operator; kept across reloads and DNS updates while the target's key stays. New targets start ready. */
  state: AdminState;
  /** `state === "ready" && weight > 0`, kept by the backend: what the balancer reads. */
  enabled: boolean;
  maxConnections: number;
  backup: boolean;
  /** Its own source address (TargetOptions.source); absent = the backend's. */
  source?: string;
  /** ms since the epoch until which passive ejection (max_fails) keeps it down; 0 or absent = not ejected. */
  ejectedUntil?: number;
  /** ms since the epoch at which its slow start ends (`weight` is ramping until then); 0 or absent = none. */
  slowStartUntil?: number;
  /** Sessions connected to this target since start (failed attempts are in connectFailures). */
  sessions: number;
  connectFailures: number;
}

/**
 * The states of `targets`, reusing the object of each key already in `previous`: its admin
 * state stays, and so does a runtime weight unless the file's weight for it changed (the file
 * wins then, as HAProxy does when it loads a server-state file).
 */
export function targetStates(targets: readonly TargetOptions[], previous: readonly TargetState[]): TargetState[] {
  const kept = new Map(previous.map((target) => [target.key, target]));
  return targets.map((target) => {
    const key = formatAddress(target.address);
    const configured = target.weight ?? DEFAULTS.weight;
    const state = kept.get(key) ?? {
      address: target.address,
      key,
      name: key,
      weight: configured,
      configuredWeight: configured,
      state: "ready",
      maxConnections: 0,
      backup: false,
      healthy: true,
      enabled: true,
      active: 0,
      sessions: 0,
      connectFailures: 0,
    };
    state.name = target.name ?? key;
    if (state.configuredWeight !== configured) state.weight = state.configuredWeight = configured;
    state.maxConnections = target.maxConnections ?? DEFAULTS.maxConnections;
    state.backup = target.backup ?? false;
    if (target.source !== undefined) state.source = target.source;
    else delete state.source;
    enable(state);
    return state;
  });
}

/** `enabled` (what the balancer reads) from the admin state and weight: one field on the hot path. */
export function enable(target: TargetState): void {
  target.enabled = target.state === "ready" && target.weight > 0;
}
