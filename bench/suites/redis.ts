/**
 * The redis suite (the default): the same workloads against Redis/iperf3 directly and through
 * each contender (tcprouter, tcprouter --workers 2, HAProxy, nginx), rounds interleaved (the
 * start rotated each round), medians and ratios to direct and HAProxy; for the Redis rows also
 * the proxy's CPU per request (user + system ticks of its processes from /proc/PID/stat, read
 * right before and right after each redis-benchmark run, ÷ the requests of that run).
 *
 *   bun run bench/run.ts [--suite redis] [--smoke] [--rounds N] [--requests N] ... (see bench/README.md)
 */
import { CONTENDER_NAMES, loadContenders, type Contender, type ContenderName } from "../contenders/forwarders.ts";
import type { Instance } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD } from "../contenders/tcprouter.ts";
import { COMMON_HELP, defaultContenders, fail, listOf, parseBenchFlags, positiveInt, say, TCPROUTER_CMD_HELP, TCPROUTER_CMD_OPTIONS } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { CLK_TCK, cpuTicks, ensureOwnFdLimit, softFdLimit } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { errorNotes, markdownTable, summarize, textTable, type Cell, type CpuSample, type Line, type Table, type Unit } from "../report/table.ts";
import { runBulk, startIperf } from "./workloads/bulk.ts";
import { measureIdle } from "./workloads/idle.ts";
import { REDIS_ROWS, checkRedisPath, redisRows, runRedisRow, startRedis, warmUp, type RedisRow } from "./workloads/redis.ts";

// ── Rows ───────────────────────────────────────────────────────────────────────────────────

/** Every row of the table: which workload, which unit, and how one sample is taken. */
export type Row =
  | { kind: "redis"; id: string; title: string; unit: Unit; redis: RedisRow }
  | { kind: "bulk"; id: string; title: string; unit: Unit; reverse: boolean }
  | { kind: "idle"; id: string; title: string; unit: Unit };

/**
 * This suite's multiplier on --requests per Redis row (the shared REDIS_ROWS scales times
 * 2–6): a proxy's CPU is read in clock ticks of 10 ms, so each timed run must last long enough
 * for its CPU to be at least MIN_TICKS ticks at the full-run size (±1 tick ≤ 0.5 %).
 */
export const REDIS_SUITE_SCALE: Record<string, number> = { ping: 2, set: 2, get: 2, "get-p16": 40, "set-4k": 2, "set-64k": 0.6, "ping-k0": 0.4 };

/** Ticks a CPU sample should reach at the full-run size. */
export const MIN_TICKS = 200;

export const ROWS: Row[] = [
  ...redisRows(
    REDIS_ROWS.map((r) => r.id),
    REDIS_SUITE_SCALE,
  ).map((redis): Row => ({ kind: "redis", id: redis.id, title: redis.title, unit: "req/s", redis })),
  { kind: "bulk", id: "bulk", title: "bulk iperf3 ->", unit: "Gbit/s", reverse: false },
  { kind: "bulk", id: "bulk-reverse", title: "bulk iperf3 <- (-R)", unit: "Gbit/s", reverse: true },
  { kind: "idle", id: "idle", title: "idle sessions RSS", unit: "KiB/session" },
];

export const ROW_IDS = ROWS.map((r) => r.id);

/** Where a contender's instances listen, and the targets behind them. */
interface Ports {
  /** Contender port forwarding to Redis. */
  redis: number;
  /** Contender port forwarding to iperf3 -s. */
  iperf: number;
  /** The bench Redis itself. */
  redisTarget: number;
}

interface Params {
  requests: number;
  seconds: number;
  sessions: number;
}

interface Sample {
  value: number;
  p50ms: number;
  /** The proxy's CPU per request (Redis rows through a proxy). */
  cpu?: CpuSample;
}

/**
 * One sample of a redis or bulk row; `pid` is the proxy in front of Redis (undefined for
 * direct), whose CPU is read around each redis-benchmark run. Idle rows need a fresh
 * instance and go through `idleRound` instead.
 */
async function takeSample(row: Row, ports: Ports, params: Params, pid: number | undefined): Promise<Sample> {
  if (row.kind === "redis") {
    const s = await runRedisRow(row.redis, ports.redis, ports.redisTarget, params.requests, pid);
    if (s.cpu === undefined) return { value: s.rps, p50ms: s.p50ms };
    const us = (ticks: number) => (ticks / CLK_TCK / s.requests) * 1e6;
    return { value: s.rps, p50ms: s.p50ms, cpu: { userUs: us(s.cpu.user), systemUs: us(s.cpu.system), ticks: s.cpu.user + s.cpu.system } };
  }
  if (row.kind === "bulk") return { value: await runBulk(ports.iperf, params.seconds, row.reverse), p50ms: NaN };
  throw new Error(`${row.id}: not a timed row`);
}

/** A fresh instance per idle sample, so earlier rows' buffers are not counted. */
async function idleRound(c: Contender, redisPort: number, params: Params): Promise<Sample> {
  const inst = await c.start(redisPort, `${c.name}-idle`);
  try {
    const s = await measureIdle(inst.pid!, inst.port, redisPort, params.sessions);
    return { value: s.kibPerSession, p50ms: NaN };
  } finally {
    await inst.stop();
  }
}

// ── Flags ──────────────────────────────────────────────────────────────────────────────────

export const HELP = `bun run bench/run.ts [--suite redis] [flags]
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --requests N          redis-benchmark -n per row before the row's scale (default 100000; smoke 2000)
  --seconds N           iperf3 -t per bulk sample (default 5; smoke 1)
  --sessions N          idle sessions for the memory row (default 5000; smoke 200)
  --only ROW[,ROW]      rows: ${ROW_IDS.join(",")}
  --contenders A[,B]    ${CONTENDER_NAMES.join(",")} (default: all)
${TCPROUTER_CMD_HELP}${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "redis",
    args,
    {
      requests: { type: "string" },
      seconds: { type: "string" },
      sessions: { type: "string" },
      only: { type: "string" },
      contenders: { type: "string" },
      ...TCPROUTER_CMD_OPTIONS,
    },
    HELP,
  );
  const smoke = values.smoke;
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, smoke);
  return {
    smoke,
    rounds: int("rounds", values.rounds, 5, 1),
    params: {
      requests: int("requests", values.requests, 100_000, 2_000),
      seconds: int("seconds", values.seconds, 5, 1),
      sessions: int("sessions", values.sessions, 5_000, 200),
    } satisfies Params,
    rows: listOf("only", values.only, ROW_IDS),
    contenders: values.contenders ? listOf("contenders", values.contenders, CONTENDER_NAMES) : defaultContenders(CONTENDER_NAMES, values["baseline-cmd"]),
    tcprouterCmd: values["tcprouter-cmd"],
    baselineCmd: values["baseline-cmd"],
    json: values.json,
    markdown: values.markdown,
  };
}

// ── Run ────────────────────────────────────────────────────────────────────────────────────

/** Instances of one contender that stay up for all rounds (idle rows start their own). */
interface Running {
  contender: Contender;
  ports: Ports;
  instances: Instance[];
  /** The process in front of Redis (its tree's CPU is measured); undefined for direct. */
  pid: number | undefined;
}

async function startContender(c: Contender, redisPort: number, iperfPort: number | undefined): Promise<Running> {
  const instances: Instance[] = [];
  try {
    const redis = await c.start(redisPort, `${c.name}-redis`);
    instances.push(redis);
    await checkRedisPath(redis.port, c.name);
    let iperf = iperfPort ?? 0;
    if (iperfPort !== undefined) {
      const inst = await c.start(iperfPort, `${c.name}-iperf`);
      instances.push(inst);
      iperf = inst.port;
    }
    return { contender: c, ports: { redis: redis.port, iperf, redisTarget: redisPort }, instances, pid: redis.pid };
  } catch (err) {
    for (const i of instances) await i.stop();
    throw err;
  }
}

function fmt(row: Row, s: Sample): string {
  const value = row.unit === "req/s" ? `${Math.round(s.value)} req/s` : `${s.value.toFixed(2)} ${row.unit}`;
  return s.cpu === undefined ? value : `${value}, ${(s.cpu.userUs + s.cpu.systemUs).toFixed(2)} CPU µs/req (${s.cpu.ticks} ticks)`;
}

/** Sessions the idle row may open: Redis maxclients and HAProxy/nginx maxconn are 9000+. */
const MAX_SESSIONS = 9000;

export const TABLE_NOTE =
  "median over rounds; ratios are median / median of direct or HAProxy in the same row " +
  "(higher is better for req/s and Gbit/s, lower is better for KiB/session and CPU).";

/** How the CPU columns are measured, for the note under the table and the JSON. */
export const CPU_METHOD =
  "CPU µs/req: the proxy's user + system time (utime + stime of /proc/PID/stat: every thread; " +
  "summed over the process and all its descendants, e.g. tcprouter --workers children, nginx workers), " +
  "read right before and right after each timed redis-benchmark run, ÷ that run's requests; median over rounds.";

/** The resolution line: tick length, and the fewest ticks any one sample had. */
function cpuNote(lines: Line[], smoke: boolean): { text: string; fewestTicks: number | null } {
  const ticks = lines.flatMap((l) => l.cpu?.ticks ?? []);
  const fewest = ticks.length ? Math.min(...ticks) : null;
  const tickMs = 1000 / CLK_TCK;
  const text =
    fewest === null
      ? `resolution: 1 clock tick = ${tickMs} ms (CLK_TCK ${CLK_TCK}); no CPU samples.`
      : `resolution: 1 clock tick = ${tickMs} ms (CLK_TCK ${CLK_TCK}); fewest ticks in one sample: ${fewest} ` +
        `(±1 tick = ${(100 / Math.max(fewest, 1)).toFixed(1)} %; full runs aim at ≥ ${MIN_TICKS}: ${smoke ? "a smoke run is too short to read CPU from" : fewest >= MIN_TICKS ? "met" : "NOT met"}).`;
  return { text, fewestTicks: fewest };
}

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  if (opts.params.sessions > MAX_SESSIONS) fail(`--sessions: at most ${MAX_SESSIONS}`);
  if (opts.rows.includes("idle")) {
    const needed = opts.params.sessions + 1000;
    await ensureOwnFdLimit(needed);
    if (softFdLimit() < needed) fail(`open-file limit ${softFdLimit()} is too low for --sessions ${opts.params.sessions}`);
  }
  const rows = ROWS.filter((r) => opts.rows.includes(r.id));
  if (opts.baselineCmd !== undefined && opts.baselineCmd.trim() === (opts.tcprouterCmd ?? DEFAULT_TCPROUTER_CMD).trim()) {
    say(`note: --baseline-cmd is the same command as tcprouter's (${opts.baselineCmd}): both rows measure the same build`);
  }
  const all = await loadContenders(opts.contenders, opts.tcprouterCmd, opts.baselineCmd);
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);

  const scales = Object.fromEntries(rows.flatMap((r) => (r.kind === "redis" ? [[r.id, r.redis.scale]] : [])));
  const params = { rounds: opts.rounds, ...opts.params, smoke: opts.smoke, rows: rows.map((r) => r.id), scales };
  const meta = await collectMeta(all, params);
  say(`bench: ${opts.rounds} round(s) of ${rows.map((r) => r.id).join(",")} for ${runnable.map((c) => c.name).join(",")}`);

  const redis = await startRedis();
  const iperf = rows.some((r) => r.kind === "bulk") ? await startIperf() : undefined;
  const running: Running[] = [];
  const cells: Cell[] = [];
  const cellOf = (row: Row, name: ContenderName) => {
    let cell = cells.find((c) => c.row === row.id && c.contender === name);
    if (!cell) {
      cell = { row: row.id, title: row.title, unit: row.unit, contender: name, samples: [], p50Samples: [], errors: [] };
      if (row.kind === "redis" && name !== "direct") cell.cpu = [];
      cells.push(cell);
    }
    return cell;
  };
  // fixed table order: rows as listed, contenders as given
  for (const row of rows) for (const c of runnable) if (!(row.kind === "idle" && c.name === "direct")) cellOf(row, c.name);

  for (const c of runnable) {
    try {
      const r = await startContender(c, redis.port, iperf?.port);
      running.push(r);
      const cpu = r.pid === undefined ? "" : `; CPU read from ${cpuTicks(r.pid).processes} process(es)`;
      say(`check ${c.name}: PONG and 64 KiB SET/GET round trip ok${cpu}`);
    } catch (err) {
      const message = failure(err);
      say(`FAIL ${c.name}: ${(err as Error).message}`);
      for (const row of rows) cells.find((x) => x.row === row.id && x.contender === c.name)?.errors.push(message);
    }
  }

  // Warm-up, untimed: a tenth of each Redis row through every contender.
  const redisRows = rows.flatMap((row) => (row.kind === "redis" ? [row.redis] : []));
  for (const r of running) await warmUp(redisRows, r.ports.redis, r.ports.redisTarget, opts.params.requests);
  if (running.length > 0) say("warm-up done");

  for (let round = 0; round < opts.rounds; round++) {
    for (const row of rows) {
      for (const r of rotated(running, round)) {
        if (row.kind === "idle" && r.contender.name === "direct") continue;
        const cell = cellOf(row, r.contender.name);
        const progress = (text: string) => say(roundLine(round, opts.rounds, row.id, 12, r.contender.name, 9, text));
        try {
          const s = row.kind === "idle" ? await idleRound(r.contender, redis.port, opts.params) : await takeSample(row, r.ports, opts.params, r.pid);
          cell.samples.push(s.value);
          cell.p50Samples.push(s.p50ms);
          if (s.cpu !== undefined) cell.cpu?.push(s.cpu);
          progress(fmt(row, s));
        } catch (err) {
          cell.errors.push(failure(err));
          progress(`FAILED ${(err as Error).message}`);
        }
      }
    }
  }
  for (const r of running) for (const i of r.instances) await i.stop();

  const lines = summarize(cells);
  const errors = errorNotes(lines);
  const table = tableOf(lines);
  const resolution = cpuNote(lines, opts.smoke);
  const baseline = running.some((r) => r.contender.name === "tcprouter-base") ? cpuAgainstBase(lines) : undefined;
  const cpu = {
    method: CPU_METHOD,
    clockTicksPerSecond: CLK_TCK,
    tickMs: 1000 / CLK_TCK,
    minTicksTarget: MIN_TICKS,
    fewestTicks: resolution.fewestTicks,
    ratios: cpuRatios(lines),
    ...(baseline === undefined ? {} : { tcprouterVsBase: baseline.ratios }),
  };
  const notes = `${TABLE_NOTE}\n${CPU_METHOD}\n${resolution.text}${baseline ? `\n${baseline.text}` : ""}`;
  publish(
    {
      text: `\n${headerText(meta)}\n\n${textTable(table)}\n${notes}\n${errors ? `${errors}\n` : ""}`,
      markdown: `${markdownTable(table)}\n\n${resolution.text}`,
      result: { ...meta, note: TABLE_NOTE, cpu, results: lines },
    },
    opts,
  );
  // a contender that failed its check or every sample is a failure of the run (CI runs --smoke)
  if (lines.some((l) => l.median === null)) process.exitCode = 1;
}

// ── Table ──────────────────────────────────────────────────────────────────────────────────

function fmtValue(x: number | null, unit: Unit): string {
  if (x === null) return "-";
  if (unit === "req/s") return Math.round(x).toLocaleString("en-US");
  if (unit === "Gbit/s") return x.toFixed(2);
  return x.toFixed(1);
}

const fmtRatio = (x: number | null) => (x === null ? "-" : `${x.toFixed(2)}x`);

/** Per contender, its CPU median ÷ HAProxy's per Redis row, to three decimals (the JSON's `cpu.ratios`). */
function cpuRatios(lines: Line[]): Record<string, Record<string, number | null>> {
  const out: Record<string, Record<string, number | null>> = {};
  for (const l of lines) {
    if (l.cpu === undefined) continue;
    (out[l.contender] ??= {})[l.row] = l.cpu.vsHaproxy === null ? null : Math.round(l.cpu.vsHaproxy * 1000) / 1000;
  }
  return out;
}

/** tcprouter's CPU median ÷ tcprouter-base's per Redis row (a change against its parent, lower is better). */
function cpuAgainstBase(lines: Line[]): { ratios: Record<string, number | null>; text: string } {
  const ratios: Record<string, number | null> = {};
  for (const l of lines) {
    if (l.contender !== "tcprouter" || l.cpu === undefined) continue;
    const base = lines.find((b) => b.row === l.row && b.contender === "tcprouter-base")?.cpu?.median ?? null;
    const r = l.cpu.median !== null && base ? l.cpu.median / base : null;
    ratios[l.row] = r === null ? null : Math.round(r * 1000) / 1000;
  }
  const text = `CPU µs/req tcprouter / tcprouter-base: ${Object.entries(ratios)
    .map(([row, r]) => `${row} ${r === null ? "-" : r.toFixed(2)}`)
    .join(", ")}`;
  return { ratios, text };
}

const fmtCpu = (x: number | null | undefined) => (x === null || x === undefined ? "-" : x.toFixed(2));

/**
 * row | contender | median | min..max | p50 ms | vs direct | vs HAProxy | CPU µs/req | CPU vs
 * HAProxy, a blank line between rows.
 */
function tableOf(lines: Line[]): Table {
  const rows = lines.map((l) => {
    const value = l.median === null ? "FAILED" : `${fmtValue(l.median, l.unit)} ${l.unit}`;
    const range = l.min === null ? "-" : `${fmtValue(l.min, l.unit)}..${fmtValue(l.max, l.unit)}`;
    const p50 = l.p50ms === null ? "-" : l.p50ms.toFixed(3);
    return [l.title, l.contender, value, range, p50, fmtRatio(l.vsDirect), fmtRatio(l.vsHaproxy), fmtCpu(l.cpu?.median), fmtRatio(l.cpu?.vsHaproxy ?? null)];
  });
  const head = ["row", "contender", "median", "min..max", "p50 ms", "vs direct", "vs HAProxy", "CPU µs/req", "CPU vs HAProxy"];
  return { head, rows, text: 2, groups: lines.map((l) => l.row) };
}
