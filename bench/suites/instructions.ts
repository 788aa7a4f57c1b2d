/**
 * What a Bun-based proxy costs per new connection, counted in user-space instructions under
 * valgrind's callgrind: the same binary and input give nearly the same count whatever else the
 * machine does, unlike CPU time on a shared 2-core box. And where the main thread's
 * instructions go: JIT code (named by JSC's jitdump), Bun's own binary, libc and the rest.
 *
 *   flock /tmp/tcprouter-bench.lock bun run bench/run.ts --suite instructions [--connections N] [--batches B] [--warmup W] [--smoke] [--json] [--markdown]
 *
 * One dedicated redis-server; each contender (tcprouter, tcprouter-base with --baseline-cmd,
 * bun-floor; HAProxy and nginx are not Bun and are not run) in turn, one at a time:
 * - `env BUN_JSC_useJITDump=1 BUN_JSC_jitDumpDirectory=DIR valgrind --tool=callgrind
 *   --separate-threads=yes --smc-check=all-non-file --callgrind-out-file=DIR/TAG.%p.out
 *   <bun executable> <script> …` in front of Redis (DIR a temp dir of the run, removed after);
 *   ready once `redis-cli ping` through it answers PONG (10-40 s under valgrind, at most 120 s),
 *   then the PONG and 64 KiB SET/GET check;
 * - --warmup batches of `redis-benchmark -k 0 -n N -c 10 -q PING` (a new connection per
 *   request; N = --connections), so the JIT has compiled the hot paths before counting;
 * - --batches times: `callgrind_control -z PID`, one batch, `callgrind_control -d PID`. Each dump
 *   writes a file per thread: the main thread's `totals:` ÷ N, and the other threads' summed ÷ N;
 * - the main thread's self cost per function (workloads/callgrind.ts reads the dumps), split
 *   into JIT code (object `???` or an address JSC's jitdump loaded code at), Bun's binary and
 *   libc and the others; the top JIT functions by self cost and the top calls from JIT code into
 *   Bun's binary by inclusive cost (how the native APIs a proxy calls show up);
 * - SIGKILL (the dumps are written), the dir removed.
 * Medians and min..max over batches (of every round: --rounds N runs each contender N times,
 * the order rotated).
 *
 * Run it under `flock /tmp/tcprouter-bench.lock` like every bench run on this machine: the
 * counts do not mind the load, but valgrind is a load of its own to whoever times CPU.
 */
import { readSync, openSync, closeSync, realpathSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { BUN_FLOOR, ROOT } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, tcprouterVersion } from "../contenders/tcprouter.ts";
import { COMMON_HELP, defaultContenders, fail, listOf, parseBenchFlags, positiveInt, say, TCPROUTER_CMD_HELP, TCPROUTER_CMD_OPTIONS } from "../runner/flags.ts";
import { REDIS_TOOLS, collectMeta, headerText } from "../runner/meta.ts";
import { HOST, freePort } from "../runner/net.ts";
import { run } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { markdownTable, median, textTable, type Table } from "../report/table.ts";
import {
  callgrindFlags,
  fnAddress,
  jitKey,
  jitNamer,
  parseProfile,
  readJitDump,
  shortJitName,
  startCallgrind,
  toolMissing,
  type Callgrind,
  type Fn,
  type Profile,
} from "./workloads/callgrind.ts";
import { checkRedisPath, startRedis } from "./workloads/redis.ts";

/** Only the Bun-based contenders: valgrind runs a Bun executable and JSC writes the jitdump. */
const NAMES = ["tcprouter", "tcprouter-base", "bun-floor"] as const;
type Name = (typeof NAMES)[number];
/** redis-benchmark's clients per batch. */
const CLIENTS = 10;
const TOP_JIT = 10;
const TOP_CALLS = 8;

export const HELP = `bun run bench/run.ts --suite instructions [flags]   (run it under: flock /tmp/tcprouter-bench.lock …)
  user-space instructions per new connection of each Bun-based proxy, counted under valgrind's callgrind
  --connections N       new connections per batch: redis-benchmark -k 0 -n N -c ${CLIENTS} PING (default 5000; smoke 500)
  --warmup W            uncounted batches first, so the JIT has compiled the hot paths (default 4; smoke 1)
  --batches B           counted batches, each between callgrind_control -z and -d (default 6; smoke 2)
  --contenders A[,B]    ${NAMES.join(",")} (default: tcprouter,bun-floor; tcprouter-base with --baseline-cmd)
  --rounds N            runs of each contender, a fresh process each, the order rotated (default 1); medians over every batch
${TCPROUTER_CMD_HELP}                        (under valgrind both must be "<bun> [run] <path>/src/cli.ts")
${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "instructions",
    args,
    {
      connections: { type: "string" },
      warmup: { type: "string" },
      batches: { type: "string" },
      contenders: { type: "string" },
      ...TCPROUTER_CMD_OPTIONS,
    },
    HELP,
  );
  const smoke = values.smoke;
  return {
    smoke,
    rounds: positiveInt("rounds", values.rounds, 1, 1, smoke),
    connections: positiveInt("connections", values.connections, 5000, 500, smoke),
    warmup: positiveInt("warmup", values.warmup, 4, 1, smoke),
    batches: positiveInt("batches", values.batches, 6, 2, smoke),
    contenders: values.contenders ? listOf("contenders", values.contenders, NAMES) : defaultContenders(NAMES, values["baseline-cmd"]),
    tcprouterCmd: values["tcprouter-cmd"],
    baselineCmd: values["baseline-cmd"],
    json: values.json,
    markdown: values.markdown,
  };
}
type Opts = ReturnType<typeof parseFlags>;

/** A contender as valgrind runs it: the bun executable itself and its arguments. */
interface Contender {
  name: Name;
  version: string;
  /** The header's command line. */
  command: string;
  skip: string | undefined;
  /** The real bun executable (an ELF file, not a link or a wrapper script). */
  bun: string;
  argv(port: number, redisPort: number): string[];
}

const isElf = (path: string): boolean => {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    closeSync(fd);
  }
};

/** The bun executable a command word names (`bun`: the one on the PATH, else the one running the bench), links resolved. */
function realBun(flag: string, word: string): string {
  const found = word === "bun" ? (Bun.which("bun") ?? process.execPath) : resolve(ROOT, word);
  let path: string;
  try {
    path = realpathSync(found);
  } catch {
    fail(`${flag}: ${found} not found`);
  }
  if (!isElf(path)) fail(`${flag}: ${found} is not the bun executable itself (valgrind must run the ELF file, not a wrapper)`);
  return path;
}

/**
 * A tcprouter command (`--tcprouter-cmd`, `--baseline-cmd` or the default `bun run src/cli.ts`)
 * as valgrind runs it: `<bun> [run] <path>/src/cli.ts [args…]` becomes `<bun executable>
 * <path>/src/cli.ts [args…]`; any other form is one line and exit 1.
 */
function tcprouterUnderValgrind(flag: string, cmd: string): { bun: string; script: string; args: string[] } {
  const [first = "", ...rest] = cmd.trim().split(/\s+/);
  if (rest[0] === "run") rest.shift();
  const [script, ...args] = rest;
  if (!/^bun(\.exe)?$/.test(basename(first)) || script === undefined || !/(^|\/)src\/cli\.ts$/.test(script)) {
    fail(`${flag}: under valgrind the command must be "<bun> [run] <path>/src/cli.ts", got "${cmd}"`);
  }
  return { bun: realBun(flag, first), script: resolve(ROOT, script), args };
}

const valgrindLine = (bun: string, rest: string) => `valgrind ${callgrindFlags("DIR", "TAG").slice(0, 3).join(" ")} ${bun} ${rest}`;

async function contenderOf(name: Name, opts: Opts): Promise<Contender> {
  if (name === "bun-floor") {
    const bun = realBun("bun-floor", process.execPath);
    return {
      name,
      version: `bun ${Bun.version}`,
      command: valgrindLine(bun, `${BUN_FLOOR} PORT round-robin TARGET`),
      skip: undefined,
      bun,
      argv: (port, redisPort) => [bun, join(ROOT, BUN_FLOOR), String(port), "round-robin", String(redisPort)],
    };
  }
  const given = name === "tcprouter" ? opts.tcprouterCmd : opts.baselineCmd;
  const flag = name === "tcprouter" ? "--tcprouter-cmd" : "--baseline-cmd";
  const version = await tcprouterVersion();
  if (name === "tcprouter-base" && given === undefined) {
    return { name, version, command: "-", skip: "no --baseline-cmd given", bun: "", argv: () => [] };
  }
  const { bun, script, args } = tcprouterUnderValgrind(flag, given ?? DEFAULT_TCPROUTER_CMD);
  const tail = (port: string, target: string) => [...args, "--listen", `${HOST}:${port}`, "--to", `${HOST}:${target}`, "--log-level", "warn"];
  return {
    name,
    version,
    command: valgrindLine(bun, [script, ...tail("PORT", "TARGET")].join(" ")),
    skip: undefined,
    bun,
    argv: (port, redisPort) => [bun, script, ...tail(String(port), String(redisPort))],
  };
}

/** Where the main thread's self instructions ran. */
const PARTS = ["jit", "binary", "other"] as const;
type Part = (typeof PARTS)[number];

/** One counted batch: instructions between callgrind_control -z and -d. */
interface Batch {
  batch: number;
  connections: number;
  /** The main thread's instructions (the dump's -01 file). */
  mainThread: number;
  /** Every other thread's, summed. */
  otherThreads: number;
  /** Per thread number (1 = main). */
  threads: Record<string, number>;
  /** The main thread's self instructions by part. */
  parts: Record<Part, number>;
}

/** One contender's process under valgrind, from start to SIGKILL. */
interface Run {
  round: number;
  pid: number;
  /** Seconds from spawn until PONG. */
  startSeconds: number;
  /** JIT_CODE_LOAD records in its jitdump. */
  jitRecords: number;
  jitProblem?: string;
  batches: Batch[];
}

/** Per batch, the main thread's self instructions per JIT function and inclusive per call from JIT code into Bun's binary. */
interface Attribution {
  jit: Map<string, number>;
  calls: Map<string, number>;
}

interface Cell {
  contender: Name;
  command: string;
  runs: Run[];
  /** Not in the JSON: per counted batch, for the top lists. */
  attributions: { connections: number; attribution: Attribution }[];
  errors: string[];
}

/** `redis-benchmark -k 0 -n N -c 10 -q PING` through `port`: N new connections, one PING each. */
async function batchOfConnections(port: number, connections: number): Promise<void> {
  const argv = ["redis-benchmark", "-h", HOST, "-p", String(port), "-k", "0", "-n", String(connections), "-c", String(CLIENTS), "-q", "PING"];
  const r = await run(argv, 600_000);
  if (r.timedOut) throw new Error(`redis-benchmark -n ${connections} timed out`);
  if (r.code !== 0 || !/requests per second/.test(r.stdout)) {
    throw new Error(`redis-benchmark failed (${r.code}): ${`${r.stdout}${r.stderr}`.trim().replace(/\s+/g, " ").slice(-200)}`);
  }
}

/** A JIT function's key (its jitdump name, or `JIT 0x…` when no record covers it); undefined for code in a file. */
function jitFunction(fn: Fn, name: (address: number) => string | undefined): string | undefined {
  const address = fnAddress(fn.fn);
  const named = address === undefined ? undefined : name(address);
  if (named !== undefined) return jitKey(named);
  return fn.object === "???" ? `JIT ${fn.fn}` : undefined;
}

/** The main thread's self instructions by part, per JIT function, and per call from JIT code into `binary`. */
function attribute(profile: Profile, name: (address: number) => string | undefined, binary: string): { parts: Record<Part, number> } & Attribution {
  const parts: Record<Part, number> = { jit: 0, binary: 0, other: 0 };
  const jit = new Map<string, number>();
  const calls = new Map<string, number>();
  for (const { fn, instructions } of profile.self.values()) {
    const key = jitFunction(fn, name);
    if (key !== undefined) {
      parts.jit += instructions;
      jit.set(key, (jit.get(key) ?? 0) + instructions);
    } else if (fn.object === binary) parts.binary += instructions;
    else parts.other += instructions;
  }
  for (const { caller, callee, instructions } of profile.calls.values()) {
    const from = jitFunction(caller, name);
    if (from === undefined || callee.object !== binary || jitFunction(callee, name) !== undefined) continue;
    const key = `${from}\n${callee.fn}`;
    calls.set(key, (calls.get(key) ?? 0) + instructions);
  }
  return { parts, jit, calls };
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

/** One contender under valgrind: start, check, warm up, count --batches batches, kill, attribute. */
async function measure(c: Contender, redisPort: number, opts: Opts, round: number, cell: Cell): Promise<void> {
  const progress = (step: string, text: string) => say(roundLine(round, opts.rounds, step, 12, c.name, 14, text));
  const port = await freePort();
  const started = Date.now();
  let cg: Callgrind | undefined;
  try {
    cg = await startCallgrind(`${c.name}-${round + 1}`, c.argv(port, redisPort), port, ROOT);
    const startSeconds = (Date.now() - started) / 1000;
    await checkRedisPath(port, c.name);
    progress("start", `valgrind pid ${cg.pid}: PONG after ${startSeconds.toFixed(1)} s, 64 KiB SET/GET round trip ok`);
    for (let w = 0; w < opts.warmup; w++) await batchOfConnections(port, opts.connections);
    progress("warm-up", `${opts.warmup} x ${opts.connections} connections, not counted`);
    const dumped: { batch: Batch; profile: Profile }[] = [];
    for (let b = 1; b <= opts.batches; b++) {
      await cg.zero();
      await batchOfConnections(port, opts.connections);
      const dump = await cg.dump();
      const threads: Record<string, number> = {};
      let otherThreads = 0;
      for (const [thread, { instructions }] of dump.threads) {
        threads[String(thread)] = instructions;
        if (thread !== 1) otherThreads += instructions;
      }
      const main = dump.threads.get(1)!;
      const profile = parseProfile(await Bun.file(main.file).text());
      const batch = { batch: b, connections: opts.connections, mainThread: main.instructions, otherThreads, threads, parts: { jit: 0, binary: 0, other: 0 } };
      dumped.push({ batch, profile });
      const per = (x: number) => fmt(x / opts.connections);
      progress(
        `batch ${b}/${opts.batches}`,
        `${per(batch.mainThread)} main thread + ${per(otherThreads)} other threads = ${per(batch.mainThread + otherThreads)} instructions/connection`,
      );
    }
    await cg.kill(); // the dumps are read; the jitdump holds every record JSC flushed
    const { codes, problem } = readJitDump(cg.jitDumpFile());
    if (problem) progress("jitdump", `${problem}: JIT code is not named`);
    const name = jitNamer(codes);
    for (const { batch, profile } of dumped) {
      const { parts, jit, calls } = attribute(profile, name, c.bun);
      batch.parts = parts;
      cell.attributions.push({ connections: batch.connections, attribution: { jit, calls } });
    }
    cell.runs.push({
      round,
      pid: cg.pid,
      startSeconds,
      jitRecords: codes.length,
      ...(problem ? { jitProblem: problem } : {}),
      batches: dumped.map((d) => d.batch),
    });
  } finally {
    await cg?.stop();
  }
}

/** Median, min and max of `xs`; null when there are none. */
function spread(xs: number[]): { median: number; min: number; max: number } | null {
  if (xs.length === 0) return null;
  return { median: median(xs)!, min: Math.min(...xs), max: Math.max(...xs) };
}

/** Per key, the median over batches of instructions per connection (0 in a batch without it), largest first. */
function topOf(cell: Cell, pick: (a: Attribution) => Map<string, number>, count: number): { key: string; perConnection: number }[] {
  const keys = new Set(cell.attributions.flatMap((a) => [...pick(a.attribution).keys()]));
  const rows = [...keys].map((key) => ({ key, perConnection: median(cell.attributions.map((a) => (pick(a.attribution).get(key) ?? 0) / a.connections))! }));
  return rows.sort((a, b) => b.perConnection - a.perConnection || a.key.localeCompare(b.key)).slice(0, count);
}

/** Short JIT names (`FTL dial`); where two shown rows would read the same, each keeps its hash (`FTL data#BA1JBZ`). */
function displayNames(keys: string[]): Map<string, string> {
  const unique = [...new Set(keys)];
  const uses = new Map<string, number>();
  for (const key of unique) uses.set(shortJitName(key), (uses.get(shortJitName(key)) ?? 0) + 1);
  return new Map(
    unique.map((key) => {
      const short = shortJitName(key);
      const hash = /#[A-Za-z0-9]+$/.exec(key)?.[0] ?? "";
      return [key, uses.get(short)! > 1 && !short.endsWith(hash) ? `${short}${hash}` : short];
    }),
  );
}

/** A callee in Bun's binary: `bun.exe 0x2d79e80` (the binary has no symbols), or its symbol. */
function calleeName(fn: string, binary: string): string {
  const address = fnAddress(fn);
  return `${basename(binary)} ${address === undefined ? fn : `0x${address.toString(16)}`}`;
}

function summarize(cell: Cell, binary: string) {
  const batches = cell.runs.flatMap((r) => r.batches);
  const per = (pick: (b: Batch) => number) => spread(batches.map((b) => pick(b) / b.connections));
  const main = per((b) => b.mainThread);
  const parts = Object.fromEntries(PARTS.map((p) => [p, median(batches.map((b) => b.parts[p] / b.connections))])) as Record<Part, number | null>;
  const jit = topOf(cell, (a) => a.jit, TOP_JIT);
  const jitNames = displayNames(jit.map((row) => row.key));
  const calls = topOf(cell, (a) => a.calls, TOP_CALLS).map(({ key, perConnection }) => {
    const [caller, callee] = key.split("\n") as [string, string];
    return { caller, callee, perConnection };
  });
  const callerNames = displayNames(calls.map((row) => row.caller));
  return {
    contender: cell.contender,
    command: cell.command,
    binary,
    batches: batches.length,
    perConnection: { mainThread: main, otherThreads: per((b) => b.otherThreads), total: per((b) => b.mainThread + b.otherThreads), parts },
    topJitFunctions: jit.map(({ key, perConnection }) => ({ name: jitNames.get(key)!, jitName: key, perConnection })),
    topCallsIntoBinary: calls.map(({ caller, callee, perConnection }) => ({
      caller: callerNames.get(caller)!,
      callerJitName: caller,
      callee: calleeName(callee, binary),
      perConnection,
    })),
    runs: cell.runs,
    errors: cell.errors,
  };
}
type Summary = ReturnType<typeof summarize>;

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  const missing = toolMissing();
  if (missing) fail(`instructions: ${missing}`);
  const all = await Promise.all(opts.contenders.map((name) => contenderOf(name, opts)));
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);
  const tools: Record<string, string[]> = {
    "redis-server": REDIS_TOOLS["redis-server"]!,
    "redis-benchmark": REDIS_TOOLS["redis-benchmark"]!,
    valgrind: ["valgrind", "--version"],
  };
  const params = {
    rounds: opts.rounds,
    connections: opts.connections,
    warmup: opts.warmup,
    batches: opts.batches,
    clients: CLIENTS,
    valgrind: callgrindFlags("DIR", "TAG").slice(0, 3).join(" "),
  };
  const meta = await collectMeta(all, params, tools);
  say(
    `bench: instructions, ${opts.rounds} round(s) of ${opts.warmup} + ${opts.batches} batches of ${opts.connections} connections for ${runnable.map((c) => c.name).join(",")} under callgrind`,
  );

  const redis = await startRedis();
  const cells: Cell[] = runnable.map((c) => ({ contender: c.name, command: c.command, runs: [], attributions: [], errors: [] }));
  for (let round = 0; round < opts.rounds; round++) {
    for (const c of rotated(runnable, round)) {
      const cell = cells.find((x) => x.contender === c.name)!;
      try {
        await measure(c, redis.port, opts, round, cell);
      } catch (error) {
        cell.errors.push(failure(error));
        say(roundLine(round, opts.rounds, "FAILED", 12, c.name, 14, (error as Error).message));
      }
    }
  }
  await redis.server.stop();

  const summary = cells.map((cell) => summarize(cell, runnable.find((c) => c.name === cell.contender)!.bun));
  const heading = `instructions per new connection (callgrind Ir, user space), ${opts.connections} connections a batch, median over ${opts.batches * opts.rounds} batches`;
  const tables = [
    { title: heading, table: countTable(summary) },
    { title: "the main thread's instructions per connection by where they ran (self cost, medians)", table: partsTable(summary) },
    { title: `top ${TOP_JIT} JIT functions of the main thread by self instructions per connection`, table: jitTable(summary) },
    { title: `top ${TOP_CALLS} calls from JIT code into Bun's binary, inclusive instructions per connection`, table: callsTable(summary) },
  ];
  const shown = tables.filter(({ table }) => table.rows.length > 0);
  const floor = summary.find((s) => s.contender === "bun-floor")?.perConnection.mainThread?.median;
  const base = summary.find((s) => s.contender === "tcprouter-base")?.perConnection.mainThread?.median;
  const differences = summary.flatMap((s) => {
    const m = s.perConnection.mainThread?.median;
    if (m === undefined) return [];
    const lines: string[] = [];
    if (floor !== undefined && s.contender !== "bun-floor")
      lines.push(`${s.contender} − bun-floor: ${signed(m - floor)} main-thread instructions per connection`);
    if (base !== undefined && s.contender === "tcprouter")
      lines.push(`tcprouter − tcprouter-base: ${signed(m - base)} main-thread instructions per connection`);
    return lines;
  });
  const method =
    `method: each contender alone under ${params.valgrind} with JSC's jitdump on; ${opts.warmup} uncounted batch(es), then per batch ` +
    `callgrind_control -z, redis-benchmark -k 0 -n ${opts.connections} -c ${CLIENTS} -q PING (a new connection per request, plus its one CONFIG GET connection), callgrind_control -d. ` +
    "main thread = the dump's -01 file (totals:), other threads = the sum of the others (JIT compiler, GC, Bun's thread pool), each ÷ connections. " +
    "Where they ran: JIT code = object ??? or an address a jitdump JIT_CODE_LOAD covers (the latest record: JSC reuses memory), named by it; " +
    "Bun's binary = the bun executable; libc and others = every other object. Calls: the line after calls= is the callee's inclusive cost, never self cost.";
  const errors = summary.flatMap((s) => s.errors.map((error) => `error: ${s.contender}: ${error}`));
  const text = ["", headerText(meta), "", ...shown.flatMap(({ title, table }) => [title, textTable(table), ""]), ...differences, method, ...errors, ""].join(
    "\n",
  );
  const markdown = shown.flatMap(({ title, table }) => [`**${title}**`, "", markdownTable(table), ""]).join("\n");
  publish({ text, markdown, result: { ...meta, suite: "instructions", method, results: summary } }, opts, "instructions");
  if (summary.some((s) => s.errors.length > 0 || s.batches === 0)) process.exitCode = 1;
}

const signed = (x: number) => `${x >= 0 ? "+" : "−"}${fmt(Math.abs(x))}`;

const spreadCells = (s: { median: number; min: number; max: number } | null) =>
  s === null ? ["FAILED", "-"] : [fmt(s.median), `${fmt(s.min)}..${fmt(s.max)}`];

/** contender | main thread | min..max | other threads | min..max | total | min..max. */
function countTable(summary: Summary[]): Table {
  const rows = summary.map((s) => [
    s.contender,
    ...spreadCells(s.perConnection.mainThread),
    ...spreadCells(s.perConnection.otherThreads),
    ...spreadCells(s.perConnection.total),
  ]);
  return { head: ["contender", "main thread", "min..max", "other threads", "min..max", "total", "min..max"], rows, text: 1 };
}

/** contender | JIT code | Bun's binary | libc and others (each with its share of the three). */
function partsTable(summary: Summary[]): Table {
  const rows = summary.map((s) => {
    const p = s.perConnection.parts;
    const sum = PARTS.reduce((acc, part) => acc + (p[part] ?? 0), 0);
    const cell = (x: number | null) => (x === null ? "FAILED" : `${fmt(x)} (${((x / sum) * 100).toFixed(0)} %)`);
    return [s.contender, ...PARTS.map((part) => cell(p[part]))];
  });
  return { head: ["contender", "JIT code", "Bun's binary", "libc and others"], rows, text: 1 };
}

/** contender | JIT function | instructions/connection | % of the main thread. */
function jitTable(summary: Summary[]): Table {
  const rows = summary.flatMap((s) =>
    s.topJitFunctions.map((f) => {
      const main = s.perConnection.mainThread?.median;
      return [s.contender, f.name, fmt(f.perConnection), main ? `${((f.perConnection / main) * 100).toFixed(1)} %` : "-"];
    }),
  );
  return {
    head: ["contender", "JIT function (self)", "instr/conn", "of main"],
    rows,
    text: 2,
    groups: summary.flatMap((s) => s.topJitFunctions.map(() => s.contender)),
  };
}

/** contender | caller (JIT) | callee (Bun's binary) | inclusive instructions/connection. */
function callsTable(summary: Summary[]): Table {
  const rows = summary.flatMap((s) => s.topCallsIntoBinary.map((c) => [s.contender, c.caller, c.callee, fmt(c.perConnection)]));
  return {
    head: ["contender", "caller (JIT code)", "callee (Bun's binary)", "instr/conn incl."],
    rows,
    text: 3,
    groups: summary.flatMap((s) => s.topCallsIntoBinary.map(() => s.contender)),
  };
}
