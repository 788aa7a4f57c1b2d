/**
 * Micro-benchmark of the balancers: picks per second, in-process, no sockets.
 *
 *   bun run bench/balancer.ts [--rounds 5] [--picks 1000000] [--json]
 *
 * Workload, the same for every balancer: a backend of N targets (weights 1..4 cycling), 64
 * sessions kept open (each pick opens one and closes the oldest, so `active` moves as in
 * production), a different client IP per pick out of 4096. Before timing, a correctness check:
 * every target gets picked. Rounds are interleaved (A B C D, B C D A, …); the table shows the
 * median picks/s over rounds and min..max.
 */

import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { BALANCES, type Balance, type Target, createBalancer } from "../src/backend/balancer.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    picks: { type: "string", default: "1000000" },
    json: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const picks = Number(values.picks);
const SIZES = [2, 5, 50];
const OPEN = 64;
const CLIENTS = Array.from({ length: 4096 }, (_, i) => `10.${(i * 37) & 255}.${(i >>> 8) & 255}.${i & 255}`);

function makeTargets(n: number): Target[] {
  return Array.from({ length: n }, (_, i) => {
    const host = `10.0.${i >>> 8}.${i & 255}`;
    return {
      address: { kind: "tcp", host, port: 6379 },
      key: `${host}:6379`,
      weight: 1 + (i % 4),
      maxConnections: 0,
      backup: false,
      healthy: true,
      active: 0,
    } satisfies Target;
  });
}

/** Runs `count` picks through a ring of OPEN sessions; returns picks/s. */
function run(balance: Balance, targets: Target[], count: number): number {
  const balancer = createBalancer(balance);
  const ring: (Target | null)[] = new Array(OPEN).fill(null);
  const start = Bun.nanoseconds();
  for (let i = 0; i < count; i++) {
    const slot = i % OPEN;
    const closing = ring[slot];
    if (closing) closing.active--;
    const t = balancer.pick(targets, CLIENTS[i & 4095]!)!;
    t.active++;
    ring[slot] = t;
  }
  const seconds = (Bun.nanoseconds() - start) / 1e9;
  for (const t of ring) if (t) t.active--;
  return count / seconds;
}

function check(balance: Balance, targets: Target[]): void {
  const balancer = createBalancer(balance);
  const seen = new Set<Target>();
  for (let i = 0; i < 4096; i++) seen.add(balancer.pick(targets, CLIENTS[i]!)!);
  if (seen.size !== targets.length) throw new Error(`${balance}: picked ${seen.size} of ${targets.length} targets`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const results: Record<string, Record<string, number[]>> = {};
for (const n of SIZES) {
  const targets = makeTargets(n);
  for (const balance of BALANCES) check(balance, targets);
  for (const balance of BALANCES) run(balance, targets, Math.min(picks, 200_000)); // warm up the JIT
  const perSize: Record<string, number[]> = {};
  for (const balance of BALANCES) perSize[balance] = [];
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < BALANCES.length; k++) {
      const balance = BALANCES[(r + k) % BALANCES.length]!;
      perSize[balance]!.push(run(balance, targets, picks));
    }
  }
  results[`${n} targets`] = perSize;
}

const meta = {
  date: new Date().toISOString(),
  bun: Bun.version,
  cpu: cpus()[0]?.model ?? "unknown",
  nproc: cpus().length,
  params: { rounds, picks, open: OPEN, clients: CLIENTS.length, sizes: SIZES, weights: "1..4 cycling" },
};

if (values.json) {
  console.log(JSON.stringify({ meta, results }, null, 2));
} else {
  console.log(`# balancer picks/s — ${meta.date}, bun ${meta.bun}, ${meta.cpu} ×${meta.nproc}`);
  console.log(`# ${rounds} rounds × ${picks} picks, ${OPEN} sessions open, ${CLIENTS.length} client IPs\n`);
  const fmt = (x: number) => `${(x / 1e6).toFixed(2)}M`;
  console.log(["balance".padEnd(12), ...SIZES.map((n) => `${n} targets (min..max)`.padStart(28))].join(" "));
  for (const balance of BALANCES) {
    const cells = SIZES.map((n) => {
      const xs = results[`${n} targets`]![balance]!;
      return `${fmt(median(xs))} (${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))})`.padStart(28);
    });
    console.log([balance.padEnd(12), ...cells].join(" "));
  }
}
