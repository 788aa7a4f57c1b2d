/**
 * Why a proxy costs the CPU it does per request, counted: the system calls each contender makes
 * per request (strace -c), and with --perf where its CPU samples land (the kernel, the
 * runtime's own binary, JIT code, libc, other libraries) and how many there are per request.
 *
 *   flock /tmp/tcprouter-bench.lock bun run bench/run.ts --suite syscalls [--perf] [--symbols N] [--only ROW[,ROW]] [--requests N] [--smoke] [--json] [--markdown]
 *
 * One dedicated redis-server; each contender of the redis suite's line-up (tcprouter,
 * bun-floor, HAProxy, nginx; --contenders) runs one instance in front of it for the whole run,
 * passes the PONG and 64 KiB check and gets an untimed warm-up (a tenth of each row). Then per
 * row and contender (the order rotated each round):
 * - strace: `strace -c -f -o FILE -p PID …` on every process of the contender's tree (-f: every
 *   thread), attached before redis-benchmark sends exactly --requests requests and stopped right
 *   after; each syscall's calls and errors ÷ requests. strace stops the proxy at every call, so
 *   its times mean nothing here: only counts are read. futex and restart_syscall are shown but
 *   left out of the total: they count threads waiting, not work.
 * - with --perf, a second run of the same row, not traced: `perf record -e cpu-clock -F 2000 -g
 *   -p PID,…`, then `perf report --no-children --sort dso -g none --stdio`: the share of samples
 *   per part, samples per request and µs per request (a sample is 500 µs of CPU at 2000 Hz),
 *   next to the CPU per request read from /proc (user + system ticks) over the same run.
 * - with --symbols N (implies --perf), from the same perf files also `perf report --no-children
 *   --sort sym -g none --stdio -F sample,sym`: per row, the N symbols ([k] kernel, [.] user
 *   space) whose µs per request differ most between any two contenders, the contenders side by
 *   side and each one's difference to bun-floor (when it runs). Samples are summed over the
 *   rounds and divided by all their requests: µs/req = samples × 1e6/PERF_HZ ÷ requests.
 *
 * A load test must never run next to another on a small shared machine: run the suite under
 * `flock /tmp/tcprouter-bench.lock` (the lock every bench run on this machine takes).
 */
import { CONTENDER_NAMES, loadContenders, type Contender, type ContenderName } from "../contenders/forwarders.ts";
import type { Instance } from "../contenders/launch.ts";
import { COMMON_HELP, defaultContenders, fail, listOf, parseBenchFlags, positiveInt, say, TCPROUTER_CMD_HELP, TCPROUTER_CMD_OPTIONS } from "../runner/flags.ts";
import { REDIS_TOOLS, collectMeta, headerText } from "../runner/meta.ts";
import { CLK_TCK } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { markdownTable, median, textTable, type Table } from "../report/table.ts";
import { symbolHeading, symbolsOf } from "../report/symbols.ts";
import { checkRedisPath, redisRows, runRedisRow, startRedis, warmUp, type RedisRow } from "./workloads/redis.ts";
import {
  PARTS,
  PERF_HZ,
  executables,
  perfDuring,
  perfMissing,
  processTree,
  straceDuring,
  type Calls,
  type Part,
  type PerfSplit,
  type SymbolRun,
} from "./workloads/tracing.ts";

/** Every row sends exactly --requests requests (scale 1). */
const ROWS = redisRows(["ping", "ping-k0", "set-4k"], { ping: 1, "ping-k0": 1, "set-4k": 1 });
const ROW_IDS = ROWS.map((row) => row.id);
/** Proxies only: "direct" has nothing in between to count. */
const NAMES = CONTENDER_NAMES.filter((name) => name !== "direct");
const DEFAULT_NAMES: ContenderName[] = ["tcprouter", "tcprouter-base", "bun-floor", "haproxy", "nginx"];
/** Shown, but not in the total: a thread waiting on a futex (or resuming a wait) is not work. */
const NOT_WORK = ["futex", "restart_syscall"];
const US_PER_SAMPLE = 1e6 / PERF_HZ;

export const HELP = `bun run bench/run.ts --suite syscalls [flags]   (run it under: flock /tmp/tcprouter-bench.lock …)
  system calls per request of each proxy (strace -c), and with --perf its CPU samples per part (--symbols: per symbol)
  --requests N          redis-benchmark -n of each row (default 20000; smoke 2000)
  --only ROW[,ROW]      ${ROW_IDS.join(",")} (default: all)
  --contenders A[,B]    ${NAMES.join(",")} (default: tcprouter,bun-floor,haproxy,nginx; tcprouter-base with --baseline-cmd)
  --perf                also a second, untraced run per row under perf record -e cpu-clock (default: off)
  --symbols N           also the N symbols whose µs per request differ most between contenders, from
                        the same perf samples summed over rounds, and each one's difference to bun-floor
                        (implies --perf; default: off)
  --rounds N            runs of each row per contender, the order rotated (default 1); the table shows medians
${TCPROUTER_CMD_HELP}${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "syscalls",
    args,
    {
      requests: { type: "string" },
      only: { type: "string" },
      contenders: { type: "string" },
      perf: { type: "boolean", default: false },
      symbols: { type: "string" },
      ...TCPROUTER_CMD_OPTIONS,
    },
    HELP,
  );
  const smoke = values.smoke;
  const only = listOf("only", values.only, ROW_IDS);
  const symbols = values.symbols === undefined ? 0 : positiveInt("symbols", values.symbols, 0, 0, smoke);
  return {
    smoke,
    rounds: positiveInt("rounds", values.rounds, 1, 1, smoke),
    requests: positiveInt("requests", values.requests, 20_000, 2_000, smoke),
    rows: ROWS.filter((row) => only.includes(row.id)),
    contenders: values.contenders ? listOf("contenders", values.contenders, NAMES) : defaultContenders(DEFAULT_NAMES, values["baseline-cmd"]),
    perf: values.perf || symbols > 0,
    /** How many symbols to show per row; 0: no symbol table. */
    symbols,
    tcprouterCmd: values["tcprouter-cmd"],
    baselineCmd: values["baseline-cmd"],
    json: values.json,
    markdown: values.markdown,
  };
}

interface Running {
  contender: Contender;
  instance: Instance;
  pid: number;
}

/** One traced run: what strace counted over exactly `requests` requests. */
interface StraceRun {
  round: number;
  requests: number;
  /** Processes traced (the contender's tree when strace attached). */
  processes: number;
  syscalls: Record<string, Calls>;
}

/** One untraced run under perf. */
interface PerfRun extends PerfSplit {
  round: number;
  requests: number;
  processes: number;
  /** The executables counted as the runtime's own binary. */
  binaries: string[];
  /** CPU µs per request from /proc (user + system ticks) over the same run, a check on the samples. */
  procCpuUsPerRequest: number;
}

/** Every run of one row through one contender. */
interface Cell {
  row: string;
  title: string;
  contender: ContenderName;
  strace: StraceRun[];
  perf: PerfRun[];
  /** With --symbols: each perf run's samples per symbol (kept out of the JSON's results: its symbol tables carry them). */
  symbols: SymbolRun[];
  errors: string[];
}

async function traceOnce(row: RedisRow, r: Running, redisPort: number, requests: number, round: number): Promise<StraceRun> {
  const pids = processTree(r.pid);
  const tag = `strace-${r.contender.name}-${row.id}-${round}`;
  const { syscalls, result } = await straceDuring(tag, pids, () => runRedisRow(row, r.instance.port, redisPort, requests));
  return { round, requests: result.requests, processes: pids.length, syscalls };
}

async function sampleOnce(row: RedisRow, r: Running, redisPort: number, requests: number, round: number, symbols: boolean): Promise<PerfRun> {
  const pids = processTree(r.pid);
  const binaries = executables(pids);
  const tag = `perf-${r.contender.name}-${row.id}-${round}`;
  const { split, result } = await perfDuring(tag, pids, binaries, () => runRedisRow(row, r.instance.port, redisPort, requests, r.pid), symbols);
  const ticks = result.cpu === undefined ? 0 : result.cpu.user + result.cpu.system;
  const procCpuUsPerRequest = (ticks / CLK_TCK / result.requests) * 1e6;
  return { ...split, round, requests: result.requests, processes: pids.length, binaries, procCpuUsPerRequest };
}

const perRequest = (run: StraceRun, name: string, key: keyof Calls) => (run.syscalls[name]?.[key] ?? 0) / run.requests;
const countedTotal = (run: StraceRun) =>
  Object.entries(run.syscalls)
    .filter(([name]) => !NOT_WORK.includes(name))
    .reduce((sum, [, c]) => sum + c.calls, 0) / run.requests;

/** Per syscall, the median over runs of calls and errors per request; the total without NOT_WORK. */
function summarize({ symbols: _symbols, ...cell }: Cell) {
  const names = [...new Set(cell.strace.flatMap((run) => Object.keys(run.syscalls)))].sort();
  const perSyscall: Record<string, { calls: number; errors: number }> = {};
  for (const name of names) {
    perSyscall[name] = {
      calls: median(cell.strace.map((run) => perRequest(run, name, "calls")))!,
      errors: median(cell.strace.map((run) => perRequest(run, name, "errors")))!,
    };
  }
  const totals = cell.strace.map(countedTotal);
  const perf = cell.perf.length === 0 ? null : perfSummary(cell.perf);
  return {
    ...cell,
    perRequest: perSyscall,
    total: median(totals),
    totalMinMax: totals.length ? [Math.min(...totals), Math.max(...totals)] : null,
    perfSummary: perf,
  };
}
type Summary = ReturnType<typeof summarize>;

/** Medians over runs: the share of samples per part (%), samples and µs per request, /proc's µs per request. */
function perfSummary(runs: PerfRun[]) {
  const share = Object.fromEntries(PARTS.map((p) => [p, median(runs.map((run) => (run.parts[p] / run.samples) * 100))!])) as Record<Part, number>;
  return {
    binaries: [...new Set(runs.flatMap((run) => run.binaries))],
    sharePercent: share,
    samples: median(runs.map((run) => run.samples))!,
    samplesPerRequest: median(runs.map((run) => run.samples / run.requests))!,
    usPerRequest: median(runs.map((run) => (run.samples * US_PER_SAMPLE) / run.requests))!,
    procCpuUsPerRequest: median(runs.map((run) => run.procCpuUsPerRequest))!,
  };
}

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  if (!Bun.which("strace")) fail("syscalls: strace not installed (apt-get install strace); the suite counts system calls with it");
  const all = await loadContenders(opts.contenders, opts.tcprouterCmd, opts.baselineCmd);
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);
  const tools: Record<string, string[] | null> = {
    "redis-server": REDIS_TOOLS["redis-server"]!,
    "redis-benchmark": REDIS_TOOLS["redis-benchmark"]!,
    strace: ["strace", "-V"],
  };
  if (opts.perf) tools.perf = Bun.which("perf") ? ["perf", "--version"] : null;
  const params = {
    rounds: opts.rounds,
    requests: opts.requests,
    rows: opts.rows.map((row) => row.id),
    perf: opts.perf,
    ...(opts.perf ? { perfHz: PERF_HZ } : {}),
    ...(opts.symbols > 0 ? { symbols: opts.symbols } : {}),
  };
  const meta = await collectMeta(all, params, tools);
  say(
    `bench: syscalls, ${opts.rounds} round(s) of ${params.rows.join(",")} for ${runnable.map((c) => c.name).join(",")}${opts.perf ? ", with perf" : ""}${opts.symbols > 0 ? ` and its top ${opts.symbols} symbols` : ""}`,
  );

  const redis = await startRedis();
  const perfSkip = opts.perf ? await perfMissing(redis.server.pid) : "not asked (--perf)";
  if (opts.perf && perfSkip) say(`skip perf: ${perfSkip}`);

  const cells: Cell[] = opts.rows.flatMap((row) =>
    runnable.map((c) => ({ row: row.id, title: row.title, contender: c.name, strace: [], perf: [], symbols: [], errors: [] })),
  );
  const cellOf = (row: RedisRow, name: ContenderName) => cells.find((cell) => cell.row === row.id && cell.contender === name)!;
  const running: Running[] = [];
  for (const c of runnable) {
    let instance: Instance | undefined;
    try {
      instance = await c.start(redis.port, `${c.name}-redis`);
      await checkRedisPath(instance.port, c.name);
      running.push({ contender: c, instance, pid: instance.pid! });
      say(`check ${c.name}: PONG and 64 KiB SET/GET round trip ok; ${processTree(instance.pid!).length} process(es) to trace`);
    } catch (error) {
      const message = failure(error);
      say(`FAIL ${c.name}: ${(error as Error).message}`);
      for (const row of opts.rows) cellOf(row, c.name).errors.push(message);
      await instance?.stop();
    }
  }
  for (const r of running) await warmUp(opts.rows, r.instance.port, redis.port, opts.requests);
  if (running.length > 0) say("warm-up done");

  for (let round = 0; round < opts.rounds; round++) {
    for (const row of opts.rows) {
      for (const r of rotated(running, round)) {
        const cell = cellOf(row, r.contender.name);
        const progress = (text: string) => say(roundLine(round, opts.rounds, row.id, 7, r.contender.name, 9, text));
        try {
          const traced = await traceOnce(row, r, redis.port, opts.requests, round);
          cell.strace.push(traced);
          const futex = perRequest(traced, "futex", "calls");
          progress(`strace: ${countedTotal(traced).toFixed(2)} syscalls/request (futex ${futex.toFixed(2)}), ${traced.processes} process(es)`);
          if (perfSkip) continue;
          const { symbols, ...sampled } = await sampleOnce(row, r, redis.port, opts.requests, round, opts.symbols > 0);
          cell.perf.push(sampled);
          if (symbols) cell.symbols.push({ requests: sampled.requests, symbols });
          const us = (sampled.samples * US_PER_SAMPLE) / sampled.requests;
          progress(`perf:   ${sampled.samples} samples, ${us.toFixed(1)} µs/request (/proc ${sampled.procCpuUsPerRequest.toFixed(1)})`);
        } catch (error) {
          cell.errors.push(failure(error));
          progress(`FAILED ${(error as Error).message}`);
        }
      }
    }
  }
  for (const r of running) await r.instance.stop();

  const summary = cells.map(summarize);
  const names = runnable.map((c) => c.name);
  const tables = opts.rows.map((row) => ({ row, table: syscallTable(row, names, summary) }));
  const perfTable = perfSkip ? null : perfTableOf(summary);
  const symbolTables =
    perfSkip || opts.symbols === 0
      ? []
      : opts.rows.map((row) => symbolsOf(row, names, (name) => cells.find((cell) => cell.row === row.id && cell.contender === name)!.symbols, opts.symbols));
  const errors = summary.flatMap((s) => s.errors.map((error) => `error: ${s.row} ${s.contender}: ${error}`));
  const countsNote =
    `system calls per request: strace -c -f on every process of the contender, ${opts.requests} requests per row; counts only ` +
    "(strace stops the proxy at every call: its times are not read). futex and restart_syscall are threads waiting, not in the total; " +
    "syscalls that round to 0.00 per request for every contender are summed in other. (N err): how many of those calls returned an error (EAGAIN, a non-blocking connect's EINPROGRESS, …).";
  const perfNote =
    perfTable === null
      ? `perf: ${perfSkip}`
      : `CPU samples (perf record -e cpu-clock -F ${PERF_HZ} -g, a second run without strace; perf report --sort dso, self time): share of samples per part; ` +
        `µs/req = samples × ${US_PER_SAMPLE} µs ÷ requests; /proc µs/req = user + system ticks of the same run (the redis suite's CPU figure).`;
  const symbolsNote =
    `symbols: perf report --no-children --sort sym -g none --stdio -F sample,sym of the same perf files (self time), samples summed over every round ` +
    `and ÷ all their requests (µs/req = samples × ${US_PER_SAMPLE} µs ÷ requests); [k] kernel, [.] user space; the ${opts.symbols} symbols ` +
    `whose µs/req differ most between two contenders, then the sums over every symbol. "(addresses without a symbol)" sums the samples perf ` +
    `could not name (the stripped Bun binary, JIT code). "X vs bun-floor": X's µs/req minus bun-floor's.`;
  const text = [
    "",
    headerText(meta),
    "",
    ...tables.flatMap(({ row, table }) => [heading(row, opts.requests), textTable(table), ""]),
    countsNote,
    ...(perfTable ? ["", `CPU samples per part, ${opts.requests} requests per row`, textTable(perfTable)] : []),
    perfNote,
    ...symbolTables.flatMap((t) => ["", symbolHeading(t), textTable(t.table)]),
    ...(symbolTables.length > 0 ? [symbolsNote] : []),
    ...errors,
    "",
  ].join("\n");
  const markdown = [
    ...tables.flatMap(({ row, table }) => [`**${heading(row, opts.requests)}**`, "", markdownTable(table), ""]),
    ...(perfTable ? ["**CPU samples per part (perf record -e cpu-clock, --sort dso)**", "", markdownTable(perfTable)] : []),
    ...symbolTables.flatMap((t) => ["", `**${symbolHeading(t)}**`, "", markdownTable(t.table)]),
  ].join("\n");
  const method = {
    counts: countsNote,
    perf: perfNote,
    ...(symbolTables.length > 0 ? { symbols: symbolsNote } : {}),
    notInTotal: NOT_WORK,
    usPerSample: US_PER_SAMPLE,
  };
  publish(
    {
      text,
      markdown,
      result: {
        ...meta,
        suite: "syscalls",
        method,
        perf: perfSkip ? { measured: false, skip: perfSkip } : { measured: true },
        results: summary,
        ...(symbolTables.length > 0 ? { symbols: symbolTables.map(({ table: _table, ...t }) => t) } : {}),
      },
    },
    opts,
    "syscalls",
  );
  if (summary.some((s) => s.errors.length > 0 || s.strace.length === 0)) process.exitCode = 1;
}

function heading(row: RedisRow, requests: number): string {
  const connection = row.id === "ping-k0" ? " = per new connection (one connection per request)" : "";
  return `${row.id}: ${row.title}, ${requests} requests: system calls per request${connection}`;
}

const fmt2 = (x: number) => x.toFixed(2);

/** A cell: calls per request, and errors per request when there are any to show. */
function callsCell(s: Summary, name: string): string {
  if (s.strace.length === 0) return "FAILED";
  const c = s.perRequest[name];
  if (c === undefined) return "-";
  return c.errors >= 0.005 ? `${fmt2(c.calls)} (${fmt2(c.errors)} err)` : fmt2(c.calls);
}

/**
 * Rows: each syscall, largest count (over contenders) first; other (those under 0.01 for every
 * contender); the total; then futex and restart_syscall, not in it. Columns: the contenders.
 */
function syscallTable(row: RedisRow, contenders: ContenderName[], summary: Summary[]): Table {
  const cols = contenders.map((name) => summary.find((s) => s.row === row.id && s.contender === name)!);
  const largest = (name: string) => Math.max(...cols.map((s) => s.perRequest[name]?.calls ?? 0));
  const names = [...new Set(cols.flatMap((s) => Object.keys(s.perRequest)))];
  const counted = names.filter((name) => !NOT_WORK.includes(name)).sort((a, b) => largest(b) - largest(a) || a.localeCompare(b));
  const shown = counted.filter((name) => largest(name) >= 0.005);
  const small = counted.filter((name) => largest(name) < 0.005);
  const rows = shown.map((name) => [name, ...cols.map((s) => callsCell(s, name))]);
  if (small.length > 0) {
    const sum = (s: Summary) => small.reduce((acc, name) => acc + (s.perRequest[name]?.calls ?? 0), 0);
    rows.push([`other (${small.length} syscalls)`, ...cols.map((s) => (s.strace.length === 0 ? "FAILED" : fmt2(sum(s))))]);
  }
  const total = row.id === "ping-k0" ? "total = per new connection" : "total";
  rows.push([`${total} (without futex)`, ...cols.map((s) => (s.total === null ? "FAILED" : fmt2(s.total)))]);
  for (const name of NOT_WORK.filter((n) => names.includes(n))) rows.push([`${name} (not in total)`, ...cols.map((s) => callsCell(s, name))]);
  return { head: ["syscall", ...contenders], rows, text: 1 };
}

const PART_HEAD: Record<Part, string> = { kernel: "kernel %", binary: "own binary %", jit: "JIT %", libc: "libc %", other: "other libs %" };

/** row | contender | binary | share per part | samples | samples/req | µs/req | /proc µs/req. */
function perfTableOf(summary: Summary[]): Table {
  const lines = summary.map((s) => {
    const p = s.perfSummary;
    if (p === null) return [s.row, s.contender, "-", ...PARTS.map(() => "-"), "FAILED", "-", "-", "-"];
    return [
      s.row,
      s.contender,
      p.binaries.join(","),
      ...PARTS.map((part) => p.sharePercent[part].toFixed(1)),
      String(p.samples),
      p.samplesPerRequest.toFixed(3),
      p.usPerRequest.toFixed(1),
      p.procCpuUsPerRequest.toFixed(1),
    ];
  });
  const head = ["row", "contender", "binary", ...PARTS.map((part) => PART_HEAD[part]), "samples", "samples/req", "µs/req", "/proc µs/req"];
  return { head, rows: lines, text: 3, groups: summary.map((s) => s.row) };
}
