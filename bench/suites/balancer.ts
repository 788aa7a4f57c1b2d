/**
 * Micro-benchmark of the balancers: picks per second, in-process, no sockets.
 *
 *   bun run bench/run.ts --suite balancer [--rounds 5] [--picks 1000000] [--smoke] [--json] [--markdown]
 *
 * Workload, the same for every balancer: a backend of N targets (weights 1..4 cycling), 64
 * sessions kept open (each pick opens one and closes the oldest, so `active` moves as in
 * production), a different client IP per pick out of 4096. Before timing, a correctness check:
 * every target gets picked. Rounds are interleaved (A B C D, B C D A, …); the table shows the
 * median picks/s over rounds and min..max. Prints only: no file in bench/results/.
 */

import { cpus } from "node:os";
import { BALANCES, type Balance, type Target, createBalancer } from "../../src/backend/balancer.ts";
import { COMMON_HELP, parseBenchFlags, positiveInt } from "../runner/flags.ts";
import { rotated } from "../runner/rounds.ts";
import { markdownTable, median } from "../report/table.ts";

export const HELP = `bun run bench/run.ts --suite balancer [flags]
  picks per second of each balancer, in-process, no sockets
  --rounds N            rounds, interleaved across balancers (default 5; smoke 1)
  --picks N             picks per sample (default 1000000; smoke 100000)
${COMMON_HELP}`;

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
      enabled: true,
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

export async function main(args: string[]): Promise<void> {
  const values = parseBenchFlags("balancer", args, { picks: { type: "string" } }, HELP);
  const rounds = positiveInt("rounds", values.rounds, 5, 1, values.smoke);
  const picks = positiveInt("picks", values.picks, 1_000_000, 100_000, values.smoke);

  const results: Record<string, Record<string, number[]>> = {};
  for (const n of SIZES) {
    const targets = makeTargets(n);
    for (const balance of BALANCES) check(balance, targets);
    for (const balance of BALANCES) run(balance, targets, Math.min(picks, 200_000)); // warm up the JIT
    const perSize: Record<string, number[]> = {};
    for (const balance of BALANCES) perSize[balance] = [];
    for (let r = 0; r < rounds; r++) for (const balance of rotated(BALANCES, r)) perSize[balance]!.push(run(balance, targets, picks));
    results[`${n} targets`] = perSize;
  }

  const meta = {
    date: new Date().toISOString(),
    bun: Bun.version,
    cpu: cpus()[0]?.model ?? "unknown",
    nproc: cpus().length,
    params: { rounds, picks, open: OPEN, clients: CLIENTS.length, sizes: SIZES, weights: "1..4 cycling" },
  };

  const fmt = (x: number) => `${(x / 1e6).toFixed(2)}M`;
  const cellOf = (balance: Balance, n: number) => {
    const xs = results[`${n} targets`]![balance]!;
    return `${fmt(median(xs)!)} (${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))})`;
  };
  const out = values.json ? process.stderr : process.stdout;
  if (values.json) console.log(JSON.stringify({ meta, results }, null, 2));
  else {
    out.write(`# balancer picks/s — ${meta.date}, bun ${meta.bun}, ${meta.cpu} ×${meta.nproc}\n`);
    out.write(`# ${rounds} rounds × ${picks} picks, ${OPEN} sessions open, ${CLIENTS.length} client IPs\n\n`);
    out.write(`${["balance".padEnd(12), ...SIZES.map((n) => `${n} targets (min..max)`.padStart(28))].join(" ")}\n`);
    for (const balance of BALANCES) out.write(`${[balance.padEnd(12), ...SIZES.map((n) => cellOf(balance, n).padStart(28))].join(" ")}\n`);
  }
  if (values.markdown) {
    const rows = BALANCES.map((balance) => [balance, ...SIZES.map((n) => cellOf(balance, n))]);
    out.write(`\n${markdownTable({ head: ["balance", ...SIZES.map((n) => `${n} targets (min..max)`)], rows, text: 1 })}\n`);
  }
}
