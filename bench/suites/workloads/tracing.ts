/**
 * Watching a contender from outside while a load runs: `strace -c` (system calls counted per
 * name) and `perf record -e cpu-clock` (CPU samples per shared object, and on request per
 * symbol), each attached by PID
 * to every process of the contender's tree, registered with runner/procs.ts like any server,
 * and stopped with SIGTERM (both write their output on it). Their output files are removed
 * once read. The syscalls suite's measurements.
 */
import { existsSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { descendants, logTail, pidAlive, run, startServer, stop, workDir, type Server } from "../../runner/procs.ts";

/** Every live process of `pid`'s tree: nginx's master and workers, tcprouter --workers children. */
export function processTree(pid: number): number[] {
  return [pid, ...descendants(pid)].filter(pidAlive);
}

/** Basenames of the executables of `pids` (bun.exe, haproxy, nginx): perf's name for the runtime's own code. */
export function executables(pids: number[]): string[] {
  const names = new Set<string>();
  for (const pid of pids) {
    try {
      names.add(basename(readlinkSync(`/proc/${pid}/exe`)));
    } catch {
      // gone
    }
  }
  return [...names];
}

/** Polls `condition` every 50 ms up to `ms`; fails early with the log tail when `server` exits. */
async function waitFor(server: Server, condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) throw new Error(`${server.name} exited before ${what}: ${logTail(server, 3)}`);
    if (Date.now() > deadline) throw new Error(`${server.name}: no ${what} after ${ms} ms: ${logTail(server, 3)}`);
    await Bun.sleep(50);
  }
}

const ATTACH_TIMEOUT_MS = 10_000;
/** strace detaches from every thread on SIGTERM before it writes the summary; perf writes its file. */
const DETACH_GRACE_MS = 15_000;

/** One syscall's line of `strace -c`. */
export interface Calls {
  calls: number;
  errors: number;
}

/**
 * `strace -c` summary (`-o FILE`): `% time  seconds  usecs/call  calls  [errors]  syscall`,
 * errors blank when 0; the `total` line is left out. Tables of several personalities
 * (64/32 bit) are summed by name. Throws when there is no table.
 */
export function parseStraceSummary(text: string): Record<string, Calls> {
  const out: Record<string, Calls> = {};
  let totals = 0;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if ((f.length !== 5 && f.length !== 6) || !/^\d+(\.\d+)?$/.test(f[0]!)) continue;
    const name = f.at(-1)!;
    const calls = Number(f[3]);
    const errors = f.length === 6 ? Number(f[4]) : 0;
    if (!Number.isInteger(calls) || !Number.isInteger(errors)) continue;
    if (name === "total") {
      totals++;
      continue;
    }
    const c = (out[name] ??= { calls: 0, errors: 0 });
    c.calls += calls;
    c.errors += errors;
  }
  if (totals === 0) throw new Error(`no strace -c summary in ${JSON.stringify(text.slice(0, 200))}`);
  return out;
}

/**
 * `strace -c -f -o FILE -p PID…` on `pids` while `load()` runs: it starts once strace has
 * attached every one of them (`Process N attached` on its stderr), and strace is stopped right
 * after. Calls and errors per syscall of the whole window (every thread: -f).
 */
export async function straceDuring<T>(tag: string, pids: number[], load: () => Promise<T>): Promise<{ syscalls: Record<string, Calls>; result: T }> {
  const file = join(workDir(), `${tag}.strace`);
  const tracer = startServer(tag, ["strace", "-c", "-f", "-o", file, ...pids.flatMap((pid) => ["-p", String(pid)])]);
  let result: T;
  try {
    const attached = () => {
      const log = readFileSync(tracer.log, "utf8");
      return pids.every((pid) => log.includes(`Process ${pid} attached`));
    };
    await waitFor(tracer, attached, ATTACH_TIMEOUT_MS, `"attached" for all of ${pids.join(",")}`);
    result = await load();
  } finally {
    await stop(tracer.proc, DETACH_GRACE_MS);
  }
  try {
    return { syscalls: parseStraceSummary(existsSync(file) ? readFileSync(file, "utf8") : ""), result };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The sampling rate of `perf record -F`: one sample is 1e6 / PERF_HZ µs of CPU. */
export const PERF_HZ = 2000;

/** `perf record` as the suite runs it: CPU-clock samples with call chains, no build-id cache in ~/.debug. */
const perfRecord = (file: string, pids: number[]) => ["perf", "record", "-e", "cpu-clock", "-F", String(PERF_HZ), "-g", "-N", "-p", pids.join(","), "-o", file];

/**
 * Why perf cannot sample here (not installed, `perf record -e cpu-clock` refused), tried on
 * `pid` (a process the bench started) for 0.2 s; undefined when it can.
 */
export async function perfMissing(pid: number): Promise<string | undefined> {
  if (!Bun.which("perf")) return "perf not installed";
  const file = join(workDir(), "perf-probe.data");
  try {
    const r = await run([...perfRecord(file, [pid]), "--", "sleep", "0.2"], 15_000);
    if (r.code !== 0) return `perf record -e cpu-clock failed (${r.code}): ${(r.stderr.trim().split("\n")[0] ?? "").slice(0, 200)}`;
    return undefined;
  } finally {
    for (const f of [file, `${file}.old`]) rmSync(f, { force: true });
  }
}

/** Where CPU samples landed. */
export const PARTS = ["kernel", "binary", "jit", "libc", "other"] as const;
export type Part = (typeof PARTS)[number];

/**
 * A shared object of `perf report --sort dso` in its part: `[kernel.kallsyms]`; the runtime's
 * own executable (`binaries`); JIT code (`[JIT] tid N`, or `//anon` / `perf-N.map` when perf
 * names anonymous code so); libc; everything else (other libraries, `[vdso]`, `[unknown]`).
 */
export function partOf(dso: string, binaries: readonly string[]): Part {
  if (dso.startsWith("[kernel")) return "kernel";
  if (binaries.includes(dso)) return "binary";
  if (dso.startsWith("[JIT]") || dso === "//anon" || /^perf-\d+\.map$/.test(dso)) return "jit";
  if (/^libc[.-]/.test(dso)) return "libc";
  return "other";
}

/** Samples per shared object from `perf report … --stdio -n` (`  41.20%   1234  bun.exe`), and the header's event count. */
export function parsePerfReport(text: string): { dsos: Record<string, number>; eventCount: number | null } {
  const dsos: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*[\d.]+%\s+(\d+)\s+(.+?)\s*$/.exec(line);
    if (m) dsos[m[2]!] = (dsos[m[2]!] ?? 0) + Number(m[1]);
  }
  const count = /^# Event count \(approx\.\): (\d+)/m.exec(text);
  return { dsos, eventCount: count ? Number(count[1]) : null };
}

/** The name under which `perf report --sort sym` addresses without a symbol (`[.] 0x0000000000026006`) are summed. */
export const NO_SYMBOL = "(addresses without a symbol)";

/**
 * Samples per symbol from `perf report … --sort sym --stdio -F sample,sym` (`   1234  [k] tcp_ack`),
 * keyed `[k] tcp_ack` (kernel) or `[.] name` (user space). perf lists one line per symbol and
 * shared object, so a name in two objects (`@plt`) comes twice: summed. An address perf could
 * not name (the stripped Bun binary, JIT code without a perf map) is its own line each time;
 * those are summed per mark under NO_SYMBOL.
 */
export function parsePerfSymbols(text: string): Record<string, number> {
  const symbols: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+(\[.\])\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    const key = `${m[2]} ${/^0x[0-9a-f]+$/i.test(m[3]!) ? NO_SYMBOL : m[3]}`;
    symbols[key] = (symbols[key] ?? 0) + Number(m[1]);
  }
  return symbols;
}

export interface PerfSplit {
  samples: number;
  /** Samples per part (PARTS). */
  parts: Record<Part, number>;
  /** Samples per shared object, as perf named it. */
  dsos: Record<string, number>;
  /** perf's `Event count (approx.)`: ns of CPU clock for cpu-clock. */
  eventCount: number | null;
  /** Samples per symbol (parsePerfSymbols), when asked for. */
  symbols?: Record<string, number>;
}

/** Runs `perf report` on `file` with `args`; its stdout, or an error with the first of its stderr. */
async function perfReport(file: string, args: string[]): Promise<string> {
  const report = await run(["perf", "report", "-i", file, "--no-children", ...args], 120_000);
  if (report.code !== 0 || report.timedOut) throw new Error(`perf report failed (${report.code}): ${report.stderr.trim().replace(/\s+/g, " ").slice(0, 200)}`);
  return report.stdout;
}

/**
 * `perf record -e cpu-clock -F 2000 -g -p PID,…` on `pids` while `load()` runs (it starts once
 * perf has written its header, i.e. opened its events), then `perf report --no-children --sort
 * dso -g none --stdio -n` split by part. `binaries` are the runtime's executable names. With
 * `symbols`, also `perf report --no-children --sort sym -g none --stdio -F sample,sym` of the
 * same file, per symbol; it must count the same samples as the first.
 */
export async function perfDuring<T>(
  tag: string,
  pids: number[],
  binaries: readonly string[],
  load: () => Promise<T>,
  symbols = false,
): Promise<{ split: PerfSplit; result: T }> {
  const file = join(workDir(), `${tag}.data`);
  const recorder = startServer(tag, perfRecord(file, pids));
  let result: T;
  try {
    const size = () => (existsSync(file) ? statSync(file).size : 0);
    await waitFor(recorder, () => size() > 0, ATTACH_TIMEOUT_MS, "perf.data header");
    result = await load();
  } finally {
    await stop(recorder.proc, DETACH_GRACE_MS);
  }
  try {
    const { dsos, eventCount } = parsePerfReport(await perfReport(file, ["--sort", "dso", "-g", "none", "--stdio", "-n"]));
    const parts = Object.fromEntries(PARTS.map((p) => [p, 0])) as Record<Part, number>;
    let samples = 0;
    for (const [dso, n] of Object.entries(dsos)) {
      parts[partOf(dso, binaries)] += n;
      samples += n;
    }
    if (samples === 0) throw new Error("perf recorded no samples");
    if (!symbols) return { split: { samples, parts, dsos, eventCount }, result };
    const bySymbol = parsePerfSymbols(await perfReport(file, ["--sort", "sym", "-g", "none", "--stdio", "-F", "sample,sym"]));
    const counted = Object.values(bySymbol).reduce((sum, n) => sum + n, 0);
    if (counted !== samples) throw new Error(`perf report --sort sym counted ${counted} samples, --sort dso ${samples}`);
    return { split: { samples, parts, dsos, eventCount, symbols: bySymbol }, result };
  } finally {
    for (const f of [file, `${file}.old`]) rmSync(f, { force: true });
  }
}

/** One perf run's samples per symbol and the requests it covered. */
export interface SymbolRun {
  requests: number;
  symbols: Record<string, number>;
}

/** One symbol (or a sum of symbols) across contenders. */
export interface SymbolLine {
  symbol: string;
  /** Per contender: samples summed over its runs. */
  samples: Record<string, number>;
  /** Per contender: those samples × 1e6/PERF_HZ ÷ the requests of those runs. */
  usPerRequest: Record<string, number>;
  /** The largest difference in µs per request between two contenders (one contender: its own). */
  spread: number;
}

/**
 * Per symbol, each contender's µs per request over all its runs (samples summed, ÷ all their
 * requests; a symbol a contender never hit is 0): the `top` symbols with the largest spread
 * first (ties by name), then the sums of every kernel ([k]) symbol, every user-space one and all.
 * Contenders without runs are left out.
 */
export function symbolLines(runs: Record<string, SymbolRun[]>, top: number) {
  const names = Object.keys(runs).filter((name) => runs[name]!.length > 0);
  const requests = Object.fromEntries(names.map((name) => [name, runs[name]!.reduce((sum, run) => sum + run.requests, 0)]));
  const sums = Object.fromEntries(names.map((name) => [name, {} as Record<string, number>]));
  for (const name of names)
    for (const run of runs[name]!) for (const [symbol, n] of Object.entries(run.symbols)) sums[name]![symbol] = (sums[name]![symbol] ?? 0) + n;
  const line = (symbol: string, count: (sum: Record<string, number>) => number): SymbolLine => {
    const samples = Object.fromEntries(names.map((name) => [name, count(sums[name]!)]));
    const usPerRequest = Object.fromEntries(names.map((name) => [name, (samples[name]! * 1e6) / PERF_HZ / requests[name]!]));
    const us = Object.values(usPerRequest);
    return { symbol, samples, usPerRequest, spread: us.length === 1 ? us[0]! : Math.max(...us) - Math.min(...us) };
  };
  const symbols = [...new Set(names.flatMap((name) => Object.keys(sums[name]!)))];
  const lines = symbols.map((symbol) => line(symbol, (sum) => sum[symbol] ?? 0));
  lines.sort((a, b) => b.spread - a.spread || a.symbol.localeCompare(b.symbol));
  const where = (keep: (symbol: string) => boolean) => (sum: Record<string, number>) =>
    Object.entries(sum).reduce((acc, [symbol, n]) => acc + (keep(symbol) ? n : 0), 0);
  return {
    requests,
    top: lines.slice(0, top),
    kernel: line(
      "all kernel symbols [k]",
      where((symbol) => symbol.startsWith("[k] ")),
    ),
    user: line(
      "all user-space symbols [.]",
      where((symbol) => !symbol.startsWith("[k] ")),
    ),
    total: line(
      "all samples",
      where(() => true),
    ),
  };
}
