/**
 * The Prometheus text exposition format (version 0.0.4), as far as metrics.ts needs it: a
 * histogram with fixed buckets, an output that writes families and samples, and the standard
 * process_* metrics.
 */
import { readdirSync, readFileSync } from "node:fs";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A histogram with fixed bucket bounds; `counts` are per bucket (the last is +Inf), summed up when written. */
export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Label values escape backslash, double quote and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return Number.isNaN(value) ? "NaN" : String(value);
}

export class Output {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: string, value: number): void {
    this.lines.push(labels === "" ? `${name} ${formatValue(value)}` : `${name}{${labels}} ${formatValue(value)}`);
  }

  histogram(name: string, labels: string, histogram: Histogram): void {
    const prefix = labels === "" ? "" : `${labels},`;
    let cumulative = 0;
    histogram.bounds.forEach((bound, i) => {
      cumulative += histogram.counts[i]!;
      this.sample(`${name}_bucket`, `${prefix}le="${bound}"`, cumulative);
    });
    this.sample(`${name}_bucket`, `${prefix}le="+Inf"`, histogram.count);
    this.sample(`${name}_sum`, labels, histogram.sum);
    this.sample(`${name}_count`, labels, histogram.count);
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

const START_TIME_SECONDS = performance.timeOrigin / 1000;

/** The standard process_* metrics (as the official client libraries name them). */
export function writeProcessMetrics(out: Output): void {
  const cpu = process.cpuUsage();
  out.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
  out.sample("process_cpu_seconds_total", "", (cpu.user + cpu.system) / 1e6);
  out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  out.sample("process_resident_memory_bytes", "", process.memoryUsage.rss());
  out.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
  out.sample("process_start_time_seconds", "", Math.round(START_TIME_SECONDS * 1000) / 1000);
  const fds = openFds();
  if (fds !== null) {
    out.family("process_open_fds", "gauge", "Number of open file descriptors.");
    out.sample("process_open_fds", "", fds);
  }
  const max = maxFds();
  if (max !== null) {
    out.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
    out.sample("process_max_fds", "", max);
  }
}

function openFds(): number | null {
  try {
    return readdirSync("/proc/self/fd").length - 1; // the directory's own fd
  } catch {
    return null;
  }
}

function maxFds(): number | null {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Upper bounds (seconds) of the connect-duration buckets: loopback to a slow remote dial. */
export const CONNECT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Upper bounds (seconds) of the session-duration buckets: one request to a day-long tunnel. */
export const SESSION_BUCKETS = [0.005, 0.05, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400] as const;
