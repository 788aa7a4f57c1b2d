/**
 * The Redis workload: a dedicated redis-server, the correctness check, and the
 * redis-benchmark rows (requests/s and p50 latency from `--csv`).
 */
import { randomBytes } from "node:crypto";
import { HOST, freePort, waitForPort } from "../../runner/net.ts";
import { cpuTicks, run, startServer, workDir, type CpuTicks, type Server } from "../../runner/procs.ts";
import { exchange } from "./resp.ts";

/** Starts redis-server for the bench on a free port (never the system one on 6379). */
export async function startRedis(): Promise<{ server: Server; port: number }> {
  const port = await freePort();
  const argv = ["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no"];
  argv.push("--dir", workDir(), "--loglevel", "warning", "--maxclients", "10000", "--daemonize", "no");
  const server = startServer("redis", argv);
  await waitForPort(port, 10_000, () => server.proc.exitCode === null);
  return { server, port };
}

/**
 * Before timing: `redis-cli ping` answers PONG, and a 64 KiB random value comes back byte
 * for byte. Throws with what differed.
 */
export async function checkRedisPath(port: number, tag: string): Promise<void> {
  const ping = await run(["redis-cli", "-h", HOST, "-p", String(port), "ping"], 5000);
  if (ping.stdout.trim() !== "PONG") throw new Error(`${tag}: redis-cli ping gave ${JSON.stringify(ping.stdout + ping.stderr)}`);
  const value = randomBytes(64 * 1024);
  const key = `bench:check:${tag}`;
  const [set, got, del] = await exchange(port, [
    ["SET", key, value],
    ["GET", key],
    ["DEL", key],
  ]);
  if (set !== "OK") throw new Error(`${tag}: SET of 64 KiB replied ${String(set)}`);
  if (!(got instanceof Buffer) || !got.equals(value)) {
    const len = got instanceof Buffer ? got.length : String(got);
    throw new Error(`${tag}: GET of 64 KiB did not return the same bytes (got ${len})`);
  }
  if (del !== 1) throw new Error(`${tag}: DEL replied ${String(del)}`);
}

export interface RedisRow {
  id: string;
  title: string;
  /** redis-benchmark arguments besides -h/-p/-n/--csv. */
  args: string[];
  /** Multiplier on --requests (big values and new connections are slower, -P 16 faster). */
  scale: number;
}

/** PING uses ping_mbulk: the RESP form real clients send (ping_inline is the telnet form). */
export const REDIS_ROWS: RedisRow[] = [
  { id: "ping", title: "PING -c 50", args: ["-t", "ping_mbulk", "-c", "50"], scale: 1 },
  { id: "set", title: "SET -c 50", args: ["-t", "set", "-c", "50"], scale: 1 },
  { id: "get", title: "GET -c 50", args: ["-t", "get", "-c", "50"], scale: 1 },
  { id: "get-p16", title: "GET -c 50 -P 16", args: ["-t", "get", "-c", "50", "-P", "16"], scale: 10 },
  { id: "set-4k", title: "SET -c 50 -d 4096", args: ["-t", "set", "-c", "50", "-d", "4096"], scale: 1 },
  { id: "set-64k", title: "SET -c 50 -d 65536", args: ["-t", "set", "-c", "50", "-d", "65536"], scale: 0.1 },
  { id: "ping-k0", title: "PING -c 50 -k 0 (new conn/req)", args: ["-t", "ping_mbulk", "-c", "50", "-k", "0"], scale: 0.1 },
];

/**
 * Rows of REDIS_ROWS by id, for the suites that run a few of them; `scale` overrides a row's
 * multiplier on --requests (the backends and observability suites run -k 0 at 0.2).
 */
export function redisRows(ids: string[], scale: Record<string, number> = {}): RedisRow[] {
  return ids.map((id) => {
    const row = REDIS_ROWS.find((r) => r.id === id);
    if (row === undefined) throw new Error(`no Redis row "${id}"`);
    return { ...row, scale: scale[id] ?? row.scale };
  });
}

/** redis-benchmark's key without -r; GET rows read it, so it is reset to 3 bytes first. */
export const BENCH_KEY = "key:__rand_int__";

export interface RedisSample {
  rps: number;
  p50ms: number;
  /** redis-benchmark -n of this run. */
  requests: number;
  /** Clock ticks the proxy (`cpuPid` and its descendants) spent during the run; only with `cpuPid`. */
  cpu?: CpuTicks;
}

/**
 * One redis-benchmark run of `row` against `port`; `redisPort` is the real server (for setup).
 * With `cpuPid`, that process tree's CPU ticks are read right before redis-benchmark starts
 * and right after it exits, and the difference comes back as `cpu`.
 */
export async function runRedisRow(row: RedisRow, port: number, redisPort: number, requests: number, cpuPid?: number): Promise<RedisSample> {
  if (row.args.includes("get")) await exchange(redisPort, [["SET", BENCH_KEY, "xxx"]]);
  const n = Math.max(100, Math.round(requests * row.scale));
  const argv = ["redis-benchmark", "-h", HOST, "-p", String(port), "-n", String(n), ...row.args, "--csv"];
  const before = cpuPid === undefined ? undefined : cpuTicks(cpuPid);
  const r = await run(argv, 180_000);
  const after = cpuPid === undefined ? undefined : cpuTicks(cpuPid);
  if (r.timedOut) throw new Error(`${row.id}: redis-benchmark timed out`);
  const sample = parseCsv(r.stdout);
  if (r.code !== 0 || !sample) throw new Error(`${row.id}: redis-benchmark failed (${r.code}): ${r.stderr.trim().slice(-300)}`);
  if (before === undefined || after === undefined) return { ...sample, requests: n };
  if (after.processes < before.processes) throw new Error(`${row.id}: ${before.processes - after.processes} of the proxy's processes exited during the run`);
  return { ...sample, requests: n, cpu: { user: after.user - before.user, system: after.system - before.system, processes: after.processes } };
}

/** Reads the first data row of redis-benchmark --csv (Redis 7: "test","rps",...,"p50_latency_ms",...). */
export function parseCsv(text: string): { rps: number; p50ms: number } | undefined {
  const lines = text
    .trim()
    .split("\n")
    .map((l) => l.split(",").map((c) => c.replace(/^"|"$/g, "")));
  const header = lines.find((l) => l[0] === "test");
  const data = lines.find((l) => l[0] !== "test" && l.length > 1);
  if (!header || !data) return undefined;
  const rps = Number(data[header.indexOf("rps")]);
  const p50ms = Number(data[header.indexOf("p50_latency_ms")]);
  return Number.isFinite(rps) && rps > 0 ? { rps, p50ms } : undefined;
}

/**
 * Warm-up, untimed: a tenth of each row through `port`, so round 1 does not time a JIT
 * compiling a Bun contender's hot paths (the others get the same pass). Failures are ignored:
 * the timed samples report them.
 */
export async function warmUp(rows: RedisRow[], port: number, redisPort: number, requests: number): Promise<void> {
  for (const row of rows) await runRedisRow(row, port, redisPort, requests / 10).catch(() => {});
}
