/**
 * DNS over UDP: a dnsmasq that answers *.bench.test with 10.0.0.1 from its own config (no
 * upstream, no cache misses), the `dig` check, and `dnsperf` runs parsed into queries/s,
 * latency (average, and p99 from the per-query lines of `-v`) and lost queries.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { launchProbed, udpAnswers } from "../../contenders/udp-launch.ts";
import { HOST } from "../../runner/net.ts";
import { run, workDir } from "../../runner/procs.ts";
import type { Instance } from "../../contenders/launch.ts";

export const DNS_DOMAIN = "bench.test";
export const DNS_ANSWER = "10.0.0.1";

export const dnsmasqBin = (): string | null => Bun.which("dnsmasq") ?? Bun.which("dnsmasq", { PATH: "/usr/sbin:/sbin" });

/** A query for `name` type A, class IN, ID 0x4242, recursion desired. */
export function dnsQuery(name: string): Uint8Array {
  const labels = name.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]);
  return Uint8Array.from([0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/** True once a DNS query to `port` gets any answer within `timeoutMs`. */
export const dnsAnswers = (port: number, timeoutMs = 300) => udpAnswers(port, dnsQuery(`probe.${DNS_DOMAIN}`), timeoutMs);

/** dnsmasq on 127.0.0.1:`port` (UDP and TCP), answering every name under bench.test with 10.0.0.1. */
export function startDnsmasq(bin: string, port: number): Promise<Instance> {
  const argv = [
    bin,
    "--no-daemon",
    "--no-resolv",
    "--no-hosts",
    `--port=${port}`,
    `--listen-address=${HOST}`,
    "--bind-interfaces",
    "--conf-file=/dev/null",
    `--address=/${DNS_DOMAIN}/${DNS_ANSWER}`,
    `--pid-file=${join(workDir(), "dnsmasq.pid")}`,
    "--log-facility=-",
  ];
  return launchProbed("dnsmasq", argv, port, () => dnsAnswers(port));
}

/** `dig @127.0.0.1 -p PORT a.bench.test +short` must print 10.0.0.1 and nothing else. */
export async function checkDig(port: number): Promise<void> {
  const r = await run(["dig", `@${HOST}`, "-p", String(port), `a.${DNS_DOMAIN}`, "A", "+short", "+time=2", "+tries=2"], 15_000);
  const answer = r.stdout.trim();
  if (r.code !== 0 || answer !== DNS_ANSWER)
    throw new Error(`dig a.${DNS_DOMAIN}: expected ${DNS_ANSWER}, got "${answer || r.stderr.trim()}" (exit ${r.code})`);
}

/** dnsperf's query file: 100 names (`q0.bench.test A` …), which it sends round and round. */
export function writeQueryFile(): string {
  const file = join(workDir(), "queries.txt");
  writeFileSync(file, Array.from({ length: 100 }, (_, i) => `q${i}.${DNS_DOMAIN} A\n`).join(""));
  return file;
}

export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  /** Queries per second, as dnsperf prints it (completed ÷ run time). */
  qps: number;
  avgMs: number;
  /** 99th percentile of the per-query latencies dnsperf -v printed. */
  p99Ms: number;
  runSeconds: number;
}

/** The number after `label` in dnsperf's statistics. */
function stat(out: string, label: string): number {
  const m = new RegExp(`^\\s*${label.replace(/[()]/g, "\\$&")}:\\s+([\\d.]+)`, "m").exec(out);
  if (!m) throw new Error(`dnsperf printed no "${label}"`);
  return Number(m[1]);
}

/**
 * `dnsperf -s 127.0.0.1 -p PORT -d FILE -l SECONDS -c CLIENTS [-Q MAXQPS] -v`. -v prints
 * `> NOERROR q1.bench.test A 0.000123` per answer (latency in s), from which p99 comes.
 */
export async function runDnsperf(port: number, file: string, seconds: number, clients: number, maxQps: number | undefined): Promise<DnsperfResult> {
  const argv = ["dnsperf", "-s", HOST, "-p", String(port), "-d", file, "-l", String(seconds), "-c", String(clients), "-v"];
  if (maxQps !== undefined) argv.push("-Q", String(maxQps));
  const r = await run(argv, (seconds + 30) * 1000);
  if (r.timedOut) throw new Error(`dnsperf timed out after ${seconds + 30} s`);
  if (r.code !== 0) throw new Error(`dnsperf exit ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split("\n").at(-1)}`);
  const latencies: number[] = [];
  let rcodeErrors = 0;
  let firstRcode = "";
  for (const line of r.stdout.split("\n")) {
    if (!line.startsWith("> ")) continue;
    const parts = line.split(" ");
    const seconds = Number(parts.at(-1));
    if (parts[1] === "T" || parts[1] === "I") continue; // timed out (counted in "Queries lost") or interrupted
    if (parts[1] !== "NOERROR") {
      rcodeErrors++;
      firstRcode ||= parts[1] ?? "";
    }
    if (Number.isFinite(seconds)) latencies.push(seconds);
  }
  if (rcodeErrors > 0) throw new Error(`${rcodeErrors} answers were not NOERROR (first: ${firstRcode})`);
  const result: DnsperfResult = {
    sent: stat(r.stdout, "Queries sent"),
    completed: stat(r.stdout, "Queries completed"),
    lost: stat(r.stdout, "Queries lost"),
    qps: stat(r.stdout, "Queries per second"),
    avgMs: stat(r.stdout, "Average Latency (s)") * 1000,
    p99Ms: percentile(latencies, 0.99) * 1000,
    runSeconds: stat(r.stdout, "Run time (s)"),
  };
  if (result.completed === 0) throw new Error("dnsperf: no query completed");
  return result;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}
