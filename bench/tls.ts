/**
 * TLS routing bench (issue 5): new TLS sessions per second through SNI passthrough, tcprouter
 * vs HAProxy routing on `req.ssl_sni`, to the same TLS server; and bulk throughput of one TLS
 * session through a passthrough (sni) listener vs a plain forwarded (tcp) listener.
 *
 *   bun run bench/tls.ts [--rounds N] [--seconds N] [--bytes N] [--concurrency N] [--only ROW[,ROW]]
 *                        [--contenders A[,B]] [--tcprouter-cmd CMD] [--smoke] [--json]
 *
 * Targets: handshakes through tcprouter ≥ 1.0 × HAProxy; bulk through an sni listener within
 * 10 % of a tcp listener (≥ 0.9 ×).
 *
 * Peers (bench/tls-peers.ts, one process each): the TLS server (Bun.listen, the test
 * certificate for db.example.com, EC P-256, TLS 1.3) and, per sample, a load generator.
 * Contenders, each one process for the whole run, all on 127.0.0.1:
 * - direct: the TLS server itself.
 * - tcprouter: `--config` with one sni listener, route db.example.com → the server, no default.
 * - tcprouter-2w: the same with `--workers 2` (HAProxy uses every core by default).
 * - haproxy: `tcp-request inspect-delay 5s`, accept once `req.ssl_hello_type 1`,
 *   `use_backend tls if { req.ssl_sni -i db.example.com }`, no default backend.
 * - bun-floor: bench/bun-floor.ts, a bare Bun forwarder that dials on the first bytes: Bun's own cost.
 * - tcprouter-tcp: `--listen … --to …`, plain forwarding (the bulk rows' baseline).
 * Before timing, each passes a verified session to db.example.com (certificate CN, PONG, 1 MiB
 * each way by sha256); the SNI routers must also refuse nope.example.com.
 *
 * Rows:
 * - handshakes: `--concurrency` loops for `--seconds`, each: connect, full TLS 1.3 handshake
 *   (no resumption, no certificate check in the loop), PING/PONG, close. sessions/s.
 * - bulk-up, bulk-down: one TLS session moving `--bytes` client → server / server → client.
 *   Gbit/s of payload.
 * Rounds interleave the contenders, the start rotated each round; the table has medians,
 * min..max and ratios of medians. The load generator, the TLS server and the contender share
 * the machine's cores: read ratios, not absolute numbers.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, findHaproxy, haproxyHead, launch, type Instance } from "./contenders.ts";
import { DEFAULT_TCPROUTER_CMD, listOf, parseBenchFlags, positiveInt, say } from "./flags.ts";
import { collectMeta, headerText } from "./meta.ts";
import { HOST, freePort } from "./net.ts";
import { StoppingError, descendants, isStopping, run, versionOf, workDir, runBench } from "./procs.ts";
import { median, writeResults } from "./table.ts";

const CONTENDERS = ["direct", "tcprouter", "tcprouter-2w", "haproxy", "bun-floor", "tcprouter-tcp"] as const;
type ContenderName = (typeof CONTENDERS)[number];

interface Row {
  id: "handshakes" | "bulk-up" | "bulk-down";
  title: string;
  unit: string;
  contenders: readonly ContenderName[];
  /** The ratio the target is about: [numerator, denominator, at least]. */
  target: [ContenderName, ContenderName, number];
}

const ROWS: Row[] = [
  { id: "handshakes", title: "new TLS sessions (SNI routed)", unit: "sessions/s", contenders: ["direct", "tcprouter", "tcprouter-2w", "haproxy", "bun-floor"], target: ["tcprouter", "haproxy", 1.0] },
  { id: "bulk-up", title: "bulk, one TLS session, client → server", unit: "Gbit/s", contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"], target: ["tcprouter", "tcprouter-tcp", 0.9] },
  { id: "bulk-down", title: "bulk, one TLS session, server → client", unit: "Gbit/s", contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"], target: ["tcprouter", "tcprouter-tcp", 0.9] },
];

const SERVER_NAME = "db.example.com";

const HELP = `bun run bench/tls.ts [flags]
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --seconds N           handshakes: seconds per sample (default 5; smoke 1)
  --concurrency N       handshakes: sessions in flight (default 32)
  --bytes N             bulk: bytes per sample (default 1073741824; smoke 67108864)
  --only ROW[,ROW]      ${ROWS.map((row) => row.id).join(",")} (default: all)
  --contenders A[,B]    ${CONTENDERS.join(",")} (default: all)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
  --smoke               tiny counts
  --json                print the JSON result on stdout (the table goes to stderr)
`;

function parseFlags() {
  const values = parseBenchFlags(
    { seconds: { type: "string" }, concurrency: { type: "string" }, bytes: { type: "string" }, contenders: { type: "string" } },
    HELP,
  );
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, values.smoke);
  const only = listOf("only", values.only, ROWS.map((row) => row.id));
  return {
    rounds: int("rounds", values.rounds, 5, 1),
    seconds: int("seconds", values.seconds, 5, 1),
    concurrency: int("concurrency", values.concurrency, 32, 32),
    bytes: int("bytes", values.bytes, 1024 * 1024 * 1024, 64 * 1024 * 1024),
    rows: ROWS.filter((row) => only.includes(row.id)),
    contenders: listOf("contenders", values.contenders, CONTENDERS),
    command: values["tcprouter-cmd"] ?? DEFAULT_TCPROUTER_CMD,
    smoke: values.smoke,
    json: values.json,
  };
}
type Options = ReturnType<typeof parseFlags>;


// ── Processes ──────────────────────────────────────────────────────────────────────────────

/** The command that runs bench/tls-peers.ts. */
const PEERS = [Bun.which("bun") ?? process.execPath, join(ROOT, "bench/tls-peers.ts")];

/** Runs a tls-peers.ts client role; returns its JSON line. Throws with its stderr when it fails. */
async function peer(role: string, port: number, args: string[], timeoutMs: number): Promise<Record<string, number | string | boolean>> {
  const result = await run([...PEERS, role, "--port", String(port), ...args], timeoutMs);
  const line = result.stdout.trim().split("\n").at(-1) ?? "";
  if (result.code !== 0 || !line.startsWith("{")) {
    throw new Error(`${role} on port ${port}: exit ${result.code}${result.timedOut ? " (timed out)" : ""}: ${(result.stderr.trim().split("\n").at(-1) ?? "") || line}`);
  }
  return JSON.parse(line);
}

function tcprouterConfig(port: number, serverPort: number): string {
  const file = join(workDir(), `tcprouter-sni-${port}.toml`);
  writeFileSync(
    file,
    `[[listeners]]
listen = "${HOST}:${port}"
mode = "sni"
[[listeners.routes]]
server_names = ["${SERVER_NAME}"]
backend = "tls"
[backends.tls]
targets = ["${HOST}:${serverPort}"]
`,
  );
  return file;
}

function haproxyConfig(port: number, serverPort: number): string {
  const file = join(workDir(), `haproxy-sni-${port}.cfg`);
  writeFileSync(
    file,
    `${haproxyHead()}
frontend sni
  bind ${HOST}:${port}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend tls if { req.ssl_sni -i ${SERVER_NAME} }

backend tls
  server s1 ${HOST}:${serverPort}
`,
  );
  return file;
}

interface Contender {
  name: ContenderName;
  command: string;
  skip?: string;
  /** SNI routers must refuse a name they have no route for. */
  routesByName: boolean;
  start(serverPort: number): Promise<Instance>;
}

/** tcprouter with one sni listener (`extra`: more flags, e.g. --workers 2). */
function sniRouter(name: ContenderName, command: string, extra: string): Contender {
  return {
    name,
    command: `${command} --config sni.toml${extra} --log-level warn (mode = "sni", one route)`,
    routesByName: true,
    async start(serverPort) {
      const port = await freePort();
      return launch(name, ["bash", "-c", `exec ${command} --config ${tcprouterConfig(port, serverPort)}${extra} --log-level warn`], port, ROOT);
    },
  };
}

function contenders(opts: Options): Contender[] {
  const haproxy = findHaproxy();
  const all: Record<ContenderName, Contender> = {
    direct: { name: "direct", command: "(the TLS server itself)", routesByName: false, start: async (serverPort) => ({ port: serverPort, pid: undefined, stop: async () => {} }) },
    tcprouter: sniRouter("tcprouter", opts.command, ""),
    "tcprouter-2w": sniRouter("tcprouter-2w", opts.command, " --workers 2"),
    haproxy: {
      name: "haproxy",
      command: "haproxy -f sni.cfg -db (inspect-delay 5s, req.ssl_sni, nbthread default)",
      ...(haproxy === null ? { skip: "haproxy not installed" } : {}),
      routesByName: true,
      async start(serverPort) {
        const port = await freePort();
        return launch("haproxy-sni", [haproxy!, "-f", haproxyConfig(port, serverPort), "-db"], port);
      },
    },
    "bun-floor": {
      name: "bun-floor",
      command: "bun bench/bun-floor.ts --dial-on-data (connects on the first bytes; no ClientHello parsing, no routing): Bun's own cost",
      routesByName: false,
      async start(serverPort) {
        const port = await freePort();
        return launch("bun-floor", [process.execPath, "bench/bun-floor.ts", "--dial-on-data", String(port), "round-robin", String(serverPort)], port, ROOT);
      },
    },
    "tcprouter-tcp": {
      name: "tcprouter-tcp",
      command: `${opts.command} --listen … --to … --log-level warn (plain forwarding)`,
      routesByName: false,
      async start(serverPort) {
        const port = await freePort();
        return launch("tcprouter-tcp", ["bash", "-c", `exec ${opts.command} --listen ${HOST}:${port} --to ${HOST}:${serverPort} --log-level warn`], port, ROOT);
      },
    },
  };
  return opts.contenders.map((name) => all[name]);
}

// ── Samples ────────────────────────────────────────────────────────────────────────────────

/** User + system CPU seconds of a process and its descendants, from /proc (10 ms ticks). */
function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const one of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${one}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // gone
    }
  }
  return ticks / 100;
}

/**
 * One sample: the row's figure, and the contender's CPU time per unit of work (µs per session,
 * ms per GiB; null for direct), which moves much less with other load on the machine.
 */
async function sample(row: Row, instance: Instance, opts: Options): Promise<{ value: number; cpu: number | null }> {
  const cpuBefore = instance.pid === undefined ? 0 : cpuSeconds(instance.pid);
  const cpuSince = (units: number, scale: number) => (instance.pid === undefined ? null : ((cpuSeconds(instance.pid) - cpuBefore) / units) * scale);
  if (row.id === "handshakes") {
    const out = await peer("handshakes", instance.port, ["--servername", SERVER_NAME, "--concurrency", String(opts.concurrency), "--seconds", String(opts.seconds)], opts.seconds * 1000 + 30_000);
    if (Number(out.errors) > 0) throw new Error(`${out.errors} sessions failed (first: ${out.firstError})`);
    return { value: (Number(out.sessions) / Number(out.ms)) * 1000, cpu: cpuSince(Number(out.sessions), 1e6) };
  }
  const direction = row.id === "bulk-up" ? "up" : "down";
  const out = await peer("bulk", instance.port, ["--servername", SERVER_NAME, "--bytes", String(opts.bytes), "--direction", direction], 120_000);
  return { value: (Number(out.bytes) * 8) / (Number(out.ms) / 1000) / 1e9, cpu: cpuSince(Number(out.bytes) / 2 ** 30, 1e3) };
}

async function check(contender: Contender, port: number): Promise<void> {
  await peer("check", port, ["--servername", SERVER_NAME], 30_000);
  if (!contender.routesByName) return;
  const refused = await peer("check", port, ["--servername", "nope.example.com"], 30_000).then(
    () => false,
    () => true,
  );
  if (!refused) throw new Error("a session for nope.example.com got through: the router does not route by name");
}

// ── Main ───────────────────────────────────────────────────────────────────────────────────

interface Result {
  row: string;
  title: string;
  unit: string;
  samples: Partial<Record<ContenderName, number[]>>;
  /** The contender's CPU per unit (µs/session, ms/GiB), per sample. */
  cpu: Partial<Record<ContenderName, number[]>>;
  errors: string[];
}

async function main(): Promise<void> {
  const opts = parseFlags();
  const list = contenders(opts);
  for (const c of list) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const haproxyBin = findHaproxy();
  const meta = await collectMeta([], {
    rounds: opts.rounds,
    seconds: opts.seconds,
    concurrency: opts.concurrency,
    bytes: opts.bytes,
    rows: opts.rows.map((row) => row.id),
    server: "bench/tls-peers.ts server (Bun.listen tls, EC P-256, TLS 1.3)",
  });
  for (const tool of ["redis-server", "redis-benchmark", "iperf3"]) delete meta.versions[tool];
  meta.versions.haproxy = haproxyBin ? await versionOf([haproxyBin, "-v"]) : "not installed";
  meta.versions.openssl = await versionOf(["openssl", "version"]);
  meta.contenders = Object.fromEntries(list.map((c) => [c.name, c.skip ? { command: c.command, skip: c.skip } : { command: c.command }]));

  const serverPort = await freePort();
  await launch("tls-server", [...PEERS, "server", "--port", String(serverPort)], serverPort, ROOT);
  const running = new Map<ContenderName, Instance>();
  const failed = new Map<ContenderName, string>();
  for (const contender of list.filter((c) => !c.skip)) {
    try {
      const instance = await contender.start(serverPort);
      running.set(contender.name, instance);
      await check(contender, instance.port);
      say(`check ${contender.name}: verified session to ${SERVER_NAME}, PONG, 1 MiB each way${contender.routesByName ? "; nope.example.com refused" : ""}`);
    } catch (error) {
      if (error instanceof StoppingError || isStopping()) throw new StoppingError();
      failed.set(contender.name, (error as Error).message.split("\n")[0]!);
      say(`check ${contender.name}: FAILED ${(error as Error).message}`);
    }
  }

  // Warm-up, untimed: one second of handshakes through every contender (the JIT, for the Bun ones).
  for (const [name, instance] of running) if (!failed.has(name)) await sample(ROWS[0]!, instance, { ...opts, seconds: 1 }).catch(() => {});

  const results: Result[] = opts.rows.map((row) => ({ row: row.id, title: row.title, unit: row.unit, samples: {}, cpu: {}, errors: [] }));
  for (let round = 0; round < opts.rounds; round++) {
    for (const [i, row] of opts.rows.entries()) {
      const names = row.contenders.filter((name) => running.has(name) && !failed.has(name));
      const order = names.map((_, k) => names[(k + round) % names.length]!);
      for (const name of order) {
        const result = results[i]!;
        try {
          const { value, cpu } = await sample(row, running.get(name)!, opts);
          (result.samples[name] ??= []).push(value);
          if (cpu !== null) (result.cpu[name] ??= []).push(cpu);
          say(`round ${round + 1}/${opts.rounds}  ${row.id.padEnd(10)} ${name.padEnd(13)} ${format(value, row.unit)}${cpu === null ? "" : `, ${formatCpu(cpu, row)} CPU`}`);
        } catch (error) {
          if (error instanceof StoppingError || isStopping()) throw new StoppingError();
          result.errors.push(`${name}: ${(error as Error).message.split("\n")[0]}`);
          say(`round ${round + 1}/${opts.rounds}  ${row.id.padEnd(10)} ${name.padEnd(13)} FAILED ${(error as Error).message}`);
        }
      }
    }
  }
  for (const instance of running.values()) await instance.stop();

  const summary = results.map((result) => {
    const row = opts.rows.find((r) => r.id === result.row)!;
    const medians = Object.fromEntries(row.contenders.map((name) => [name, median(result.samples[name] ?? [])])) as Record<ContenderName, number | null>;
    const [top, bottom, least] = row.target;
    const ratio = medians[top] !== null && medians[bottom] ? medians[top]! / medians[bottom]! : null;
    return { ...result, medians, target: { ratio: `${top} / ${bottom}`, atLeast: least, value: ratio, met: ratio !== null && ratio >= least } };
  });
  const table = renderTable(summary, opts.rows);
  const footer = [
    ...summary.map((s) => `target ${s.row}: ${s.target.ratio} ≥ ${s.target.atLeast}: ${s.target.value === null ? "not measured" : `${s.target.value.toFixed(3)}, ${s.target.met ? "met" : "NOT met"}`}`),
    ...[...failed].map(([name, message]) => `failed check: ${name}: ${message}`),
    ...summary.flatMap((s) => s.errors.map((error) => `error: ${s.row} ${error}`)),
  ].join("\n");
  const out = opts.json ? process.stderr : process.stdout;
  out.write(`\n${headerText(meta)}\n\n${table}\n${footer}\n`);
  const result = { ...meta, suite: "tls", results: summary, failedChecks: Object.fromEntries(failed) };
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  writeResults(result, opts.smoke, "tls");
  if (failed.size > 0 || summary.some((s) => s.errors.length > 0)) process.exitCode = 1;
}

function formatCpu(value: number | null, row: Row): string {
  if (value === null) return "-";
  return row.id === "handshakes" ? `${value.toFixed(0)} µs/session` : `${value.toFixed(0)} ms/GiB`;
}

function format(value: number | null, unit: string): string {
  if (value === null) return "-";
  return unit === "Gbit/s" ? `${value.toFixed(2)} ${unit}` : `${Math.round(value).toLocaleString("en-US")} ${unit}`;
}

function renderTable(summary: (Result & { medians: Record<ContenderName, number | null> })[], rows: Row[]): string {
  const head = ["row", "contender", "median", "min..max", "vs direct", "vs baseline", "contender CPU"];
  const lines: string[][] = [];
  for (const s of summary) {
    const row = rows.find((r) => r.id === s.row)!;
    const baseline = row.target[1];
    for (const name of row.contenders) {
      const xs = s.samples[name] ?? [];
      const value = s.medians[name];
      const ratio = (other: number | null) => (value === null || !other ? "-" : (value / other).toFixed(3));
      const range = xs.length === 0 ? "-" : `${format(Math.min(...xs), row.unit).split(" ")[0]}..${format(Math.max(...xs), row.unit).split(" ")[0]}`;
      lines.push([
        `${s.row} (${row.unit})`,
        name,
        value === null ? "FAILED" : format(value, row.unit),
        range,
        ratio(s.medians.direct),
        name === baseline ? `(${baseline})` : ratio(s.medians[baseline]),
        formatCpu(median(s.cpu[name] ?? []), row),
      ]);
    }
  }
  const widths = head.map((_, i) => Math.max(...[head, ...lines].map((line) => line[i]!.length)));
  const fmt = (line: string[]) => line.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  const note =
    "median over rounds; vs baseline: HAProxy for handshakes, tcprouter-tcp (plain forwarding) for bulk;\n" +
    "contender CPU: user + system time of the contender's processes per session / per GiB (median; 10 ms ticks)";
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(fmt), "", note].join("\n");
}

await runBench(main);
