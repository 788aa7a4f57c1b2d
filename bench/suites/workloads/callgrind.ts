/**
 * Counting instructions with valgrind's callgrind: a Bun process run under callgrind with JSC's
 * jitdump on, its counters zeroed and dumped around each batch of load (callgrind_control), and
 * the readers of what both write: a dump's total, a dump's self cost per function and inclusive
 * cost per call, and the jitdump that names the JIT code. The instructions suite's measurements.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { HOST } from "../../runner/net.ts";
import { logTail, pidAlive, run, startServer, workDir, type Server } from "../../runner/procs.ts";

/** The tools the suite runs, each with the Debian package that has it. */
export const CALLGRIND_TOOLS: Record<string, string> = {
  valgrind: "valgrind",
  callgrind_control: "valgrind",
  "redis-server": "redis-server",
  "redis-cli": "redis-tools",
  "redis-benchmark": "redis-tools",
};

/** The first tool that is not installed, as one line naming its package; undefined when all are. */
export function toolMissing(): string | undefined {
  for (const [tool, pkg] of Object.entries(CALLGRIND_TOOLS)) {
    if (!Bun.which(tool)) return `${tool} not installed (apt-get install ${pkg}); the suite counts instructions with valgrind's callgrind`;
  }
  return undefined;
}

/**
 * valgrind's flags, `dir` holding the dumps (`tag.PID.out.K-TT`: dump K, thread TT, 01 the
 * main thread) and vgdb's FIFOs (callgrind_control talks to the process through them).
 * --smc-check=all-non-file: JIT code is written to anonymous memory and rewritten in place.
 */
export const callgrindFlags = (dir: string, tag: string): string[] => [
  "--tool=callgrind",
  "--separate-threads=yes",
  "--smc-check=all-non-file",
  `--callgrind-out-file=${join(dir, `${tag}.%p.out`)}`,
  `--vgdb-prefix=${join(dir, "vgdb")}`,
];

/** Under valgrind a Bun process takes 10-40 s to start; a PONG is awaited this long. */
const START_TIMEOUT_MS = 120_000;

/** One dump's files: the instructions of each thread (by its number, 1 the main thread). */
export interface Dump {
  number: number;
  threads: Map<number, { file: string; instructions: number }>;
}

/** A Bun process under callgrind, serving `port`; every file it writes is in `dir`. */
export interface Callgrind {
  /** valgrind's own pid (bash and env exec it, so the spawned pid is valgrind's). */
  pid: number;
  dir: string;
  server: Server;
  /** `callgrind_control -z`: every counter to zero. */
  zero(): Promise<void>;
  /** `callgrind_control -d`: every thread's counters since the last zero, written and read. */
  dump(): Promise<Dump>;
  /** The jitdump JSC wrote (`jit-*-PID.dump`); null when there is none. */
  jitDumpFile(): string | null;
  /** SIGKILL (once the dumps are written); the files stay for reading. */
  kill(): Promise<void>;
  /** kill(), then the dir is removed. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts `argv` (the real bun executable first) under callgrind with JSC's jitdump on, from
 * `cwd`, and waits until `redis-cli -p port ping` answers PONG (at most 120 s).
 */
export async function startCallgrind(tag: string, argv: string[], port: number, cwd: string): Promise<Callgrind> {
  const dir = mkdtempSync(join(workDir(), `callgrind-${tag}-`));
  const env = ["env", "BUN_JSC_useJITDump=1", `BUN_JSC_jitDumpDirectory=${dir}`];
  const server = startServer(tag, [...env, "valgrind", ...callgrindFlags(dir, tag), ...argv], cwd);
  const pid = server.pid;
  const control = async (action: "-z" | "-d") => {
    const r = await run(["callgrind_control", `--vgdb-prefix=${join(dir, "vgdb")}`, action, String(pid)], 60_000);
    const out = `${r.stdout}${r.stderr}`.trim();
    if (r.code !== 0 || r.timedOut || /^Error|No active callgrind runs/m.test(out)) {
      throw new Error(`callgrind_control ${action} ${pid} failed (${r.timedOut ? "timed out" : r.code}): ${out.replace(/\s+/g, " ").slice(0, 200)}`);
    }
  };
  let dumps = 0;
  let stopped = false;
  const handle: Callgrind = {
    pid,
    dir,
    server,
    zero: () => control("-z"),
    async dump() {
      await control("-d");
      dumps++;
      return readDump(dir, `${tag}.${pid}.out`, dumps);
    },
    jitDumpFile() {
      const name = readdirSync(dir).find((file) => file.startsWith("jit-") && file.endsWith(`-${pid}.dump`));
      return name === undefined ? null : join(dir, name);
    },
    async kill() {
      if (server.proc.exitCode === null && server.proc.signalCode === null) server.proc.kill("SIGKILL");
      await server.stop();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await handle.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForPong(server, port);
    // callgrind_control finds its process the same way: valgrind with --tool=callgrind
    const line = commandLine(pid);
    if (!/valgrind\S*\s.*--tool=callgrind/.test(line)) throw new Error(`pid ${pid} runs "${line.slice(0, 120)}", not valgrind --tool=callgrind`);
  } catch (error) {
    await handle.stop();
    throw error;
  }
  return handle;
}

/** Polls `redis-cli ping` through `port` every 500 ms until PONG; fails with the log tail when the process exits or 120 s pass. */
async function waitForPong(server: Server, port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null)
      throw new Error(`${server.name} exited under valgrind before answering PONG: ${logTail(server, 5)}`);
    const ping = await run(["redis-cli", "-h", HOST, "-p", String(port), "ping"], 5000);
    if (ping.stdout.trim() === "PONG") return;
    if (Date.now() > deadline)
      throw new Error(`${server.name}: no PONG on ${HOST}:${port} after ${START_TIMEOUT_MS / 1000} s under valgrind: ${logTail(server, 5)}`);
    await Bun.sleep(500);
  }
}

/** The command line `pid` runs, as /proc shows it (valgrind keeps its own: `valgrind.bin --tool=callgrind …`). */
function commandLine(pid: number): string {
  try {
    if (!pidAlive(pid)) return "(exited)";
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "(gone)";
  }
}

/** The files of dump `number` (`base.number-TT`), waited for up to 10 s, each thread's total read. */
async function readDump(dir: string, base: string, number: number): Promise<Dump> {
  const prefix = `${base}.${number}-`;
  const deadline = Date.now() + 10_000;
  let files: string[] = [];
  while ((files = readdirSync(dir).filter((file) => file.startsWith(prefix))).length === 0) {
    if (Date.now() > deadline) throw new Error(`callgrind wrote no ${prefix}* after callgrind_control -d`);
    await Bun.sleep(50);
  }
  const threads: Dump["threads"] = new Map();
  for (const name of files) {
    const thread = Number(name.slice(prefix.length));
    const file = join(dir, name);
    threads.set(thread, { file, instructions: dumpTotal(readFileSync(file, "utf8")) });
  }
  if (!threads.has(1)) throw new Error(`dump ${number}: no main thread file (${prefix}01)`);
  return { number, threads };
}

/** A dump's instruction count: its `totals:` line, else its `summary:` line. Throws when it has neither. */
export function dumpTotal(text: string): number {
  const totals = /^totals:\s*(\d+)/m.exec(text) ?? /^summary:\s*(\d+)/m.exec(text);
  if (totals === null) throw new Error("callgrind dump without a totals: or summary: line");
  return Number(totals[1]);
}

/** A function of a dump: its object (`ob=`) and name (`fn=`, an address like 0x0000000007790180 when it has no symbol). */
export interface Fn {
  object: string;
  fn: string;
}

/** What one dump (one thread) says of each function and call. */
export interface Profile {
  /** Instructions executed in each function itself, keyed by `fnKey`. */
  self: Map<string, { fn: Fn; instructions: number }>;
  /** Instructions of each call site's callee, inclusive, summed per caller and callee (keyed by both `fnKey`s). */
  calls: Map<string, { caller: Fn; callee: Fn; instructions: number }>;
}

export const fnKey = (f: Fn): string => `${f.object}\n${f.fn}`;

/** Kinds of name that share an id table under callgrind's name compression (`fn=(12) name`, then `cfn=(12)`). */
const NAME_TABLE: Record<string, "ob" | "fn" | "fl"> = { ob: "ob", cob: "ob", fn: "fn", cfn: "fn", fl: "fl", fi: "fl", fe: "fl", cfi: "fl", cfl: "fl" };

/**
 * Self cost per function and inclusive cost per call from a callgrind dump (format version 1).
 * A cost line belongs to the `ob=`/`fn=` it is under; `cob=` and `cfn=` name the callee of the
 * next `calls=` (no `cob=`: the caller's object), and the line after `calls=` is that call's
 * inclusive cost, not self cost. Events: the `Ir` column (instructions).
 */
export function parseProfile(text: string): Profile {
  const names = { ob: new Map<string, string>(), fn: new Map<string, string>(), fl: new Map<string, string>() };
  const self: Profile["self"] = new Map();
  const calls: Profile["calls"] = new Map();
  let positions = 1;
  let column = 0;
  let caller: Fn = { object: "???", fn: "???" };
  let calleeObject: string | undefined;
  let callee: Fn | undefined;
  /** The next cost line is a call's inclusive cost (after calls=), or a jump's target (after jump=/jcnd=). */
  let next: "self" | "call" | "skip" = "self";
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const c = line.charCodeAt(0);
    if ((c >= 48 && c <= 57) || line[0] === "+" || line[0] === "-" || line[0] === "*") {
      const fields = line.trim().split(/\s+/);
      const instructions = Number(fields[positions + column] ?? 0);
      if (next === "call" && callee !== undefined) {
        const key = `${fnKey(caller)}\n${fnKey(callee)}`;
        const entry = calls.get(key) ?? calls.set(key, { caller, callee, instructions: 0 }).get(key)!;
        entry.instructions += instructions;
      } else if (next === "self") {
        const key = fnKey(caller);
        const entry = self.get(key) ?? self.set(key, { fn: caller, instructions: 0 }).get(key)!;
        entry.instructions += instructions;
      }
      next = "self";
      continue;
    }
    const header = /^(positions|events):\s*(.*)$/.exec(line);
    if (header) {
      const list = header[2]!.trim().split(/\s+/);
      if (header[1] === "positions") positions = list.length;
      else column = Math.max(0, list.indexOf("Ir"));
      continue;
    }
    if (line.startsWith("calls=")) {
      next = "call";
      continue;
    }
    if (line.startsWith("jump=") || line.startsWith("jcnd=")) {
      next = "skip";
      continue;
    }
    const spec = /^(c?ob|c?fn|fl|fi|fe|cfi|cfl)=(?:\((\d+)\))?\s*(.*)$/.exec(line);
    if (spec === null) continue; // header lines (version:, cmd:, summary:, …)
    const [, kind, id, given] = spec as unknown as [string, string, string | undefined, string];
    const table = names[NAME_TABLE[kind]!];
    let name = given;
    if (id !== undefined) {
      if (given === "") name = table.get(id) ?? `(${id})`;
      else table.set(id, given);
    }
    if (kind === "ob") caller = { object: name, fn: caller.fn };
    else if (kind === "fn") caller = { object: caller.object, fn: name };
    else if (kind === "cob") calleeObject = name;
    else if (kind === "cfn") {
      // callgrind writes cob= only when the callee's object is not the caller's, before each call
      callee = { object: calleeObject ?? caller.object, fn: name };
      calleeObject = undefined;
    }
  }
  return { self, calls };
}

/** The address a function without a symbol is named by (`0x0000000007790180`, or `0x…'2` for a recursion level); undefined for a symbol. */
export function fnAddress(fn: string): number | undefined {
  const m = /^0x([0-9a-f]+)(?:'\d+)?$/i.exec(fn);
  return m ? Number.parseInt(m[1]!, 16) : undefined;
}

/** One piece of JIT code from a jitdump's JIT_CODE_LOAD record. */
export interface JitCode {
  start: number;
  end: number;
  /** JSC's name: `JSC-FTL: dial#B7Rv7a`, `JSC-InlineCache: GetById handler`, … */
  name: string;
}

const JITDUMP_MAGIC = 0x4a695444; // "JiTD", written little-endian
const JIT_CODE_LOAD = 0;

/**
 * The JIT_CODE_LOAD records of a perf jitdump, in file order: a header (its size at byte 8),
 * then records of {u32 id, u32 total_size, u64 timestamp}; a load is followed by {u32 pid,
 * u32 tid, u64 vma, u64 code_addr, u64 code_size, u64 code_index, name NUL, code}. A record cut
 * short at the end (the process was killed while writing) is left out.
 */
export function parseJitDump(bytes: Uint8Array): JitCode[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 12 || view.getUint32(0, true) !== JITDUMP_MAGIC) throw new Error("not a jitdump (no JiTD magic)");
  const decoder = new TextDecoder();
  const out: JitCode[] = [];
  let offset = view.getUint32(8, true);
  while (offset + 16 <= bytes.byteLength) {
    const id = view.getUint32(offset, true);
    const size = view.getUint32(offset + 4, true);
    if (size < 16 || offset + size > bytes.byteLength) break;
    if (id === JIT_CODE_LOAD && size >= 56) {
      const start = Number(view.getBigUint64(offset + 32, true));
      const length = Number(view.getBigUint64(offset + 40, true));
      const nameStart = offset + 56;
      const nul = bytes.indexOf(0, nameStart);
      const nameEnd = nul === -1 || nul > offset + size ? offset + size : nul;
      out.push({ start, end: start + length, name: decoder.decode(bytes.subarray(nameStart, nameEnd)) });
    }
    offset += size;
  }
  return out;
}

/**
 * The name of the JIT code at an address: the latest record that covers it (JSC reuses
 * executable memory, so a later load overrides an earlier one); undefined when none does.
 */
export function jitNamer(codes: JitCode[]): (address: number) => string | undefined {
  const cache = new Map<number, string | undefined>();
  return (address) => {
    if (cache.has(address)) return cache.get(address);
    let name: string | undefined;
    for (let i = codes.length - 1; i >= 0; i--) {
      const code = codes[i]!;
      if (code.start <= address && address < code.end) {
        name = code.name;
        break;
      }
    }
    cache.set(address, name);
    return name;
  };
}

/** A JIT name without what tells apart nothing a reader needs: `JSC-FTL: dial#B7Rv7a:[0x…->0x…, …]` → `JSC-FTL: dial#B7Rv7a`. */
export const jitKey = (name: string): string => name.replace(/:\[0x[0-9a-f]+->0x.*$/i, "");

/**
 * The short form shown in tables: `JSC-FTL: dial#B7Rv7a` → `FTL dial`, `JSC-InlineCache: GetById
 * handler` → `InlineCache GetById handler`; an anonymous function keeps its hash (`Baseline #B7Rv7a`).
 */
export function shortJitName(name: string): string {
  const m = /^JSC-([A-Za-z]+):\s*(.*)$/.exec(jitKey(name));
  if (m === null) return name;
  const [, tier, what] = m as unknown as [string, string, string];
  const fn = what.startsWith("#") ? what : what.replace(/#[A-Za-z0-9]+$/, "");
  return `${tier} ${fn}`.trim();
}

/** Reads a jitdump file; [] with the reason when it is missing or unreadable. */
export function readJitDump(file: string | null): { codes: JitCode[]; problem?: string } {
  if (file === null || !existsSync(file)) return { codes: [], problem: "no jitdump written (BUN_JSC_useJITDump)" };
  try {
    return { codes: parseJitDump(new Uint8Array(readFileSync(file))) };
  } catch (error) {
    return { codes: [], problem: `jitdump ${file}: ${(error as Error).message}` };
  }
}
