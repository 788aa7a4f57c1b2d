import { describe, expect, test } from "bun:test";
import { BALANCES, type Balance, type Balancer, type Target, createBalancer, isAvailable } from "../../src/backend/balancer.ts";

// ---------------------------------------------------------------------------------------------
// helpers

/** Deterministic uniform [0, 1) numbers (mulberry32), so random-two tests never flake. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let nextHost = 1;
function target(options: Partial<Omit<Target, "address" | "key">> & { host?: string; port?: number } = {}): Target {
  const host = options.host ?? `10.0.0.${nextHost++}`;
  const port = options.port ?? 6379;
  return {
    address: { kind: "tcp", host, port },
    key: `${host}:${port}`,
    weight: options.weight ?? 1,
    maxConnections: options.maxConnections ?? 0,
    backup: options.backup ?? false,
    healthy: options.healthy ?? true,
    enabled: options.enabled ?? true,
    active: options.active ?? 0,
  };
}

function balancer(balance: Balance, seed = 1): Balancer {
  return createBalancer(balance, { random: seeded(seed) });
}

/** Client IPs that differ per pick, so source-hash spreads like it does in production. */
function client(i: number): string {
  return `192.168.${(i >>> 8) & 255}.${i & 255}`;
}

/** n picks with distinct clients; counts per target. Sessions are not opened. */
function tally(b: Balancer, targets: readonly Target[], n: number, exclude?: ReadonlySet<Target>): Map<Target, number> {
  const counts = new Map<Target, number>();
  for (let i = 0; i < n; i++) {
    const t = b.pick(targets, client(i), exclude);
    if (t === null) throw new Error("pick returned null");
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return counts;
}

/**
 * Simulates `open` concurrent sessions: each pick opens one (active++) and, once `open` are
 * open, first closes one chosen at random (so lifetimes are exponential, as with real clients).
 * Returns picks per target.
 */
function simulate(b: Balancer, targets: readonly Target[], picks: number, open: number, seed = 7): Map<Target, number> {
  const random = seeded(seed);
  const sessions: Target[] = [];
  const counts = new Map<Target, number>();
  for (let i = 0; i < picks; i++) {
    if (sessions.length >= open) {
      const at = Math.floor(random() * sessions.length);
      const closed = sessions[at]!;
      sessions[at] = sessions[sessions.length - 1]!;
      sessions.pop();
      closed.active--;
    }
    const t = b.pick(targets, client(i));
    if (t === null) throw new Error("pick returned null");
    t.active++;
    sessions.push(t);
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  for (const t of sessions) t.active--;
  return counts;
}

/** Each target's share of picks is within `tolerance` (relative) of its share of the weight. */
function expectShares(counts: Map<Target, number>, targets: readonly Target[], tolerance: number): void {
  const picks = [...counts.values()].reduce((a, b) => a + b, 0);
  const weight = targets.reduce((a, t) => a + t.weight, 0);
  for (const t of targets) {
    const expected = t.weight / weight;
    const got = (counts.get(t) ?? 0) / picks;
    if (Math.abs(got - expected) > expected * tolerance) {
      throw new Error(`${t.key} weight ${t.weight}: share ${got.toFixed(4)}, expected ${expected.toFixed(4)} ± ${tolerance * 100}%`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the contract every balancer keeps

describe.each(BALANCES)("%s", (balance) => {
  test("follows weights 1,2,3,4 within 5% over 40,000 picks (sessions never open)", () => {
    const targets = [1, 2, 3, 4].map((weight) => target({ weight }));
    expectShares(tally(balancer(balance), targets, 40_000), targets, 0.05);
  });

  test("follows weights 1,2,3,4 within 5% over 40,000 picks while 40 sessions stay open", () => {
    const targets = [1, 2, 3, 4].map((weight) => target({ weight }));
    expectShares(simulate(balancer(balance), targets, 40_000, 40), targets, 0.05);
  });

  test("spreads evenly over 5 equal weights within 5% while 20 sessions stay open", () => {
    const targets = [1, 1, 1, 1, 1].map((weight) => target({ weight }));
    expectShares(simulate(balancer(balance), targets, 20_000, 20), targets, 0.05);
  });

  test("never picks an unhealthy target", () => {
    const targets = [target(), target({ healthy: false, weight: 10 }), target()];
    const counts = tally(balancer(balance), targets, 2_000);
    expect(counts.get(targets[1]!)).toBeUndefined();
    expect(counts.size).toBe(2);
  });

  test("never picks a disabled target (drain, maint, weight 0), and picks it again once enabled", () => {
    const off = target({ enabled: false, weight: 10 });
    const targets = [target(), off, target()];
    const b = balancer(balance);
    expect(tally(b, targets, 2_000).get(off)).toBeUndefined();
    off.enabled = true;
    expect(tally(b, targets, 2_000).get(off)).toBeGreaterThan(0);
  });

  test("never picks a full target, and picks it again once a session closes", () => {
    const full = target({ maxConnections: 3, active: 3, weight: 10 });
    const targets = [target(), full, target()];
    const b = balancer(balance);
    expect(tally(b, targets, 2_000).get(full)).toBeUndefined();
    full.active = 2;
    targets[0]!.active = targets[2]!.active = 100; // so that least-conn and random-two prefer it
    expect(tally(b, targets, 2_000).get(full)).toBeGreaterThan(0);
  });

  test("never picks an excluded target (retries)", () => {
    const targets = [target(), target({ weight: 10 }), target()];
    const counts = tally(balancer(balance), targets, 2_000, new Set([targets[1]!]));
    expect(counts.get(targets[1]!)).toBeUndefined();
    expect(counts.size).toBe(2);
  });

  test("treats an empty or null exclude as none", () => {
    const targets = [target()];
    const b = balancer(balance);
    expect(b.pick(targets, "1.2.3.4", new Set())).toBe(targets[0]!);
    expect(b.pick(targets, "1.2.3.4", null)).toBe(targets[0]!);
  });

  test("uses backups only when no primary is available", () => {
    const primary1 = target({ maxConnections: 1 });
    const primary2 = target();
    const backup1 = target({ backup: true, weight: 10 });
    const backup2 = target({ backup: true });
    const targets = [backup1, primary1, backup2, primary2];
    const b = balancer(balance);
    const counts = tally(b, targets, 2_000);
    expect([...counts.keys()].every((t) => !t.backup)).toBe(true);

    // The last primary down: only backups, both of them.
    primary2.healthy = false;
    expect(b.pick(targets, "1.2.3.4")).toBe(primary1);
    primary1.active = 1; // full
    const fallback = tally(b, targets, 2_000);
    expect([...fallback.keys()].every((t) => t.backup)).toBe(true);
    expect(fallback.size).toBe(2);

    // A retry that already tried the one available primary also falls back.
    primary1.active = 0;
    expect(b.pick(targets, "1.2.3.4", new Set([primary1]))?.backup).toBe(true);

    // Back up: primaries again.
    primary2.healthy = true;
    expect(b.pick(targets, "1.2.3.4")?.backup).toBe(false);
  });

  test("returns null when nothing is available", () => {
    const b = balancer(balance);
    expect(b.pick([], "1.2.3.4")).toBeNull();
    const targets = [target({ healthy: false }), target({ maxConnections: 1, active: 1 }), target({ backup: true })];
    expect(b.pick(targets, "1.2.3.4", new Set([targets[2]!]))).toBeNull();
    expect(b.pick(targets, "1.2.3.4")).toBe(targets[2]!);
  });

  test("copes with the targets array changing between calls", () => {
    const b = balancer(balance);
    const [a, c, d, e] = [target(), target(), target(), target()];
    let targets: Target[] = [a!, c!, d!];
    tally(b, targets, 100);
    // Removed, added, reordered: only current targets are picked, and all of them.
    targets = [e!, d!, a!];
    expect(new Set(tally(b, targets, 1_000).keys())).toEqual(new Set(targets));
    // The same array edited in place.
    targets.splice(1, 1);
    expect(new Set(tally(b, targets, 1_000).keys())).toEqual(new Set(targets));
    targets.length = 0;
    expect(b.pick(targets, "1.2.3.4")).toBeNull();
    targets.push(c!);
    expect(b.pick(targets, "1.2.3.4")).toBe(c!);
  });

  test("follows weights within 5% after a reload that replaces every target object", () => {
    const b = balancer(balance);
    const before = [1, 2, 3].map((weight, i) => target({ weight, host: `10.1.0.${i}` }));
    tally(b, before, 1_001);
    const after = [3, 2, 1].map((weight, i) => target({ weight, host: `10.1.0.${i}` }));
    expectShares(tally(b, after, 30_000), after, 0.05);
  });
});

test("isAvailable: healthy, enabled and under maxConnections (0 = no limit)", () => {
  expect(isAvailable(target())).toBe(true);
  expect(isAvailable(target({ enabled: false }))).toBe(false);
  expect(isAvailable(target({ active: 1_000_000 }))).toBe(true);
  expect(isAvailable(target({ healthy: false }))).toBe(false);
  expect(isAvailable(target({ maxConnections: 2, active: 1 }))).toBe(true);
  expect(isAvailable(target({ maxConnections: 2, active: 2 }))).toBe(false);
});

test("createBalancer rejects an unknown balance", () => {
  expect(() => createBalancer("weighted" as Balance)).toThrow('unknown balance "weighted"');
});

// ---------------------------------------------------------------------------------------------
// algorithm-specific

function names(b: Balancer, targets: readonly Target[], n: number): string {
  const letter = new Map(targets.map((t, i) => [t, String.fromCharCode(97 + i)]));
  let out = "";
  for (let i = 0; i < n; i++) out += letter.get(b.pick(targets, client(i))!);
  return out;
}

describe("round-robin", () => {
  test("interleaves weights 5,1,1 as a a b a c a a (smooth, like nginx)", () => {
    const targets = [5, 1, 1].map((weight) => target({ weight }));
    expect(names(createBalancer("round-robin"), targets, 21)).toBe("aabacaa".repeat(3));
  });

  test("cycles equal weights in order", () => {
    const targets = [target(), target(), target()];
    expect(names(createBalancer("round-robin"), targets, 7)).toBe("abcabca");
  });

  test("skips an unavailable target without breaking the others' order", () => {
    const targets = [target(), target(), target()];
    const b = createBalancer("round-robin");
    targets[1]!.healthy = false;
    expect(names(b, targets, 4)).toBe("acac");
  });

  test("keeps its place across a reload that replaces target objects by key", () => {
    const make = () => [5, 1, 1].map((weight, i) => target({ weight, host: `10.2.0.${i}` }));
    const b = createBalancer("round-robin");
    const first = names(b, make(), 3);
    const rest = names(b, make(), 4);
    expect(first + rest).toBe("aabacaa");
  });
});

describe("least-conn", () => {
  test("picks the least loaded by active/weight", () => {
    const targets = [target({ active: 5 }), target({ active: 2 }), target({ active: 9, weight: 10 })];
    const b = createBalancer("least-conn");
    expect(b.pick(targets, "")).toBe(targets[2]!); // 0.9 < 2 < 5
    targets[2]!.active = 30; // 3 > 2
    expect(b.pick(targets, "")).toBe(targets[1]!);
  });

  test("rotates among tied targets instead of always taking the first", () => {
    const targets = [target({ active: 1 }), target({ active: 3 }), target({ active: 1 }), target({ active: 1 })];
    expect(names(createBalancer("least-conn"), targets, 6)).toBe("acdacd");
  });

  test("shares ties by weight", () => {
    const targets = [5, 1, 1].map((weight) => target({ weight }));
    expect(names(createBalancer("least-conn"), targets, 7)).toBe("aabacaa");
  });
});

describe("random-two", () => {
  test("of two drawn targets takes the less loaded, so a loaded target gets nothing", () => {
    // Every draw of two includes at least one idle target, which beats the loaded one.
    const targets = [target({ active: 50 }), target(), target()];
    const counts = tally(balancer("random-two"), targets, 5_000);
    expect(counts.get(targets[0]!)).toBeUndefined();
  });

  test("with two targets always takes the less loaded", () => {
    const targets = [target({ active: 3 }), target({ active: 2 })];
    const b = balancer("random-two");
    for (let i = 0; i < 100; i++) expect(b.pick(targets, "")).toBe(targets[1]!);
  });
});

describe("source-hash", () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `${(i * 7919) % 223}.${i % 251}.${(i >>> 8) & 255}.${i & 255}`);

  function assign(b: Balancer, targets: readonly Target[]): Map<string, Target> {
    return new Map(keys.map((k) => [k, b.pick(targets, k)!]));
  }

  test("keeps a client on the same target across picks, balancers and orders", () => {
    const targets = [target(), target(), target(), target()];
    const one = assign(createBalancer("source-hash"), targets);
    const two = assign(createBalancer("source-hash"), [...targets].reverse());
    expect(two).toEqual(one);
  });

  test("removing one of 5 targets moves exactly the 10,000 keys' share that was on it, no other", () => {
    const targets = [target(), target(), target(), target(), target()];
    const b = createBalancer("source-hash");
    const before = assign(b, targets);
    const removed = targets[2]!;
    const after = assign(
      b,
      targets.filter((t) => t !== removed),
    );
    let moved = 0;
    for (const [k, t] of before) {
      if (t === removed) moved++;
      else expect(after.get(k)).toBe(t);
    }
    expect(moved).toBeGreaterThan(1_500);
  });

  test("an unavailable target's clients go to their next choice and come back when it recovers", () => {
    const targets = [target(), target(), target(), target(), target()];
    const b = createBalancer("source-hash");
    const before = assign(b, targets);
    targets[1]!.healthy = false;
    const down = assign(b, targets);
    const removed = assign(
      b,
      targets.filter((t) => t !== targets[1]),
    );
    expect(down).toEqual(removed); // same as if the target were gone
    targets[1]!.healthy = true;
    expect(assign(b, targets)).toEqual(before);
  });

  test("a retry excluding the first choice gets the client's second choice, consistently", () => {
    const targets = [target(), target(), target()];
    const b = createBalancer("source-hash");
    for (const k of keys.slice(0, 200)) {
      const first = b.pick(targets, k)!;
      const second = b.pick(targets, k, new Set([first]))!;
      expect(second).not.toBe(first);
      expect(b.pick(targets, k, new Set([first]))).toBe(second);
      expect(
        b.pick(
          targets.filter((t) => t !== first),
          k,
        ),
      ).toBe(second);
    }
  });

  test("spreads 10,000 keys by weights 1,1,2,3,5 within 10%", () => {
    const targets = [1, 1, 2, 3, 5].map((weight) => target({ weight }));
    const counts = new Map<Target, number>();
    for (const t of assign(createBalancer("source-hash"), targets).values()) counts.set(t, (counts.get(t) ?? 0) + 1);
    expectShares(counts, targets, 0.1);
  });
});
