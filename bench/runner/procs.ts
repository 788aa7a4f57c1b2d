/**
 * Processes the bench starts: every one is registered here by PID and killed by PID on exit,
 * on error and on SIGINT/SIGTERM. Nothing else is ever killed.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { say } from "./flags.ts";

let dir: string | undefined;

/** One temp dir for configs and logs of this run, made on first use; removed by `cleanup()`. */
export function workDir(): string {
  dir ??= mkdtempSync(join(tmpdir(), "tcprouter-bench-"));
  return dir;
}

const live = new Set<Subprocess>();
let stopping = false;

/** Once cleanup has begun nothing new may start: it would outlive the bench. */
function refuseWhenStopping(): void {
  if (stopping) throw new StoppingError();
}

export const isStopping = () => stopping;

export class StoppingError extends Error {
  constructor() {
    super("bench is stopping");
  }
}

/** Bash prefix that raises the soft fd limit to the hard one (65536 when allowed). */
const RAISE_FDS = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';

/** argv wrapped in bash so the child gets the raised fd limit; `exec` keeps the PID. */
export function withFdLimit(argv: string[]): string[] {
  return ["bash", "-c", RAISE_FDS, "bash", ...argv];
}

/** A long-lived server (Redis, HAProxy, ...) with stdout+stderr going to a log file. */
export interface Server {
  name: string;
  proc: Subprocess;
  pid: number;
  log: string;
  stop(): Promise<void>;
}

export function startServer(name: string, argv: string[], cwd?: string): Server {
  refuseWhenStopping();
  const log = join(workDir(), `${name}.log`);
  const file = Bun.file(log);
  const proc = Bun.spawn(withFdLimit(argv), { cwd, stdin: "ignore", stdout: file, stderr: file });
  live.add(proc);
  return { name, proc, pid: proc.pid, log, stop: () => stop(proc) };
}

/** SIGTERM, then SIGKILL after `graceMs`; also kills any leftover descendants by PID. */
export async function stop(proc: Subprocess, graceMs = 3000): Promise<void> {
  const kids = descendants(proc.pid);
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill("SIGTERM");
    const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
    if (!done) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }
  for (const pid of kids) killPid(pid, "SIGKILL");
  live.delete(proc);
}

function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Last lines of a server's log, for error messages. */
export function logTail(server: Server, lines = 15): string {
  try {
    return readFileSync(server.log, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** PIDs of all descendants of `pid` (from /proc/*\/stat ppid). */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // field 4 (ppid) follows the ")" that closes the command name
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // raced with exit
    }
  }
  const out: number[] = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    for (const [child, ppid] of parent) {
      if (ppid === queue[i]) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/**
 * Clock ticks per second of /proc/PID/stat's utime and stime (`getconf CLK_TCK`, 100 on
 * Linux): one tick is the resolution of every CPU figure the bench reports.
 */
export const CLK_TCK: number = (() => {
  try {
    const out = Bun.spawnSync(["getconf", "CLK_TCK"], { stdout: "pipe", stderr: "ignore" });
    const n = Number(out.stdout.toString().trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU time in clock ticks (`CLK_TCK` a second), user and system apart. */
export interface CpuTicks {
  user: number;
  system: number;
  /** Processes summed: `pid` and its descendants alive when read. */
  processes: number;
}

/**
 * User and system clock ticks of `pid` and all its descendants (nginx workers, tcprouter
 * --workers children, a wrapper's child), from /proc/PID/stat fields 14 and 15 (utime,
 * stime), which count every thread of the process.
 */
export function cpuTicks(pid: number): CpuTicks {
  const sum: CpuTicks = { user: 0, system: 0, processes: 0 };
  for (const one of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${one}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      sum.user += Number(fields[11]); // utime (field 14)
      sum.system += Number(fields[12]); // stime (field 15)
      sum.processes++;
    } catch {
      // gone
    }
  }
  return sum;
}

/** User + system CPU seconds of `pid` and all its descendants, from /proc (clock ticks of 1 / CLK_TCK s). */
export function cpuSeconds(pid: number): number {
  const t = cpuTicks(pid);
  return (t.user + t.system) / CLK_TCK;
}

/** Sum of VmRSS (KiB) over `pid` and all its descendants. */
export function treeRssKiB(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) total += Number(m[1]);
    } catch {
      // raced with exit
    }
  }
  return total;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a short command to completion, killed after `timeoutMs`. */
export async function run(argv: string[], timeoutMs: number): Promise<RunResult> {
  refuseWhenStopping();
  const proc = Bun.spawn(withFdLimit(argv), {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  try {
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
    live.delete(proc);
  }
}

/** Output of a version command, first line, or "not installed". */
export async function versionOf(argv: string[]): Promise<string> {
  try {
    const r = await run(argv, 5000);
    const line = (r.stdout + r.stderr).trim().split("\n")[0] ?? "";
    return line || "unknown";
  } catch {
    return "not installed";
  }
}

/**
 * Processes the bench started only indirectly, known by PID: the new tcprouter an upgrade
 * starts, a daemonized nginx master (and the master its binary upgrade starts). Neither is a
 * Subprocess of the bench, so `stop()` cannot reach them; cleanup stops them by PID.
 */
const tracked = new Set<number>();

/** Registers `pid` (started by the bench, indirectly) to be stopped by cleanup. */
export function trackPid(pid: number): void {
  refuseWhenStopping();
  tracked.add(pid);
}

/** True while `pid` runs (a zombie has exited: it counts as gone). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/**
 * SIGTERM to a tracked `pid` and every process it started (a master stopping mid-upgrade may
 * still fork workers: each one hears the signal itself), SIGKILL to what is left after
 * `graceMs`; then forgets it.
 */
export async function stopPid(pid: number, graceMs = 3000): Promise<void> {
  const tree = [pid, ...descendants(pid)].filter(pidAlive);
  for (const one of tree) killPid(one, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (tree.some(pidAlive) && Date.now() < deadline) await Bun.sleep(20);
  for (const one of [...tree, ...tree.flatMap((p) => (pidAlive(p) ? descendants(p) : []))]) if (pidAlive(one)) killPid(one, "SIGKILL");
  tracked.delete(pid);
}

/** Kills everything still registered and removes the temp dir. Safe to call twice. */
export async function cleanup(): Promise<void> {
  stopping = true;
  await Promise.all([...tracked].map((pid) => stopPid(pid, 2000)));
  await Promise.all([...live].map((p) => stop(p, 2000)));
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** This process's soft limit on open files (from /proc/self/limits). */
export function softFdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m || m[1] === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

const REEXEC_ENV = "TCPROUTER_BENCH_FDS_RAISED";

/**
 * The harness holds one socket per idle session itself. When its soft fd limit is below
 * `needed`, run this same script again under `ulimit -n` (once: an env var guards the loop)
 * and exit with its code. Returns normally when no re-run is needed or possible.
 */
export async function ensureOwnFdLimit(needed: number): Promise<void> {
  if (softFdLimit() >= needed || process.env[REEXEC_ENV]) return;
  const child = Bun.spawn(withFdLimit([process.execPath, ...process.argv.slice(1)]), {
    stdio: ["inherit", "inherit", "inherit"],
    env: { ...process.env, [REEXEC_ENV]: "1" },
  });
  // Ctrl-C reaches the child through the process group; it cleans up and exits.
  // This process started nothing else, so its own signal handlers step aside.
  process.removeAllListeners("SIGINT").removeAllListeners("SIGTERM");
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  process.exit(await child.exited);
}

/**
 * Runs a bench's `main` and always cleans up what it started: on return, on an error (exit 1)
 * and on SIGINT/SIGTERM (exit 130).
 */
export async function runBench(main: () => Promise<void>): Promise<void> {
  let exiting = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (exiting) return;
      exiting = true;
      say(`bench: ${signal}, stopping everything it started`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await main();
    await cleanup();
  } catch (error) {
    // a signal is being handled: its handler cleans up and exits
    if (error instanceof StoppingError) await new Promise(() => {});
    say(`bench: ${(error as Error).stack ?? String(error)}`);
    await cleanup();
    process.exit(1);
  }
}
