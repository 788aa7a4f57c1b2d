/** The header: when, on what machine, with which versions and parameters. */
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, release } from "node:os";
import { join } from "node:path";
import { ROOT } from "../contenders/launch.ts";
import { versionOf } from "./procs.ts";

export interface Meta {
  date: string;
  machine: { nproc: number; cpu: string; kernel: string; loadavg: number[] };
  versions: Record<string, string>;
  commit: string;
  contenders: Record<string, { command: string; skip?: string }>;
  params: Record<string, unknown>;
}

function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
  return m?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown";
}

/** The checked-out commit, read from .git without running git. */
function commit(): string {
  try {
    const head = readFileSync(join(ROOT, ".git/HEAD"), "utf8").trim();
    if (!head.startsWith("ref: ")) return head.slice(0, 12);
    const ref = join(ROOT, ".git", head.slice(5));
    return existsSync(ref) ? readFileSync(ref, "utf8").trim().slice(0, 12) : "(no commit)";
  } catch {
    return "unknown";
  }
}

/**
 * What the header says of each contender (any suite's): its command line, why it was skipped,
 * and its version line (left out of `versions` when undefined, and always for direct).
 */
export interface Described {
  name: string;
  version?: string;
  command: string;
  skip?: string | undefined;
}

/** The tools whose versions the Redis suites report (redis-server, redis-benchmark, iperf3). */
export const REDIS_TOOLS: Record<string, string[]> = {
  "redis-server": ["redis-server", "--version"],
  "redis-benchmark": ["redis-benchmark", "--version"],
  iperf3: ["iperf3", "--version"],
};

/**
 * The header of a run: `versions` are bun's, each contender's, then each tool's (its version
 * command, or null when it is not installed).
 */
export async function collectMeta(
  contenders: Described[],
  params: Record<string, unknown>,
  tools: Record<string, string[] | null> = REDIS_TOOLS,
): Promise<Meta> {
  const nproc = Number((await Bun.$`nproc`.quiet().nothrow().text()).trim()) || cpus().length;
  const versions: Record<string, string> = { bun: Bun.version };
  for (const c of contenders) if (c.name !== "direct" && c.version !== undefined) versions[c.name] = c.version;
  for (const [tool, argv] of Object.entries(tools)) versions[tool] = argv === null ? "not installed" : await versionOf(argv);
  const described: Meta["contenders"] = {};
  for (const c of contenders) described[c.name] = c.skip ? { command: c.command, skip: c.skip } : { command: c.command };
  return {
    date: new Date().toISOString(),
    machine: { nproc, cpu: cpuModel(), kernel: release(), loadavg: roundedLoad() },
    versions,
    commit: commit(),
    contenders: described,
    params,
  };
}

/** The load average, to two decimals: the machine is shared, this says how busy it was. */
export const roundedLoad = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

export function headerText(meta: Meta): string {
  const lines = [
    `tcprouter bench  ${meta.date}  commit ${meta.commit}`,
    `machine: ${meta.machine.nproc} cpus (nproc), ${meta.machine.cpu}, Linux ${meta.machine.kernel}, load ${meta.machine.loadavg.join(" ")} at start`,
    ...Object.entries(meta.versions).map(([k, v]) => `  ${k}: ${v}`),
    `params: ${Object.entries(meta.params)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : String(v)}`)
      .join(" ")}`,
    ...Object.entries(meta.contenders).map(([k, c]) => `  ${k}: ${c.skip ? `SKIPPED (${c.skip})` : c.command}`),
  ];
  return lines.join("\n");
}
