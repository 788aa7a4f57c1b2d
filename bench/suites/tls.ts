/**
 * TLS routing bench (issue 5): new TLS sessions per second through SNI passthrough, tcprouter
 * vs HAProxy routing on `req.ssl_sni`, to the same TLS server; bulk throughput of one TLS
 * session through a passthrough (sni) listener vs a plain forwarded (tcp) listener; and new
 * TLS sessions per second where the proxy terminates TLS itself, with and without client
 * certificate verification.
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
 * Terminating contenders (the terminate rows; bench/contenders/tls-terminate.ts), one instance
 * per row, in front of a plain TCP peer (`tls-peers.ts server --plain`, the same line protocol):
 * - tcprouter, tcprouter-2w: a listener with `tls = { cert, key }` (db.pem), `tls_policy = {
 *   min_version = "TLSv1.3", curves = "X25519" }`, plus `client_ca = "ca.pem", verify_client =
 *   "required"` for terminate-mtls.
 * - haproxy: `bind … ssl crt db-bundle.pem ssl-min-ver TLSv1.3 ciphersuites
 *   TLS_AES_128_GCM_SHA256 curves X25519` (the suite tcprouter's BoringSSL picks), plus
 *   `ca-file ca.pem verify required` for terminate-mtls; mode tcp, server the plain peer.
 * Check: the same verified session (with a client certificate made by openssl at run time for
 * terminate-mtls), printing what was negotiated; for terminate-mtls a session without a client
 * certificate must be closed without a PONG.
 *
 * Rows:
 * - handshakes: `--concurrency` loops for `--seconds`, each: connect, full TLS 1.3 handshake
 *   (no resumption, no certificate check in the loop), PING/PONG, close. sessions/s.
 * - bulk-up, bulk-down: one TLS session moving `--bytes` client → server / server → client.
 *   Gbit/s of payload.
 * - terminate, terminate-mtls: the handshakes loop against a terminating proxy (for
 *   terminate-mtls each session shows the client certificate). sessions/s and the proxy's CPU
 *   µs per session; the footer gives each contender's terminate-mtls ÷ terminate (the cost of
 *   verifying the client). No target: a comparison with HAProxy.
 * Rounds interleave the contenders, the start rotated each round; the table has medians,
 * min..max and ratios of medians. The load generator, the TLS server and the contender share
 * the machine's cores: read ratios, not absolute numbers.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { HAPROXY_MISSING, findHaproxy, haproxyHead, startHaproxy } from "../contenders/haproxy.ts";
import { ROOT, bunFloorCommand, directInstance, launch, startBunFloor, type Instance } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, startForward, startWithConfig } from "../contenders/tcprouter.ts";
import {
  type ClientCert,
  type ClientVerify,
  haproxyBundle,
  haproxyTerminateBody,
  makeClientCert,
  tcprouterTerminateConfig,
} from "../contenders/tls-terminate.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { HOST, freePort } from "../runner/net.ts";
import { cpuSeconds, run, workDir } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { markdownTable, median, ratioOf, textTable, type Table } from "../report/table.ts";

const CONTENDERS = ["direct", "tcprouter", "tcprouter-2w", "haproxy", "bun-floor", "tcprouter-tcp"] as const;
type ContenderName = (typeof CONTENDERS)[number];

/**
 * What a contender does in a row: pass TLS through to the TLS server (SNI routing, plain
 * forwarding), or terminate TLS itself and forward plaintext to the plain peer, without or
 * with client certificate verification. One instance per contender and setup.
 */
type Setup = "passthrough" | "terminate" | "terminate-mtls";

interface Row {
  id: "handshakes" | "bulk-up" | "bulk-down" | "terminate" | "terminate-mtls";
  title: string;
  unit: string;
  setup: Setup;
  contenders: readonly ContenderName[];
  /** The ratio the target is about: [numerator, denominator, at least]; null: no target, the ratio is reported. */
  target: [ContenderName, ContenderName, number | null];
}

const ROWS: Row[] = [
  {
    id: "handshakes",
    title: "new TLS sessions (SNI routed)",
    unit: "sessions/s",
    setup: "passthrough",
    contenders: ["direct", "tcprouter", "tcprouter-2w", "haproxy", "bun-floor"],
    target: ["tcprouter", "haproxy", 1.0],
  },
  {
    id: "bulk-up",
    title: "bulk, one TLS session, client → server",
    unit: "Gbit/s",
    setup: "passthrough",
    contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"],
    target: ["tcprouter", "tcprouter-tcp", 0.9],
  },
  {
    id: "bulk-down",
    title: "bulk, one TLS session, server → client",
    unit: "Gbit/s",
    setup: "passthrough",
    contenders: ["direct", "tcprouter-tcp", "tcprouter", "haproxy"],
    target: ["tcprouter", "tcprouter-tcp", 0.9],
  },
  {
    id: "terminate",
    title: "new TLS sessions, terminated by the proxy",
    unit: "sessions/s",
    setup: "terminate",
    contenders: ["tcprouter", "tcprouter-2w", "haproxy"],
    target: ["tcprouter", "haproxy", null],
  },
  {
    id: "terminate-mtls",
    title: "new TLS sessions, terminated, client certificate required",
    unit: "sessions/s",
    setup: "terminate-mtls",
    contenders: ["tcprouter", "tcprouter-2w", "haproxy"],
    target: ["tcprouter", "haproxy", null],
  },
];

/** The handshake-loop row of each setup: what the warm-up runs. */
const WARM_UP_ROW: Record<Setup, Row["id"]> = { passthrough: "handshakes", terminate: "terminate", "terminate-mtls": "terminate-mtls" };

const SERVER_NAME = "db.example.com";

export const HELP = `bun run bench/run.ts --suite tls [flags]
  new TLS sessions/s through SNI passthrough, bulk through one passthrough session, and new
  TLS sessions/s through a proxy that terminates TLS (terminate; terminate-mtls: a client
  certificate required)
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --seconds N           handshakes, terminate rows: seconds per sample (default 5; smoke 1)
  --concurrency N       handshakes, terminate rows: sessions in flight (default 32)
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

/** What the contenders are started in front of: the TLS server (passthrough), the plain peer (terminate). */
interface Peers {
  tls: number;
  plain: number;
  /** The certificate + key PEM HAProxy's `crt` takes, written on first use. */
  haproxyBundle: () => string;
}

interface Contender {
  name: ContenderName;
  /** The command line per setup it runs in (the header shows those of the setups in this run). */
  commands: Partial<Record<Setup, string>>;
  skip?: string;
  /** SNI routers must refuse a name they have no route for. */
  routesByName: boolean;
  start(setup: Setup, peers: Peers): Promise<Instance>;
}

const verifyOf = (setup: Setup): ClientVerify => (setup === "terminate-mtls" ? "required" : "none");

/** The tag of an instance: its config and log file names (passthrough: the contender's name, as before). */
const tagOf = (setup: Setup, name: string) => (setup === "passthrough" ? name : `${name}-${setup}`);

/** tcprouter with one sni listener, or one terminating listener (`extra`: more flags, e.g. --workers 2). */
function tcprouterContender(name: ContenderName, command: string, extra: string): Contender {
  const terminate = `${command} --config terminate.toml${extra} --log-level warn (tls = { cert = db.pem, key = db.key }, tls_policy = { min_version = "TLSv1.3", curves = "X25519" })`;
  return {
    name,
    commands: {
      passthrough: `${command} --config sni.toml${extra} --log-level warn (mode = "sni", one route)`,
      terminate,
      "terminate-mtls": `${command} --config terminate-mtls.toml${extra} --log-level warn (the same + client_ca = ca.pem, verify_client = "required")`,
    },
    routesByName: true,
    start: (setup, peers) =>
      setup === "passthrough"
        ? startWithConfig(command, tagOf(setup, name), (port) => tcprouterConfig(port, peers.tls), extra)
        : startWithConfig(command, tagOf(setup, name), (port) => tcprouterTerminateConfig(port, peers.plain, verifyOf(setup)), extra),
  };
}

function contenders(opts: Options): Contender[] {
  const haproxy = findHaproxy();
  const all: Record<ContenderName, Contender> = {
    direct: {
      name: "direct",
      commands: { passthrough: "(the TLS server itself)" },
      routesByName: false,
      start: async (_setup, peers) => directInstance(peers.tls),
    },
    tcprouter: tcprouterContender("tcprouter", opts.command, ""),
    "tcprouter-2w": tcprouterContender("tcprouter-2w", opts.command, " --workers 2"),
    haproxy: {
      name: "haproxy",
      commands: {
        passthrough: "haproxy -f sni.cfg -db (inspect-delay 5s, req.ssl_sni, nbthread default)",
        terminate:
          "haproxy -f terminate.cfg -db (bind ssl crt db-bundle.pem ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256 curves X25519, mode tcp, nbthread default)",
        "terminate-mtls": "haproxy -f terminate-mtls.cfg -db (the same + ca-file ca.pem verify required)",
      },
      ...(haproxy === null ? { skip: HAPROXY_MISSING } : {}),
      routesByName: true,
      start: (setup, peers) =>
        setup === "passthrough"
          ? startHaproxy(haproxy!, "haproxy-sni", (port) => haproxyConfig(port, peers.tls))
          : startHaproxy(
              haproxy!,
              tagOf(setup, "haproxy"),
              (port) => haproxyHead() + haproxyTerminateBody(port, peers.plain, peers.haproxyBundle(), verifyOf(setup)),
            ),
    },
    "bun-floor": {
      name: "bun-floor",
      commands: {
        passthrough: bunFloorCommand("--dial-on-data (connects on the first bytes; no ClientHello parsing, no routing): Bun's own cost"),
      },
      routesByName: false,
      start: async (_setup, peers) => startBunFloor("bun-floor", await freePort(), "round-robin", [peers.tls], true),
    },
    "tcprouter-tcp": {
      name: "tcprouter-tcp",
      commands: { passthrough: `${opts.command} --listen … --to … --log-level warn (plain forwarding)` },
      routesByName: false,
      start: (_setup, peers) => startForward(opts.command, peers.tls, "tcprouter-tcp"),
    },
  };
  return opts.contenders.map((name) => all[name]);
}

/** The setups the selected rows need, in order, each with the selected contenders its rows list. */
function plan(opts: Options, list: Contender[]): { setup: Setup; contenders: Contender[] }[] {
  const setups: Setup[] = ["passthrough", "terminate", "terminate-mtls"];
  return setups
    .map((setup) => {
      const rows = opts.rows.filter((row) => row.setup === setup);
      return { setup, contenders: list.filter((c) => !c.skip && rows.some((row) => row.contenders.includes(c.name))) };
    })
    .filter((p) => p.contenders.length > 0);
}

/** A running instance's key: setup and contender. */
const keyOf = (setup: Setup, name: ContenderName) => `${setup}/${name}`;

// ── Samples ────────────────────────────────────────────────────────────────────────────────

/** `--cert F --key F` for the load generator in a row that requires a client certificate. */
function certArgs(setup: Setup, cert: ClientCert | null): string[] {
  if (setup !== "terminate-mtls") return [];
  if (cert === null) throw new Error("no client certificate was made");
  return ["--cert", cert.cert, "--key", cert.key];
}

/**
 * One sample: the row's figure, and the contender's CPU time per unit of work (µs per session,
 * ms per GiB; null for direct), which moves much less with other load on the machine.
 */
async function sample(row: Row, instance: Instance, opts: Options, cert: ClientCert | null): Promise<{ value: number; cpu: number | null }> {
  const cpuBefore = instance.pid === undefined ? 0 : cpuSeconds(instance.pid);
  const cpuSince = (units: number, scale: number) => (instance.pid === undefined ? null : ((cpuSeconds(instance.pid) - cpuBefore) / units) * scale);
  if (row.unit === "sessions/s") {
    const out = await peer(
      "handshakes",
      instance.port,
      ["--servername", SERVER_NAME, "--concurrency", String(opts.concurrency), "--seconds", String(opts.seconds), ...certArgs(row.setup, cert)],
      opts.seconds * 1000 + 30_000,
    );
    if (Number(out.errors) > 0) throw new Error(`${out.errors} sessions failed (first: ${out.firstError})`);
    return { value: (Number(out.sessions) / Number(out.ms)) * 1000, cpu: cpuSince(Number(out.sessions), 1e6) };
  }
  const direction = row.id === "bulk-up" ? "up" : "down";
  const out = await peer("bulk", instance.port, ["--servername", SERVER_NAME, "--bytes", String(opts.bytes), "--direction", direction], 120_000);
  return { value: (Number(out.bytes) * 8) / (Number(out.ms) / 1000) / 1e9, cpu: cpuSince(Number(out.bytes) / 2 ** 30, 1e3) };
}

/** What a terminating contender's check found: the negotiated TLS and, for mTLS, how a client without a certificate was refused. */
interface Negotiated {
  protocol: string;
  cipher: string;
  group: string;
  refusedWithoutCert?: string;
}

/** The check before timing; returns the line it prints after the contender's name, and what a terminating contender negotiated. */
async function check(contender: Contender, setup: Setup, port: number, cert: ClientCert | null): Promise<{ line: string; negotiated?: Negotiated }> {
  if (setup === "passthrough") {
    await peer("check", port, ["--servername", SERVER_NAME], 30_000);
    if (!contender.routesByName) return { line: `verified session to ${SERVER_NAME}, PONG, 1 MiB each way` };
    const refused = await peer("check", port, ["--servername", "nope.example.com"], 30_000).then(
      () => false,
      () => true,
    );
    if (!refused) throw new Error("a session for nope.example.com got through: the router does not route by name");
    return { line: `verified session to ${SERVER_NAME}, PONG, 1 MiB each way; nope.example.com refused` };
  }
  const out = await peer("check", port, ["--servername", SERVER_NAME, ...certArgs(setup, cert)], 30_000);
  const negotiated: Negotiated = { protocol: String(out.protocol), cipher: String(out.cipher), group: String(out.group) };
  let line = `terminated: verified session to ${SERVER_NAME}${setup === "terminate-mtls" ? " with a client certificate" : ""}, PONG from the plain peer, 1 MiB each way; ${negotiated.protocol} ${negotiated.cipher} ${negotiated.group}`;
  if (setup === "terminate-mtls") {
    const refused = await peer("refused", port, ["--servername", SERVER_NAME], 30_000).catch((error: Error) => {
      throw new Error(`a session without a client certificate was not refused: ${error.message}`);
    });
    negotiated.refusedWithoutCert = String(refused.how);
    line += `; without a client certificate: refused (${negotiated.refusedWithoutCert})`;
  }
  return { line, negotiated };
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
  const setups = plan(opts, list);
  const inRun = new Set<Setup>(opts.rows.map((row) => row.setup));
  const haproxyBin = findHaproxy();
  const params = {
    rounds: opts.rounds,
    seconds: opts.seconds,
    concurrency: opts.concurrency,
    bytes: opts.bytes,
    rows: opts.rows.map((row) => row.id),
    ...(inRun.has("passthrough") ? { server: "bench/contenders/tls-peers.ts server (Bun.listen tls, EC P-256, TLS 1.3)" } : {}),
    ...(inRun.has("terminate") || inRun.has("terminate-mtls")
      ? {
          terminate:
            "bench/contenders/tls-peers.ts server --plain behind the proxy; certificate db.pem (EC P-256), client CA ca.pem; TLS 1.3, TLS_AES_128_GCM_SHA256, X25519",
        }
      : {}),
    ...(inRun.has("terminate-mtls") ? { clientCert: "made with openssl at run time: EC P-256, clientAuth, signed by ca.pem" } : {}),
  };
  const described = list.map((c) => ({
    name: c.name,
    command:
      (Object.entries(c.commands) as [Setup, string][])
        .filter(([setup]) => inRun.has(setup))
        .map(([, command]) => command)
        .join("; ") || "(in no row of this run)",
    ...(c.skip ? { skip: c.skip } : {}),
  }));
  const meta = await collectMeta(described, params, { haproxy: haproxyBin ? [haproxyBin, "-v"] : null, openssl: ["openssl", "version"] });

  const needs = new Set(setups.map((p) => p.setup));
  const peers: Peers = { tls: 0, plain: 0, haproxyBundle: () => (bundle ??= haproxyBundle(workDir())) };
  let bundle: string | undefined;
  if (needs.has("passthrough")) {
    peers.tls = await freePort();
    await launch("tls-server", [...PEERS, "server", "--port", String(peers.tls)], peers.tls, ROOT);
  }
  if (needs.has("terminate") || needs.has("terminate-mtls")) {
    peers.plain = await freePort();
    await launch("plain-peer", [...PEERS, "server", "--plain", "--port", String(peers.plain)], peers.plain, ROOT);
  }
  const cert = needs.has("terminate-mtls") ? await makeClientCert(workDir()) : null;

  const running = new Map<string, Instance>();
  const failed = new Map<string, string>();
  const negotiated: Record<string, Record<string, Negotiated>> = {};
  for (const { setup, contenders: those } of setups) {
    for (const contender of those) {
      const key = keyOf(setup, contender.name);
      const label = setup === "passthrough" ? contender.name : `${contender.name} (${setup})`;
      try {
        const instance = await contender.start(setup, peers);
        running.set(key, instance);
        const result = await check(contender, setup, instance.port, cert);
        if (result.negotiated) (negotiated[setup] ??= {})[contender.name] = result.negotiated;
        say(`check ${label}: ${result.line}`);
      } catch (error) {
        failed.set(key, failure(error));
        say(`check ${label}: FAILED ${(error as Error).message}`);
      }
    }
  }

  // Warm-up, untimed: one second of handshakes through every instance (the JIT, for the Bun ones).
  for (const { setup, contenders: those } of setups) {
    const row = ROWS.find((r) => r.id === WARM_UP_ROW[setup])!;
    for (const contender of those) {
      const key = keyOf(setup, contender.name);
      if (running.has(key) && !failed.has(key)) await sample(row, running.get(key)!, { ...opts, seconds: 1 }, cert).catch(() => {});
    }
  }

  const results: Result[] = opts.rows.map((row) => ({ row: row.id, title: row.title, unit: row.unit, samples: {}, cpu: {}, errors: [] }));
  for (let round = 0; round < opts.rounds; round++) {
    for (const [i, row] of opts.rows.entries()) {
      const names = row.contenders.filter((name) => running.has(keyOf(row.setup, name)) && !failed.has(keyOf(row.setup, name)));
      for (const name of rotated(names, round)) {
        const result = results[i]!;
        const progress = (text: string) => say(roundLine(round, opts.rounds, row.id, 14, name, 13, text));
        try {
          const { value, cpu } = await sample(row, running.get(keyOf(row.setup, name))!, opts, cert);
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
  if (cert !== null) rmSync(cert.dir, { recursive: true, force: true });

  const summary = results.map((result) => {
    const row = opts.rows.find((r) => r.id === result.row)!;
    const medians = Object.fromEntries(row.contenders.map((name) => [name, median(result.samples[name] ?? [])])) as Record<ContenderName, number | null>;
    const cpuMedians = Object.fromEntries(row.contenders.map((name) => [name, median(result.cpu[name] ?? [])])) as Record<ContenderName, number | null>;
    const [top, bottom, least] = row.target;
    const ratio = ratioOf(medians[top], medians[bottom]);
    const cpuRatio = ratioOf(cpuMedians[top], cpuMedians[bottom]);
    return {
      ...result,
      medians,
      cpuMedians,
      target: { ratio: `${top} / ${bottom}`, atLeast: least, value: ratio, cpuValue: cpuRatio, met: least === null ? null : ratio !== null && ratio >= least },
    };
  });
  const verificationCost = costOfVerification(summary);
  const table = tableOf(summary, opts.rows);
  const footer = [
    ...summary.map((s) => {
      const value = s.target.value === null ? "not measured" : s.target.value.toFixed(3);
      if (s.target.atLeast !== null)
        return `target ${s.row}: ${s.target.ratio} ≥ ${s.target.atLeast}: ${s.target.value === null ? value : `${value}, ${s.target.met ? "met" : "NOT met"}`}`;
      const cpu = s.target.cpuValue === null ? "not measured" : s.target.cpuValue.toFixed(3);
      return `ratio ${s.row}: ${s.target.ratio}: sessions/s ${value}, CPU µs/session ${cpu} (no target)`;
    }),
    ...Object.entries(verificationCost).map(
      ([name, cost]) =>
        `cost of client verification, ${name}: terminate-mtls ÷ terminate: sessions/s ${cost.sessions?.toFixed(3) ?? "-"}, CPU µs/session ${cost.cpu?.toFixed(3) ?? "-"}`,
    ),
    ...Object.entries(negotiated).flatMap(([setup, byName]) =>
      Object.entries(byName).map(
        ([name, n]) =>
          `negotiated ${setup}, ${name}: ${n.protocol} ${n.cipher} ${n.group}${n.refusedWithoutCert ? `; no client certificate: ${n.refusedWithoutCert}` : ""}`,
      ),
    ),
    ...Object.entries(negotiated).map(([setup, byName]) => {
      const kinds = new Set(Object.values(byName).map((n) => `${n.protocol} ${n.cipher} ${n.group}`));
      return kinds.size <= 1
        ? `negotiated ${setup}: the same by every contender`
        : `negotiated ${setup}: DIFFERENT between contenders (${[...kinds].join(" / ")})`;
    }),
    ...[...failed].map(([key, message]) => `failed check: ${key}: ${message}`),
    ...summary.flatMap((s) => s.errors.map((error) => `error: ${s.row} ${error}`)),
  ].join("\n");
  publish(
    {
      text: `\n${headerText(meta)}\n\n${textTable(table)}\n\n${TABLE_NOTE}\n${footer}\n`,
      markdown: markdownTable(table),
      result: { ...meta, suite: "tls", results: summary, verificationCost, negotiated, failedChecks: Object.fromEntries(failed) },
    },
    opts,
    "tls",
  );
  if (failed.size > 0 || summary.some((s) => s.errors.length > 0)) process.exitCode = 1;
}

/** Per contender in both terminate rows: terminate-mtls ÷ terminate, of the sessions/s medians and of the CPU medians. */
function costOfVerification(
  summary: { row: string; medians: Record<ContenderName, number | null>; cpuMedians: Record<ContenderName, number | null> }[],
): Record<string, { sessions: number | null; cpu: number | null }> {
  const plain = summary.find((s) => s.row === "terminate");
  const mtls = summary.find((s) => s.row === "terminate-mtls");
  if (!plain || !mtls) return {};
  const out: Record<string, { sessions: number | null; cpu: number | null }> = {};
  for (const name of ROWS.find((r) => r.id === "terminate")!.contenders) {
    const sessions = ratioOf(mtls.medians[name] ?? null, plain.medians[name] ?? null);
    const cpu = ratioOf(mtls.cpuMedians[name] ?? null, plain.cpuMedians[name] ?? null);
    if (sessions !== null || cpu !== null) out[name] = { sessions, cpu };
  }
  return out;
}

function formatCpu(value: number | null, row: Row): string {
  if (value === null) return "-";
  return row.unit === "sessions/s" ? `${value.toFixed(0)} µs/session` : `${value.toFixed(0)} ms/GiB`;
}

function format(value: number | null, unit: string): string {
  if (value === null) return "-";
  return unit === "Gbit/s" ? `${value.toFixed(2)} ${unit}` : `${Math.round(value).toLocaleString("en-US")} ${unit}`;
}

const TABLE_NOTE =
  "median over rounds; vs baseline: HAProxy for handshakes and the terminate rows, tcprouter-tcp (plain forwarding) for bulk;\n" +
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
      const ratio = (other: number | null | undefined) => (value === null || !other ? "-" : (value / other).toFixed(3));
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
