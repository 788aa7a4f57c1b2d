/**
 * Balancers: pick a target of a backend for each new session.
 *
 * Every balancer follows the same rules, whatever its algorithm:
 * - only available targets (healthy, enabled, not full) that this session has not tried yet are picked;
 * - primaries first: a backup target is picked only when no primary is available;
 * - null when nothing is available (the session then fails with "no target available").
 *
 * Targets are owned by the backend; a balancer only reads them. The targets array may change
 * between calls (reload, DNS): each balancer keeps its own per-target state in a table that
 * follows the array and carries state over by `key`, so there are no stale indexes.
 *
 * pick() runs once per new session, so it allocates nothing: a few linear scans over the
 * targets (fine for the 2–50 targets a backend has) instead of building filtered arrays.
 */

import type { Address } from "../util/address.ts";
import { BALANCES, type Balance } from "../config/types.ts";

export { BALANCES, type Balance };

export interface Target {
  readonly address: Address;
  /** Formatted address, the identity of a target across reloads, e.g. "127.0.0.1:6379". */
  readonly key: string;
  /** Share of new sessions relative to the other targets, ≥ 1. */
  readonly weight: number;
  /** Sessions allowed open at once; 0 = no limit. */
  readonly maxConnections: number;
  /** Used only when no primary (backup: false) target is available. */
  readonly backup: boolean;
  /** Maintained by health checks. */
  healthy: boolean;
  /**
   * False while the target takes no new sessions by an operator's choice: admin state drain or
   * maint, or a runtime weight of 0 (kept by the backend's TargetState, see Backend.setState).
   * Health is separate.
   */
  enabled: boolean;
  /** Sessions open to this target now, maintained by the session code. */
  active: number;
}

export interface Balancer {
  /**
   * Picks a target for a new session, or null when none is available. `clientKey` is the
   * client IP (for source-hash). `exclude` holds targets already tried by this session (retries).
   */
  pick(targets: readonly Target[], clientKey: string, exclude?: ReadonlySet<Target> | null): Target | null;
}

export interface BalancerOptions {
  /** Uniform random numbers in [0, 1) for random-two. Default: Math.random. Tests pass a seeded one. */
  random?: () => number;
}

export function createBalancer(balance: Balance, options: BalancerOptions = {}): Balancer {
  switch (balance) {
    case "round-robin":
      return new RoundRobin();
    case "least-conn":
      return new LeastConn();
    case "random-two":
      return new RandomTwo(options.random ?? Math.random);
    case "source-hash":
      return new SourceHash();
    default:
      throw new Error(`unknown balance "${balance as string}" (expected ${BALANCES.join(", ")})`);
  }
}

/** Healthy, enabled (admin state ready, weight > 0) and not full. */
export function isAvailable(target: Target): boolean {
  return target.healthy && target.enabled && (target.maxConnections === 0 || target.active < target.maxConnections);
}

/** Available, in the group being scanned (primaries or backups), and not tried yet. */
function eligible(target: Target, backup: boolean, exclude: ReadonlySet<Target> | null): boolean {
  return target.backup === backup && isAvailable(target) && (exclude === null || !exclude.has(target));
}

/** An empty exclude set is the common case; treat it as none so scans skip the lookup. */
function excludeOrNull(exclude: ReadonlySet<Target> | null | undefined): ReadonlySet<Target> | null {
  return exclude != null && exclude.size > 0 ? exclude : null;
}

/**
 * Per-target state of one balancer, parallel to the last targets array it saw. When the array
 * changes (a different array, or the same array edited in place), the table is rebuilt and
 * each target keeps its state by `key`; new targets start fresh.
 */
class TargetTable {
  private targets: Target[] = [];
  /** Smooth weighted round-robin "current weight" per target (nginx `current_weight`). */
  current = new Float64Array(0);
  /** Hash of each target's key, for source-hash. */
  keyHash = new Uint32Array(0);

  /** Makes index i of the tables describe targets[i]. O(n) pointer comparisons when nothing changed. */
  follow(targets: readonly Target[]): void {
    const known = this.targets;
    if (known.length === targets.length) {
      let same = true;
      for (let i = 0; i < targets.length; i++) {
        if (known[i] !== targets[i]) {
          same = false;
          break;
        }
      }
      if (same) return;
    }
    this.rebuild(targets);
  }

  private rebuild(targets: readonly Target[]): void {
    const before = new Map<string, number>();
    for (let i = 0; i < this.targets.length; i++) before.set(this.targets[i]!.key, this.current[i]!);
    const n = targets.length;
    const current = new Float64Array(n);
    const keyHash = new Uint32Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const target = targets[i]!;
      current[i] = before.get(target.key) ?? 0;
      sum += current[i]!;
      keyHash[i] = fnv1a(target.key, FNV_OFFSET);
    }
    // Smooth round-robin keeps the current weights summing to 0. Removed targets take their
    // share with them; shift everyone by the same amount (order unchanged) to restore the sum.
    const shift = n > 0 ? sum / n : 0;
    for (let i = 0; i < n; i++) current[i]! -= shift;
    this.targets = targets.slice();
    this.current = current;
    this.keyHash = keyHash;
  }
}

/**
 * One step of smooth weighted round-robin over the targets that pass `include`:
 * every candidate's current weight grows by its weight, the largest wins and pays back the
 * total. First in array order wins ties, as in nginx.
 */
function smoothStep(
  table: TargetTable,
  targets: readonly Target[],
  backup: boolean,
  exclude: ReadonlySet<Target> | null,
  onlyLoad: number, // -1: every eligible target; otherwise only those with this active/weight
  onlyWeight: number,
): Target | null {
  const current = table.current;
  let best = -1;
  let total = 0;
  for (let i = 0; i < targets.length; i++) {
    const target = targets[i]!;
    if (!eligible(target, backup, exclude)) continue;
    if (onlyLoad >= 0 && target.active * onlyWeight !== onlyLoad * target.weight) continue;
    current[i]! += target.weight;
    total += target.weight;
    if (best < 0 || current[i]! > current[best]!) best = i;
  }
  if (best < 0) return null;
  current[best]! -= total;
  return targets[best]!;
}

class RoundRobin implements Balancer {
  private readonly table = new TargetTable();

  pick(targets: readonly Target[], _clientKey: string, exclude?: ReadonlySet<Target> | null): Target | null {
    this.table.follow(targets);
    const ex = excludeOrNull(exclude);
    return smoothStep(this.table, targets, false, ex, -1, 0) ?? smoothStep(this.table, targets, true, ex, -1, 0);
  }
}

class LeastConn implements Balancer {
  private readonly table = new TargetTable();

  pick(targets: readonly Target[], _clientKey: string, exclude?: ReadonlySet<Target> | null): Target | null {
    this.table.follow(targets);
    const ex = excludeOrNull(exclude);
    return this.scan(targets, false, ex) ?? this.scan(targets, true, ex);
  }

  private scan(targets: readonly Target[], backup: boolean, exclude: ReadonlySet<Target> | null): Target | null {
    // Least active/weight, compared as active_a * weight_b < active_b * weight_a (no division).
    let least: Target | null = null;
    let tied = 0;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!eligible(target, backup, exclude)) continue;
      if (least === null) {
        least = target;
        tied = 1;
        continue;
      }
      const a = target.active * least.weight;
      const b = least.active * target.weight;
      if (a < b) {
        least = target;
        tied = 1;
      } else if (a === b) {
        tied++;
      }
    }
    if (least === null || tied === 1) return least;
    // Several equally loaded: share among them by weight (smooth round-robin), as nginx does.
    // This is what keeps weights when sessions are short and every target sits at 0 active.
    return smoothStep(this.table, targets, backup, exclude, least.active, least.weight);
  }
}

class RandomTwo implements Balancer {
  constructor(private readonly random: () => number) {}

  pick(targets: readonly Target[], _clientKey: string, exclude?: ReadonlySet<Target> | null): Target | null {
    const ex = excludeOrNull(exclude);
    return this.scan(targets, false, ex) ?? this.scan(targets, true, ex);
  }

  private scan(targets: readonly Target[], backup: boolean, exclude: ReadonlySet<Target> | null): Target | null {
    let count = 0;
    let total = 0;
    let only: Target | null = null;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!eligible(target, backup, exclude)) continue;
      count++;
      total += target.weight;
      only = target;
    }
    if (count <= 1) return only;
    // Two distinct candidates, each drawn with probability proportional to its weight (the
    // second from the rest). With equal loads the first drawn wins, so when every target is
    // idle the shares follow the weights exactly.
    const first = this.draw(targets, backup, exclude, total, null);
    const second = this.draw(targets, backup, exclude, total - first.weight, first);
    return second.active * first.weight < first.active * second.weight ? second : first;
  }

  private draw(targets: readonly Target[], backup: boolean, exclude: ReadonlySet<Target> | null, total: number, skip: Target | null): Target {
    let r = this.random() * total;
    let last: Target | null = null;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (target === skip || !eligible(target, backup, exclude)) continue;
      last = target;
      r -= target.weight;
      if (r < 0) return target;
    }
    return last!; // float rounding left r at ~0 after the last candidate
  }
}

class SourceHash implements Balancer {
  private readonly table = new TargetTable();

  pick(targets: readonly Target[], clientKey: string, exclude?: ReadonlySet<Target> | null): Target | null {
    this.table.follow(targets);
    const ex = excludeOrNull(exclude);
    const client = fnv1a(clientKey, FNV_OFFSET);
    return this.scan(targets, client, false, ex) ?? this.scan(targets, client, true, ex);
  }

  /**
   * Weighted rendezvous (highest random weight) hashing: each target scores
   * weight / -ln(u), u a uniform (0, 1) hash of (client, target key); the highest score wins.
   * A client's scores do not depend on the other targets, so adding or removing one moves
   * only the clients it wins or held, and an unavailable target hands its clients to each
   * one's next-highest score.
   */
  private scan(targets: readonly Target[], client: number, backup: boolean, exclude: ReadonlySet<Target> | null): Target | null {
    const keyHash = this.table.keyHash;
    let best: Target | null = null;
    let bestScore = -1;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!eligible(target, backup, exclude)) continue;
      const u = (mix(client, keyHash[i]!) + 0.5) / 4294967296;
      const score = target.weight / -Math.log(u);
      // Equal scores (only for equal keys in practice): the smaller key wins, whatever the order.
      if (score > bestScore || (score === bestScore && best !== null && target.key < best.key)) {
        best = target;
        bestScore = score;
      }
    }
    return best;
  }
}

const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a 32 over UTF-16 code units: fast on short strings like IPs, no allocation. */
function fnv1a(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A well-mixed 32-bit hash of the pair (murmur3's finalizer, applied twice). */
function mix(a: number, b: number): number {
  let h = fmix32(a ^ Math.imul(b, 0x9e3779b1));
  h = fmix32((h + b) | 0);
  return h;
}

function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
