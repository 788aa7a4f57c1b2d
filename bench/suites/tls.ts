/**
 * TLS routing bench (issue 5): new TLS sessions per second through SNI passthrough, tcprouter
 * vs HAProxy routing on `req.ssl_sni`, to the same TLS server; and bulk throughput of one TLS
 * session through a passthrough (sni) listener vs a plain forwarded (tcp) listener.
 *
 *   bun run bench/run.ts --suite tls [--rounds N] [--seconds N] [--bytes N] [--concurrency N] [--only ROW[,ROW]]
 *                        [--contenders A[,B]] [--tcprouter-cmd CMD] [--smoke] [--json] [--markdown]
 *
 * Targets: handshakes through tcprouter ≥ 1.0 × HAProxy; bulk through an sni listener within
 * 10 % of a tcp listener (≥ 0.9 ×).
 *
 * Peers (bench/contenders/tls-peers.ts, one process each): the TLS server (Bun.listen, the test
 * certificate for db.example.com, EC P-256, TLS 1.3) and, per sample, a load generator.
 * Contenders, each one process for the whole run, all on 127.0.0.1:
 * - direct: the TLS server itself.
 * - tcprouter: `--config` with one sni listener, route db.example.com → the server, no default.
 * - tcprouter-2w: the same with `--workers 2` (HAProxy uses every core by default).
 * - haproxy: `tcp-request inspect-delay 5s`, accept once `req.ssl_hello_type 1`,
 *   `use_backend tls if { req.ssl_sni -i db.example.com }`, no default backend.
 * - bun-floor: bench/contenders/bun-floor.ts, a bare Bun forwarder that dials on the first bytes: Bun's own cost.
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
import { join } from "node:path";
import { HAPROXY_MISSING, findHaproxy, haproxyHead, startHaproxy } from "../contenders/haproxy.ts";
import { ROOT, bunFloorCommand, directInstance, launch, startBunFloor, type Instance } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, startForward, startWithConfig } from "../contenders/tcprouter.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { HOST, freePort } from "../runner/net.ts";
import { cpuSeconds, run } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { markdownTable, median, ratioOf, textTable, type Table } from "../report/table.ts";

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
  {
    id: "handshakes",
    title: "new TLS sessions (SNI routed)",
    unit: "sessions/s",
    contenders: ["direct", "tcprouter", "tcprouter-2w", "haproxy", "bun-floor"],
    target: ["tcprouter", "haproxy", 1.0],
  },
  {
    id: "bulk-up",
    title: "bulk, one TLS session, client → server",
    unit: "Gbit/s",
    contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"],
    target: ["tcprouter", "tcprouter-tcp", 0.9],
  },
  {
    id: "bulk-down",
    title: "bulk, one TLS session, server → client",
    unit: "Gbit/s",
    contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"],
    target: ["tcprouter", "tcprouter-tcp", 0.9],
  },
];

const SERVER_NAME = "db.example.com";

export const HELP = `bun run bench/run.ts --suite tls [flags]
  new TLS sessions/s through SNI passthrough, and bulk through one passthrough session
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --seconds N           handshakes: seconds per sample (default 5; smoke 1)
  --concurrency N       handshakes: sessions in flight (default 32)
  --bytes N             bulk: bytes per sample (default 1073741824; smoke 67108864)
  --only ROW[,ROW]      ${ROWS.map((row) => row.id).join(",")} (default: all)
  --contenders A[,B]    ${CONTENDERS.join(",")} (default: all)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "tls",
    args,
    {
      seconds: { type: "string" },
      concurrency: { type: "string" },
      bytes: { type: "string" },
      only: { type: "string" },
      contenders: { type: "string" },
      "tcprouter-cmd": { type: "string" },
    },
    HELP,
  );
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, values.smoke);
  const only = listOf(
    "only",
    values.only,
    ROWS.map((row) => row.id),
  );
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
    markdown: values.markdown,
  };
}
type Options = ReturnType<typeof parseFlags>;

// ── Processes ──────────────────────────────────────────────────────────────────────────────

/** The command that runs bench/contenders/tls-peers.ts. */
const PEERS = [process.execPath, join(ROOT, "bench/contenders/tls-peers.ts")];

/** Runs a tls-peers.ts client role; returns its JSON line. Throws with its stderr when it fails. */
async function peer(role: string, port: number, args: string[], timeoutMs: number): Promise<Record<string, number | string | boolean>> {
  const result = await run([...PEERS, role, "--port", String(port), ...args], timeoutMs);
  const line = result.stdout.trim().split("\n").at(-1) ?? "";
  if (result.code !== 0 || !line.startsWith("{")) {
    throw new Error(
      `${role} on port ${port}: exit ${result.code}${result.timedOut ? " (timed out)" : ""}: ${(result.stderr.trim().split("\n").at(-1) ?? "") || line}`,
    );
  }
  return JSON.parse(line);
}

function tcprouterConfig(port: number, serverPort: number): string {
  return `[[listeners]]
listen = "${HOST}:${port}"
mode = "sni"
[[listeners.routes]]
server_names = ["${SERVER_NAME}"]
backend = "tls"
[backends.tls]
targets = ["${HOST}:${serverPort}"]
`;
}

function haproxyConfig(port: number, serverPort: number): string {
  return `${haproxyHead()}
frontend sni
  bind ${HOST}:${port}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend tls if { req.ssl_sni -i ${SERVER_NAME} }

backend tls
  server s1 ${HOST}:${serverPort}
`;
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
    start: (serverPort) => startWithConfig(command, name, (port) => tcprouterConfig(port, serverPort), extra),
  };
}

function contenders(opts: Options): Contender[] {
  const haproxy = findHaproxy();
  const all: Record<ContenderName, Contender> = {
    direct: { name: "direct", command: "(the TLS server itself)", routesByName: false, start: async (serverPort) => directInstance(serverPort) },
    tcprouter: sniRouter("tcprouter", opts.command, ""),
    "tcprouter-2w": sniRouter("tcprouter-2w", opts.command, " --workers 2"),
    haproxy: {
      name: "haproxy",
      command: "haproxy -f sni.cfg -db (inspect-delay 5s, req.ssl_sni, nbthread default)",
      ...(haproxy === null ? { skip: HAPROXY_MISSING } : {}),
      routesByName: true,
      start: (serverPort) => startHaproxy(haproxy!, "haproxy-sni", (port) => haproxyConfig(port, serverPort)),
    },
    "bun-floor": {
      name: "bun-floor",
      command: bunFloorCommand("--dial-on-data (connects on the first bytes; no ClientHello parsing, no routing): Bun's own cost"),
      routesByName: false,
      start: async (serverPort) => startBunFloor("bun-floor", await freePort(), "round-robin", [serverPort], true),
    },
    "tcprouter-tcp": {
      name: "tcprouter-tcp",
      command: `${opts.command} --listen … --to … --log-level warn (plain forwarding)`,
      routesByName: false,
      start: (serverPort) => startForward(opts.command, serverPort, "tcprouter-tcp"),
    },
  };
  return opts.contenders.map((name) => all[name]);
}

// ── Samples ────────────────────────────────────────────────────────────────────────────────

/**
 * One sample: the row's figure, and the contender's CPU time per unit of work (µs per session,
 * ms per GiB; null for direct), which moves much less with other load on the machine.
 */
async function sample(row: Row, instance: Instance, opts: Options): Promise<{ value: number; cpu: number | null }> {
  const cpuBefore = instance.pid === undefined ? 0 : cpuSeconds(instance.pid);
  const cpuSince = (units: number, scale: number) => (instance.pid === undefined ? null : ((cpuSeconds(instance.pid) - cpuBefore) / units) * scale);
  if (row.id === "handshakes") {
    const out = await peer(
      "handshakes",
      instance.port,
      ["--servername", SERVER_NAME, "--concurrency", String(opts.concurrency), "--seconds", String(opts.seconds)],
      opts.seconds * 1000 + 30_000,
    );
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

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  const list = contenders(opts);
  for (const c of list) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const haproxyBin = findHaproxy();
  const params = {
    rounds: opts.rounds,
    seconds: opts.seconds,
    concurrency: opts.concurrency,
    bytes: opts.bytes,
    rows: opts.rows.map((row) => row.id),
    server: "bench/contenders/tls-peers.ts server (Bun.listen tls, EC P-256, TLS 1.3)",
  };
  const meta = await collectMeta(list, params, { haproxy: haproxyBin ? [haproxyBin, "-v"] : null, openssl: ["openssl", "version"] });

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
      failed.set(contender.name, failure(error));
      say(`check ${contender.name}: FAILED ${(error as Error).message}`);
    }
  }

  // Warm-up, untimed: one second of handshakes through every contender (the JIT, for the Bun ones).
  for (const [name, instance] of running) if (!failed.has(name)) await sample(ROWS[0]!, instance, { ...opts, seconds: 1 }).catch(() => {});

  const results: Result[] = opts.rows.map((row) => ({ row: row.id, title: row.title, unit: row.unit, samples: {}, cpu: {}, errors: [] }));
  for (let round = 0; round < opts.rounds; round++) {
    for (const [i, row] of opts.rows.entries()) {
      const names = row.contenders.filter((name) => running.has(name) && !failed.has(name));
      for (const name of rotated(names, round)) {
        const result = results[i]!;
        const progress = (text: string) => say(roundLine(round, opts.rounds, row.id, 10, name, 13, text));
        try {
          const { value, cpu } = await sample(row, running.get(name)!, opts);
          (result.samples[name] ??= []).push(value);
          if (cpu !== null) (result.cpu[name] ??= []).push(cpu);
          progress(`${format(value, row.unit)}${cpu === null ? "" : `, ${formatCpu(cpu, row)} CPU`}`);
        } catch (error) {
          result.errors.push(`${name}: ${failure(error)}`);
          progress(`FAILED ${(error as Error).message}`);
        }
      }
    }
  }
  for (const instance of running.values()) await instance.stop();

  const summary = results.map((result) => {
    const row = opts.rows.find((r) => r.id === result.row)!;
    const medians = Object.fromEntries(row.contenders.map((name) => [name, median(result.samples[name] ?? [])])) as Record<ContenderName, number | null>;
    const [top, bottom, least] = row.target;
    const ratio = ratioOf(medians[top], medians[bottom]);
    return { ...result, medians, target: { ratio: `${top} / ${bottom}`, atLeast: least, value: ratio, met: ratio !== null && ratio >= least } };
  });
  const table = tableOf(summary, opts.rows);
  const footer = [
    ...summary.map(
      (s) =>
        `target ${s.row}: ${s.target.ratio} ≥ ${s.target.atLeast}: ${s.target.value === null ? "not measured" : `${s.target.value.toFixed(3)}, ${s.target.met ? "met" : "NOT met"}`}`,
    ),
    ...[...failed].map(([name, message]) => `failed check: ${name}: ${message}`),
    ...summary.flatMap((s) => s.errors.map((error) => `error: ${s.row} ${error}`)),
  ].join("\n");
  publish(
    {
      text: `\n${headerText(meta)}\n\n${textTable(table)}\n\n${TABLE_NOTE}\n${footer}\n`,
      markdown: markdownTable(table),
      result: { ...meta, suite: "tls", results: summary, failedChecks: Object.fromEntries(failed) },
    },
    opts,
    "tls",
  );
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

const TABLE_NOTE =
  "median over rounds; vs baseline: HAProxy for handshakes, tcprouter-tcp (plain forwarding) for bulk;\n" +
  "contender CPU: user + system time of the contender's processes per session / per GiB (median; 10 ms ticks)";

/** row | contender | median | min..max | vs direct | vs baseline | contender CPU. */
function tableOf(summary: (Result & { medians: Record<ContenderName, number | null> })[], rows: Row[]): Table {
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
  return { head: ["row", "contender", "median", "min..max", "vs direct", "vs baseline", "contender CPU"], rows: lines, text: 2 };
}
