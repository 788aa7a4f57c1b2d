/** Every row of the table: which workload, which unit, and how one sample is taken. */
import { runBulk } from "./bulk.ts";
import { measureIdle } from "./idle.ts";
import { REDIS_ROWS, runRedisRow, type RedisRow } from "./redis.ts";
import type { Unit } from "./table.ts";

export type Row =
  | { kind: "redis"; id: string; title: string; unit: Unit; redis: RedisRow }
  | { kind: "bulk"; id: string; title: string; unit: Unit; reverse: boolean }
  | { kind: "idle"; id: string; title: string; unit: Unit };

export const ROWS: Row[] = [
  ...REDIS_ROWS.map((redis): Row => ({ kind: "redis", id: redis.id, title: redis.title, unit: "req/s", redis })),
  { kind: "bulk", id: "bulk", title: "bulk iperf3 ->", unit: "Gbit/s", reverse: false },
  { kind: "bulk", id: "bulk-reverse", title: "bulk iperf3 <- (-R)", unit: "Gbit/s", reverse: true },
  { kind: "idle", id: "idle", title: "idle sessions RSS", unit: "KiB/session" },
];

export const ROW_IDS = ROWS.map((r) => r.id);

/** Where a contender's instances listen, and the targets behind them. */
export interface Ports {
  /** Contender port forwarding to Redis. */
  redis: number;
  /** Contender port forwarding to iperf3 -s. */
  iperf: number;
  /** The bench Redis itself. */
  redisTarget: number;
}

export interface Params {
  requests: number;
  seconds: number;
  sessions: number;
}

export interface Sample {
  value: number;
  p50ms: number;
}

/**
 * One sample of a redis or bulk row. Idle rows need a fresh instance and go through
 * `idleSample` instead.
 */
export async function takeSample(row: Row, ports: Ports, params: Params): Promise<Sample> {
  if (row.kind === "redis") {
    const s = await runRedisRow(row.redis, ports.redis, ports.redisTarget, params.requests);
    return { value: s.rps, p50ms: s.p50ms };
  }
  if (row.kind === "bulk") return { value: await runBulk(ports.iperf, params.seconds, row.reverse), p50ms: NaN };
  throw new Error(`${row.id}: not a timed row`);
}

export async function idleSample(pid: number, port: number, redisTarget: number, params: Params): Promise<Sample> {
  const s = await measureIdle(pid, port, redisTarget, params.sessions);
  return { value: s.kibPerSession, p50ms: NaN };
}
