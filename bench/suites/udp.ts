/**
 * UDP bench: DNS queries, bulk datagrams and memory per idle flow, directly and through
 * tcprouter's UDP listeners and nginx's stream UDP proxy.
 *
 *   bun run bench/run.ts --suite udp [--rounds N] [--seconds N] [--clients N] [--max-qps N] [--rate R]
 *                        [--length N] [--flows N] [--only ROW[,ROW]] [--contenders A[,B]]
 *                        [--tcprouter-cmd CMD] [--smoke] [--json] [--markdown]
 *
 * Targets: DNS queries/s through tcprouter ≥ 1.0 × nginx; memory per idle flow ≤ nginx's. CPU
 * per query (the proxy's processes, /proc/PID/stat) is reported against nginx's, no target.
 *
 * Contenders, each one process (tree) for the whole run, all on 127.0.0.1:
 * - direct: the servers themselves.
 * - tcprouter: `--config` with a UDP listener to dnsmasq (`responses = 1`, `idle_timeout =
 *   "10s"`), a UDP listener to iperf3 and a TCP listener on the same port (iperf3's control
 *   connection), each with its own backend.
 * - tcprouter-noresp (DNS row only): the same without `responses`, so a flow lasts while its
 *   client port sends (idle_timeout = "10s"). dnsperf keeps up to 100 queries in flight over
 *   its 10 sockets; tcprouter's `responses = 1` ends a flow at its first answer, so the answers
 *   to the other queries in flight on that port are lost (dnsperf waits 5 s for each), while
 *   nginx's `proxy_responses 1` expects one answer per datagram the client sent.
 * - nginx: `stream { server { listen … udp; proxy_pass; proxy_responses 1; proxy_timeout 10s; } }`
 *   for DNS, a UDP and a TCP server block for iperf3; `worker_processes auto`.
 * - nginx-reuseport: the same with `listen … udp reuseport` (a socket per worker, the kernel
 *   keeps a client's datagrams on one worker; without it both workers read the one socket).
 * Before timing, `dig a.bench.test +short` through each must answer 10.0.0.1.
 *
 * Rows:
 * - dns: `dnsperf -c CLIENTS -l SECONDS [-Q MAXQPS]` against dnsmasq (answers from its config):
 *   queries/s, average and p99 latency, lost queries, the proxy's CPU µs per query.
 * - bulk: `iperf3 -u -b RATE -l LEN -t SECONDS` to a fresh `iperf3 -s -1`: datagrams/s received
 *   and loss % at that fixed rate, the proxy's CPU µs per datagram.
 * - flows: a fresh instance of each proxy in front of a UDP echo (flows idle for 600 s before
 *   they end, no responses limit); --flows client sockets send one datagram each and get their
 *   echo; (RSS after − before) / flows. Not measured for direct.
 * Rounds interleave the contenders, the start rotated each round; medians, min..max, ratios.
 */
import type { Instance } from "../contenders/launch.ts";
import { ROOT, directInstance } from "../contenders/launch.ts";
import { findNginx } from "../contenders/nginx.ts";
import { nginxBin, startNginxUdp } from "../contenders/nginx-udp.ts";
import { DEFAULT_TCPROUTER_CMD, tcprouterMissing, tcprouterVersion } from "../contenders/tcprouter.ts";
import { type StreamServer, freeDualPort, freeUdpPort, launchProbed, tcprouterUdpConfig, udpAnswers } from "../contenders/udp-launch.ts";
import { COMMON_HELP, fail, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { freeFixedPort } from "../runner/net.ts";
import { CLK_TCK, cpuTicks, ensureOwnFdLimit, softFdLimit, workDir } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { markdownTable, median, ratioOf, textTable, type Table } from "../report/table.ts";
import { DNS_ANSWER, checkDig, dnsAnswers, dnsmasqBin, runDnsperf, startDnsmasq, writeQueryFile } from "./workloads/dns.ts";
import { runUdpBulk } from "./workloads/udp-bulk.ts";
import { measureFlows, startUdpEcho } from "./workloads/udp-flows.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const CONTENDERS = ["direct", "tcprouter", "tcprouter-noresp", "nginx", "nginx-reuseport"] as const;
type ContenderName = (typeof CONTENDERS)[number];
const ROW_IDS = ["dns", "bulk", "flows"] as const;
type RowId = (typeof ROW_IDS)[number];

const ROWS: Record<RowId, { title: string; unit: string; cpuUnit: string; contenders: readonly ContenderName[] }> = {
  dns: { title: "DNS (dnsperf → dnsmasq)", unit: "queries/s", cpuUnit: "µs/query", contenders: CONTENDERS },
  bulk: { title: "bulk UDP (iperf3 -u)", unit: "datagrams/s", cpuUnit: "µs/datagram", contenders: ["direct", "tcprouter", "nginx", "nginx-reuseport"] },
  flows: { title: "idle flow RSS", unit: "KiB/flow", cpuUnit: "", contenders: ["tcprouter", "nginx", "nginx-reuseport"] },
};

/** The DNS flows' idle timeout (tcprouter `idle_timeout`, nginx `proxy_timeout`), as the issue asks of nginx. */
const DNS_IDLE_S = 10;
/** iperf3's UDP flow: the same. */
const BULK_IDLE_S = 10;
/** Idle flows of the memory row must outlive the measurement by far. */
const FLOW_IDLE_S = 600;
/** nginx has 9000 connections per worker and a UDP session takes two. */
const MAX_FLOWS = 4000;

export const HELP = `bun run bench/run.ts --suite udp [flags]
  DNS queries/s, bulk datagrams and memory per idle flow: direct, tcprouter UDP listeners, nginx stream UDP
  --rounds N            rounds, interleaved across contenders (default 3; smoke 1)
  --seconds N           dnsperf -l and iperf3 -t per sample (default 5; smoke 2)
  --clients N           dnsperf -c (default 10)
  --max-qps N           dnsperf -Q (default: none, as many as answered; dnsperf keeps 100 in flight)
  --rate R              iperf3 -u -b (default 200M)
  --length N            iperf3 -l, bytes per datagram (default 1400)
  --flows N             idle flows for the memory row (default 2000; smoke 300; at most ${MAX_FLOWS})
  --only ROW[,ROW]      ${ROW_IDS.join(",")} (default: all)
  --contenders A[,B]    ${CONTENDERS.join(",")} (default: all)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "udp",
    args,
    {
      seconds: { type: "string" },
      clients: { type: "string" },
      "max-qps": { type: "string" },
      rate: { type: "string" },
      length: { type: "string" },
      flows: { type: "string" },
      only: { type: "string" },
      contenders: { type: "string" },
      "tcprouter-cmd": { type: "string" },
    },
    HELP,
  );
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, values.smoke);
  const rate = values.rate ?? "200M";
  if (!/^\d+(\.\d+)?[KMG]?$/.test(rate)) fail(`--rate: expected a rate like 200M, got "${rate}"`);
  const flows = int("flows", values.flows, 2000, 300);
  if (flows > MAX_FLOWS) fail(`--flows: at most ${MAX_FLOWS}`);
  const length = int("length", values.length, 1400, 1400);
  if (length < 16 || length > 65_000) fail(`--length: expected 16..65000, got ${length}`);
  return {
    rounds: int("rounds", values.rounds, 3, 1),
    seconds: int("seconds", values.seconds, 5, 2),
    clients: int("clients", values.clients, 10, 10),
    maxQps: values["max-qps"] === undefined ? undefined : int("max-qps", values["max-qps"], 1, 1),
    rate,
    length,
    flows,
    rows: listOf("only", values.only, ROW_IDS),
    contenders: listOf("contenders", values.contenders, CONTENDERS),
    command: values["tcprouter-cmd"] ?? DEFAULT_TCPROUTER_CMD,
    tcprouterCmd: values["tcprouter-cmd"],
    smoke: values.smoke,
    json: values.json,
    markdown: values.markdown,
  };
}
type Options = ReturnType<typeof parseFlags>;

// ── Contenders ─────────────────────────────────────────────────────────────────────────────

/** The targets every contender sits in front of. */
interface Targets {
  dns: number;
  iperf: number;
  echo: number;
}

/** One contender's long-lived instance: where DNS and iperf3 go through it. */
interface Running {
  name: ContenderName;
  dnsPort: number;
  iperfPort: number;
  /** The process (tree) whose CPU is read; undefined for direct. */
  pid: number | undefined;
  stop(): Promise<void>;
}

interface Contender {
  name: ContenderName;
  version?: string;
  command: string;
  skip?: string | undefined;
  /** The long-lived instance (DNS and iperf3). */
  start(targets: Targets): Promise<Running>;
  /** A fresh instance in front of the echo server for one memory sample. */
  startFlows?(echoPort: number, tag: string): Promise<Instance>;
}

/** Starts a UDP-capable proxy for `servers`: tcprouter or nginx. */
type Starter = (tag: string, servers: StreamServer[], ready: () => Promise<boolean>) => Promise<Instance>;

function tcprouterStarter(command: string): Starter {
  return (tag, servers, ready) => {
    const file = join(workDir(), `${tag}.toml`);
    writeFileSync(file, tcprouterUdpConfig(servers));
    return launchProbed(tag, ["bash", "-c", `exec ${command} --config ${file} --log-level warn`], servers[0]!.port, ready, ROOT);
  };
}

function nginxStarter(reuseport: boolean): Starter {
  return (tag, servers, ready) => startNginxUdp(nginxBin()!, tag, servers, reuseport, ready);
}

const echoProbe = (port: number) => () => udpAnswers(port, Buffer.from("probe"), 300);

/** A proxy contender: the DNS + iperf3 instance, and fresh instances for the memory row. */
function proxy(name: ContenderName, starter: Starter, dnsResponses: number): Pick<Contender, "start" | "startFlows"> {
  return {
    async start(targets) {
      const dnsPort = await freeUdpPort();
      const iperfPort = await freeDualPort();
      const servers: StreamServer[] = [
        { port: dnsPort, target: targets.dns, udp: true, ...(dnsResponses ? { responses: dnsResponses } : {}), idleSeconds: DNS_IDLE_S },
        { port: iperfPort, target: targets.iperf, udp: true, idleSeconds: BULK_IDLE_S },
        { port: iperfPort, target: targets.iperf, udp: false, idleSeconds: BULK_IDLE_S },
      ];
      const instance = await starter(`${name}-udp`, servers, () => dnsAnswers(dnsPort));
      return { name, dnsPort, iperfPort, pid: instance.pid, stop: () => instance.stop() };
    },
    async startFlows(echoPort, tag) {
      const port = await freeUdpPort();
      return starter(tag, [{ port, target: echoPort, udp: true, idleSeconds: FLOW_IDLE_S }], echoProbe(port));
    },
  };
}

function nginxContender(name: ContenderName, nginx: { version: string; skip: string | undefined }, reuseport: boolean): Contender {
  return {
    name,
    version: nginx.version,
    skip: nginx.skip,
    command:
      `nginx -c nginx.conf -g "daemon off;" (worker_processes auto; stream: listen … udp${reuseport ? " reuseport" : ""}; ` +
      `DNS proxy_responses 1, proxy_timeout ${DNS_IDLE_S}s; iperf3 udp + tcp server blocks; flows row: proxy_timeout ${FLOW_IDLE_S}s)`,
    ...proxy(name, nginxStarter(reuseport), 1),
  };
}

async function contenders(opts: Options): Promise<Contender[]> {
  const nginx = await findNginx();
  const all: Record<ContenderName, Contender> = {
    direct: {
      name: "direct",
      command: "(dnsmasq and iperf3 -s themselves)",
      start: async (targets) => {
        const direct = directInstance(targets.dns);
        return { name: "direct", dnsPort: targets.dns, iperfPort: targets.iperf, pid: undefined, stop: direct.stop };
      },
    },
    tcprouter: {
      name: "tcprouter",
      version: await tcprouterVersion(),
      skip: tcprouterMissing(opts.tcprouterCmd),
      command:
        `${opts.command} --config udp.toml --log-level warn (protocol = "udp": DNS with responses = 1, idle_timeout = "${DNS_IDLE_S}s"; ` +
        `iperf3 with a TCP listener on the same port; flows row: idle_timeout = "${FLOW_IDLE_S}s")`,
      ...proxy("tcprouter", tcprouterStarter(opts.command), 1),
    },
    "tcprouter-noresp": {
      name: "tcprouter-noresp",
      skip: tcprouterMissing(opts.tcprouterCmd),
      command: `the same, DNS without responses (a flow per client port, idle_timeout = "${DNS_IDLE_S}s")`,
      ...proxy("tcprouter-noresp", tcprouterStarter(opts.command), 0),
    },
    nginx: nginxContender("nginx", nginx, false),
    "nginx-reuseport": nginxContender("nginx-reuseport", nginx, true),
  };
  return opts.contenders.map((name) => all[name]);
}

// ── Samples ────────────────────────────────────────────────────────────────────────────────

interface Sample {
  value: number;
  /** The proxy's CPU µs per query / per datagram; undefined for direct and the flows row. */
  cpuUs?: number;
  cpuTicks?: number;
  /** dns: average and p99 ms, lost queries; bulk: loss %; flows: RSS before and after. */
  detail: Record<string, number>;
}

/** Runs `work` and reads `pid`'s tree CPU (user + system ticks) around it. */
async function withCpu<T>(pid: number | undefined, work: () => Promise<T>): Promise<{ result: T; ticks: number | undefined }> {
  const before = pid === undefined ? undefined : cpuTicks(pid);
  const result = await work();
  if (before === undefined || pid === undefined) return { result, ticks: undefined };
  const after = cpuTicks(pid);
  return { result, ticks: after.user + after.system - before.user - before.system };
}

const usPer = (ticks: number | undefined, units: number) => (ticks === undefined ? undefined : (ticks / CLK_TCK / units) * 1e6);

async function sample(row: RowId, c: Contender, running: Running, targets: Targets, queryFile: string, opts: Options): Promise<Sample> {
  if (row === "dns") {
    const { result, ticks } = await withCpu(running.pid, () => runDnsperf(running.dnsPort, queryFile, opts.seconds, opts.clients, opts.maxQps));
    return {
      value: result.qps,
      cpuUs: usPer(ticks, result.completed),
      cpuTicks: ticks,
      detail: { avgMs: result.avgMs, p99Ms: result.p99Ms, lost: result.lost, sent: result.sent, completed: result.completed },
    };
  }
  if (row === "bulk") {
    const { result, ticks } = await withCpu(running.pid, () => runUdpBulk(running.iperfPort, targets.iperf, opts.seconds, opts.rate, opts.length));
    return {
      value: result.datagramsPerSecond,
      cpuUs: usPer(ticks, result.packets - result.lostPackets),
      cpuTicks: ticks,
      detail: { lossPercent: result.lossPercent, packets: result.packets, lostPackets: result.lostPackets, mbitReceived: result.mbitReceived },
    };
  }
  const instance = await c.startFlows!(targets.echo, `${c.name}-flows`);
  try {
    const s = await measureFlows(instance.pid!, instance.port, opts.flows);
    return { value: s.kibPerFlow, detail: { beforeKiB: s.beforeKiB, afterKiB: s.afterKiB, flows: s.flows } };
  } finally {
    await instance.stop();
  }
}

function fmtSample(row: RowId, s: Sample): string {
  const cpu = s.cpuUs === undefined ? "" : `, ${s.cpuUs.toFixed(2)} CPU ${ROWS[row].cpuUnit} (${s.cpuTicks} ticks)`;
  if (row === "dns")
    return `${Math.round(s.value)} queries/s, avg ${s.detail.avgMs!.toFixed(3)} ms, p99 ${s.detail.p99Ms!.toFixed(3)} ms, lost ${s.detail.lost}${cpu}`;
  if (row === "bulk") return `${Math.round(s.value)} datagrams/s, loss ${s.detail.lossPercent!.toFixed(2)} %${cpu}`;
  return `${s.value.toFixed(2)} KiB/flow (RSS ${s.detail.beforeKiB} → ${s.detail.afterKiB} KiB)`;
}

// ── Main ───────────────────────────────────────────────────────────────────────────────────

interface Cell {
  row: RowId;
  contender: ContenderName;
  samples: Sample[];
  errors: string[];
}

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  let rows = [...opts.rows];
  const missing: Record<string, string> = {};
  if (rows.includes("dns")) {
    for (const tool of ["dnsperf", "dig"]) if (!Bun.which(tool)) missing.dns = `${tool} not installed`;
    if (!dnsmasqBin()) missing.dns = "dnsmasq not installed";
  }
  if (rows.includes("bulk") && !Bun.which("iperf3")) missing.bulk = "iperf3 not installed";
  for (const [row, why] of Object.entries(missing)) say(`skip row ${row}: ${why}`);
  rows = rows.filter((row) => !(row in missing));
  if (rows.includes("flows")) {
    const needed = opts.flows + 1000;
    await ensureOwnFdLimit(needed);
    if (softFdLimit() < needed) fail(`open-file limit ${softFdLimit()} is too low for --flows ${opts.flows}`);
  }

  const list = await contenders(opts);
  for (const c of list) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const params = {
    rounds: opts.rounds,
    seconds: opts.seconds,
    clients: opts.clients,
    maxQps: opts.maxQps ?? "none",
    rate: opts.rate,
    length: opts.length,
    flows: opts.flows,
    rows,
    smoke: opts.smoke,
  };
  const dnsperfVersion = ["bash", "-c", "dnsperf -H 2>&1 | grep -m1 '^Version' || echo 'not installed'"];
  const meta = await collectMeta(list, params, {
    dnsmasq: dnsmasqBin() ? [dnsmasqBin()!, "--version"] : null,
    dnsperf: dnsperfVersion,
    iperf3: ["iperf3", "--version"],
    dig: ["dig", "-v"],
  });
  say(
    `bench: ${opts.rounds} round(s) of ${rows.join(",")} for ${list
      .filter((c) => !c.skip)
      .map((c) => c.name)
      .join(",")}`,
  );

  // the targets: dnsmasq, the port iperf3 -s -1 takes per sample, the echo server
  // below the ephemeral range: dnsmasq's bind fails on a port a connection left in TIME_WAIT
  const dnsmasq = rows.includes("dns") ? await startDnsmasq(dnsmasqBin()!, await freeFixedPort()) : undefined;
  const echo = rows.includes("flows") ? await startUdpEcho() : undefined;
  const targets: Targets = { dns: dnsmasq?.port ?? (await freeUdpPort()), iperf: await freeDualPort(), echo: echo?.port ?? 0 };
  const queryFile = writeQueryFile();

  const running = new Map<ContenderName, Running>();
  const failed = new Map<ContenderName, string>();
  for (const c of list.filter((x) => !x.skip)) {
    try {
      const r = await c.start(targets);
      running.set(c.name, r);
      if (rows.includes("dns")) await checkDig(r.dnsPort);
      const cpu = r.pid === undefined ? "" : `; CPU read from ${cpuTicks(r.pid).processes} process(es)`;
      say(`check ${c.name}: ${rows.includes("dns") ? `dig a.bench.test → ${DNS_ANSWER}` : "started"}${cpu}`);
    } catch (error) {
      failed.set(c.name, failure(error));
      say(`check ${c.name}: FAILED ${(error as Error).message}`);
    }
  }

  // warm-up, untimed: one second of dnsperf through each (the JIT, for tcprouter); not under --smoke
  if (rows.includes("dns") && !opts.smoke) {
    for (const [name, r] of running) if (!failed.has(name)) await runDnsperf(r.dnsPort, queryFile, 1, opts.clients, opts.maxQps).catch(() => {});
    say("warm-up done");
  }

  const cells: Cell[] = [];
  for (const row of rows)
    for (const name of ROWS[row].contenders) if (list.some((c) => c.name === name && !c.skip)) cells.push({ row, contender: name, samples: [], errors: [] });
  for (const cell of cells) if (failed.has(cell.contender)) cell.errors.push(`check failed: ${failed.get(cell.contender)}`);

  for (let round = 0; round < opts.rounds; round++) {
    for (const row of rows) {
      const names = ROWS[row].contenders.filter((name) => running.has(name) && !failed.has(name));
      for (const name of rotated(names, round)) {
        const cell = cells.find((x) => x.row === row && x.contender === name)!;
        const progress = (text: string) => say(roundLine(round, opts.rounds, row, 6, name, 10, text));
        try {
          const s = await sample(row, list.find((c) => c.name === name)!, running.get(name)!, targets, queryFile, opts);
          cell.samples.push(s);
          progress(fmtSample(row, s));
        } catch (error) {
          cell.errors.push(failure(error));
          progress(`FAILED ${(error as Error).message}`);
        }
      }
    }
  }
  for (const r of running.values()) await r.stop();
  echo?.close();
  await dnsmasq?.stop();

  const lines = summarize(cells);
  const targetsMet = targetLines(lines);
  const table = tableOf(lines);
  const errors = lines.flatMap((l) =>
    l.errors.length ? [`${l.median === null ? "FAILED" : "partly failed"}: ${l.contender} / ${l.row} (${l.errors.length}x): ${l.errors[0]}`] : [],
  );
  const footer = [TABLE_NOTE, ...targetsMet.map((t) => t.text), ...errors].join("\n");
  publish(
    {
      text: `\n${headerText(meta)}\n\n${textTable(table)}\n\n${footer}\n`,
      markdown: markdownTable(table),
      result: {
        ...meta,
        suite: "udp",
        note: TABLE_NOTE,
        results: lines,
        targets: targetsMet.map(({ text: _text, ...t }) => t),
        failedChecks: Object.fromEntries(failed),
      },
    },
    opts,
    "udp",
  );
  if (failed.size > 0 || lines.some((l) => l.median === null)) process.exitCode = 1;
}

// ── Summary and table ──────────────────────────────────────────────────────────────────────

interface Line {
  row: RowId;
  title: string;
  unit: string;
  contender: ContenderName;
  median: number | null;
  min: number | null;
  max: number | null;
  vsDirect: number | null;
  vsNginx: number | null;
  /** Median of each detail over rounds (dns: avgMs, p99Ms, lost; bulk: lossPercent; flows: beforeKiB, afterKiB). */
  details: Record<string, number | null>;
  cpu: { unit: string; median: number | null; vsNginx: number | null; usPerUnit: number[]; ticks: number[] } | null;
  samples: number[];
  sampleDetails: Record<string, number>[];
  errors: string[];
}

function summarize(cells: Cell[]): Line[] {
  const med = (row: RowId, name: ContenderName) => median(cells.find((c) => c.row === row && c.contender === name)?.samples.map((s) => s.value) ?? []);
  const cpuMed = (row: RowId, name: ContenderName) =>
    median(cells.find((c) => c.row === row && c.contender === name)?.samples.flatMap((s) => (s.cpuUs === undefined ? [] : [s.cpuUs])) ?? []);
  return cells.map((c) => {
    const values = c.samples.map((s) => s.value);
    const m = median(values);
    const keys = [...new Set(c.samples.flatMap((s) => Object.keys(s.detail)))];
    const cpuSamples = c.samples.flatMap((s) => (s.cpuUs === undefined ? [] : [s.cpuUs]));
    const cpuMedian = median(cpuSamples);
    return {
      row: c.row,
      title: ROWS[c.row].title,
      unit: ROWS[c.row].unit,
      contender: c.contender,
      median: m,
      min: values.length ? Math.min(...values) : null,
      max: values.length ? Math.max(...values) : null,
      vsDirect: ratioOf(m, med(c.row, "direct")),
      vsNginx: ratioOf(m, med(c.row, "nginx")),
      details: Object.fromEntries(keys.map((k) => [k, median(c.samples.flatMap((s) => (s.detail[k] === undefined ? [] : [s.detail[k]!])))])),
      cpu:
        c.row === "flows" || c.contender === "direct"
          ? null
          : {
              unit: ROWS[c.row].cpuUnit,
              median: cpuMedian,
              vsNginx: ratioOf(cpuMedian, cpuMed(c.row, "nginx")),
              usPerUnit: cpuSamples,
              ticks: c.samples.flatMap((s) => (s.cpuTicks === undefined ? [] : [s.cpuTicks])),
            },
      samples: values,
      sampleDetails: c.samples.map((s) => s.detail),
      errors: c.errors,
    };
  });
}

interface Target {
  text: string;
  name: string;
  ratio: number | null;
  met: boolean | null;
}

/**
 * The issue's targets (queries/s ≥ 1.0 × nginx, KiB/flow ≤ nginx's), each also against
 * nginx-reuseport, and the CPU ratios (reported, no target).
 */
function targetLines(lines: Line[]): Target[] {
  const medianOf = (row: RowId, name: ContenderName) => lines.find((l) => l.row === row && l.contender === name)?.median ?? null;
  const cpuOf = (row: RowId, name: ContenderName) => lines.find((l) => l.row === row && l.contender === name)?.cpu?.median ?? null;
  const has = (row: RowId, name: ContenderName) => lines.some((l) => l.row === row && l.contender === name);
  const out: Target[] = [];
  for (const nginx of ["nginx", "nginx-reuseport"] as const) {
    for (const tcprouter of ["tcprouter", "tcprouter-noresp"] as const) {
      if (!has("dns", tcprouter) || !has("dns", nginx)) continue;
      const ratio = ratioOf(medianOf("dns", tcprouter), medianOf("dns", nginx));
      const met = ratio === null ? null : ratio >= 1.0;
      const name = `dns queries/s ${tcprouter} / ${nginx} ≥ 1.0`;
      out.push({ name, ratio, met, text: `target dns: ${tcprouter} / ${nginx} queries/s ≥ 1.0: ${verdict(ratio, met)}` });
      const cpu = ratioOf(cpuOf("dns", tcprouter), cpuOf("dns", nginx));
      out.push({
        name: `dns CPU µs/query ${tcprouter} / ${nginx}`,
        ratio: cpu,
        met: null,
        text: `  CPU per query ${tcprouter} / ${nginx}: ${fmt3(cpu)} (lower is better; no target)`,
      });
    }
    if (has("bulk", "tcprouter") && has("bulk", nginx)) {
      const cpu = ratioOf(cpuOf("bulk", "tcprouter"), cpuOf("bulk", nginx));
      out.push({
        name: `bulk CPU µs/datagram tcprouter / ${nginx}`,
        ratio: cpu,
        met: null,
        text: `CPU per datagram tcprouter / ${nginx}: ${fmt3(cpu)} (lower is better; no target)`,
      });
    }
    if (has("flows", "tcprouter") && has("flows", nginx)) {
      const ratio = ratioOf(medianOf("flows", "tcprouter"), medianOf("flows", nginx));
      const met = ratio === null ? null : ratio <= 1.0;
      out.push({
        name: `flow KiB tcprouter / ${nginx} ≤ 1.0`,
        ratio,
        met,
        text: `target flows: tcprouter KiB/flow ≤ ${nginx}'s (ratio ≤ 1.0): ${verdict(ratio, met)}`,
      });
    }
  }
  return out;
}

const fmt3 = (x: number | null) => (x === null ? "not measured" : x.toFixed(3));
const verdict = (ratio: number | null, met: boolean | null) => (ratio === null ? "not measured" : `${ratio.toFixed(3)}, ${met ? "met" : "NOT met"}`);

const TABLE_NOTE =
  "median over rounds; vs direct / vs nginx: median ÷ that contender's median in the same row (higher is better for queries/s and\n" +
  "datagrams/s, lower for KiB/flow and CPU); CPU: user + system time of the proxy's processes (nginx: master and workers,\n" +
  `/proc/PID/stat, ${1000 / CLK_TCK} ms ticks) per query completed / per datagram received; latency from dnsperf (p99 from its -v lines);\n` +
  "lost: dnsperf's lost queries (median); bulk: loss % at the fixed iperf3 rate.";

function fmtValue(x: number | null, unit: string): string {
  if (x === null) return "-";
  return unit === "KiB/flow" ? x.toFixed(2) : Math.round(x).toLocaleString("en-US");
}

const fmtRatio = (x: number | null) => (x === null ? "-" : `${x.toFixed(2)}x`);
const fmtMs = (x: number | null | undefined) => (x === null || x === undefined ? "-" : x.toFixed(3));

/** row | contender | median | min..max | vs direct | vs nginx | avg ms | p99 ms | lost | CPU | CPU vs nginx. */
function tableOf(lines: Line[]): Table {
  const rows = lines.map((l) => {
    const value = l.median === null ? "FAILED" : `${fmtValue(l.median, l.unit)} ${l.unit}`;
    const range = l.min === null ? "-" : `${fmtValue(l.min, l.unit)}..${fmtValue(l.max, l.unit)}`;
    const lost = l.row === "dns" ? fmtValue(l.details.lost ?? null, "") : l.row === "bulk" ? `${l.details.lossPercent?.toFixed(2) ?? "-"} %` : "-";
    const cpu = l.cpu?.median == null ? "-" : `${l.cpu.median.toFixed(2)} ${l.cpu.unit}`;
    return [
      l.title,
      l.contender,
      value,
      range,
      fmtRatio(l.vsDirect),
      fmtRatio(l.vsNginx),
      fmtMs(l.details.avgMs),
      fmtMs(l.details.p99Ms),
      lost,
      cpu,
      fmtRatio(l.cpu?.vsNginx ?? null),
    ];
  });
  const head = ["row", "contender", "median", "min..max", "vs direct", "vs nginx", "avg ms", "p99 ms", "lost", "CPU", "CPU vs nginx"];
  return { head, rows, text: 2, groups: lines.map((l) => l.row) };
}
