/**
 * Failover: how long clients lose writes when the Redis primary changes, and how many writes
 * reach a node that is not the primary, through three contenders at once in front of the same
 * Sentinel setup (1 primary, 2 replicas, 3 sentinels):
 *
 * - `tcprouter-checks`: role checks on every node (`INFO replication` → `role:master`),
 *   init = "down", on_down = "close-sessions";
 * - `tcprouter-sentinel`: the Sentinel target source (+switch-master, polled every 1 s);
 * - `haproxy`: the canonical `tcp-check` (PING, `info replication` → `role:master`) with
 *   `on-marked-down shutdown-sessions`.
 * Both check with the same inter/fall/rise: by default HAProxy's canonical Redis example
 * (`check inter 1s`) and its default rise 2, fall 3; `--inter 200 --fall 2 --rise 1` for fast checks.
 *
 *   bun run bench/run.ts --suite failover [--rounds N] [--faults failover,kill] [--smoke] [--json]
 *   bun run bench/suites/failover.ts …   (the same, before run.ts lists the suite)
 *
 * Each round starts a fresh cluster and fresh contenders, checks that each routes to the
 * primary, runs two client kinds through each (a fresh connection per write, and one kept
 * connection that reconnects when closed; a write every 10 ms), makes the fault (SENTINEL
 * FAILOVER, or SIGKILL of the primary), and watches until every loop wrote steadily to the new
 * primary (or 30 s). Per contender and client kind: the outage (ms from the fault to the first
 * write of the final all-OK run on the new primary) and stray writes (answered OK by another
 * node after the bench saw +switch-master). Medians over rounds.
 * Targets: checks ≤ HAProxy's outage; Sentinel source ≤ 0.5 × HAProxy's and 0 stray writes.
 */
import { findHaproxy, haproxyHead, haproxyVersion, startHaproxy } from "../contenders/haproxy.ts";
import type { Instance } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, startWithConfig, tcprouterVersion } from "../contenders/tcprouter.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { HOST } from "../runner/net.ts";
import { runBench } from "../runner/procs.ts";
import { failure } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { median } from "../report/table.ts";
import {
  type Cluster,
  type ClientKind,
  type Fault,
  fault,
  judge,
  MASTER,
  sentinelPrimary,
  startCluster,
  watchSwitch,
  writeLoop,
} from "./workloads/sentinel.ts";

const CONTENDERS = ["tcprouter-checks", "tcprouter-sentinel", "haproxy"] as const;
type Contender = (typeof CONTENDERS)[number];
const FAULTS = ["failover", "kill"] as const satisfies readonly Fault[];
const KINDS: ClientKind[] = ["fresh", "kept"];
/** Health check timing of both role-checking contenders (ms, counts); set from the flags. */
const CHECKS = { inter: 1000, fall: 3, rise: 2 };
const WATCH_MS = 30_000;

export const HELP = `bun run bench/run.ts --suite failover [flags]
  Redis primary failover under Sentinel through tcprouter (role checks; Sentinel source) and HAProxy (tcp-check)
  --rounds N            rounds per fault (default 3; smoke 1)
  --faults F[,F]        ${FAULTS.join(",")} (default: both; smoke: failover)
  --inter MS            check interval of role checks and HAProxy (default 1000: HAProxy's canonical inter 1s)
  --fall N, --rise N    checks to mark down / up (default 3 / 2: HAProxy's defaults)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

function checksConfig(cluster: Cluster) {
  return (port: number) => `[[listeners]]
listen = "${HOST}:${port}"
backend = "redis"
[backends.redis]
targets = [${cluster.nodes.map((n) => `"${HOST}:${n.port}"`).join(", ")}]
[backends.redis.health]
interval = "${CHECKS.inter}ms"
timeout = "${Math.min(CHECKS.inter, 1000)}ms"
rise = ${CHECKS.rise}
fall = ${CHECKS.fall}
init = "down"
on_down = "close-sessions"
steps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]
`;
}

function sentinelConfig(cluster: Cluster) {
  return (port: number) => `[[listeners]]
listen = "${HOST}:${port}"
backend = "redis"
[backends.redis]
sentinel = { master = "${MASTER}", sentinels = [${cluster.sentinels.map((p) => `"${HOST}:${p}"`).join(", ")}], poll_interval = "1s" }
`;
}

/** HAProxy's documented Redis check (the "tcp-check" example of its configuration manual). */
function haproxyConfig(cluster: Cluster) {
  return (port: number) => `${haproxyHead()}
frontend redis
  bind ${HOST}:${port}
  default_backend redis

backend redis
  option tcp-check
  tcp-check connect
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  tcp-check send info\\ replication\\r\\n
  tcp-check expect string role:master
  tcp-check send QUIT\\r\\n
  tcp-check expect string +OK
${cluster.nodes.map((n, i) => `  server r${i} ${HOST}:${n.port} check inter ${CHECKS.inter}ms fall ${CHECKS.fall} rise ${CHECKS.rise} on-marked-down shutdown-sessions`).join("\n")}
`;
}

async function startContender(name: Contender, cluster: Cluster, cmd: string, haproxy: string | null): Promise<Instance> {
  const tag = `${name}-${cluster.nodes[0]!.port}`;
  if (name === "haproxy") return startHaproxy(haproxy!, tag, haproxyConfig(cluster));
  return startWithConfig(cmd, tag, name === "tcprouter-checks" ? checksConfig(cluster) : sentinelConfig(cluster));
}

interface Sample {
  fault: Fault;
  round: number;
  contender: Contender;
  kind: ClientKind;
  outageMs: number | null;
  strayWrites: number;
  writes: number;
}

async function oneRound(faultKind: Fault, round: number, contenders: Contender[], cmd: string, haproxy: string | null): Promise<Sample[]> {
  const cluster = await startCluster(`${faultKind}-${round}`);
  const instances = new Map<Contender, Instance>();
  try {
    const primary = (await sentinelPrimary(cluster.sentinels))!;
    for (const name of contenders) instances.set(name, await startContender(name, cluster, cmd, haproxy));
    // Correctness before timing: every contender routes a write to the primary.
    for (const [name, instance] of instances) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const probe = writeLoop(instance.port, "fresh");
        await Bun.sleep(30);
        await probe.stop();
        if (probe.writes.some((w) => w.reply === "OK" && w.node === primary)) break;
        if (Date.now() > deadline) throw new Error(`${name}: no write reached the primary ${primary} within 5 s`);
      }
    }
    const loops = [...instances].flatMap(([name, instance]) => KINDS.map((kind) => ({ name, kind, loop: writeLoop(instance.port, kind) })));
    const event = watchSwitch(cluster.sentinels[1]!);
    await Bun.sleep(500);
    const faultAt = await fault(cluster, faultKind);
    let next: number | null = null;
    const deadline = Date.now() + WATCH_MS;
    while (Date.now() < deadline) {
      await Bun.sleep(200);
      next ??= event.to || null;
      if (next === null) continue;
      const recent = Date.now() - 500;
      const settled = loops.every(({ loop }) => {
        const tail = loop.writes.filter((w) => w.at >= recent);
        return tail.length > 5 && tail.every((w) => w.reply === "OK" && w.node === next);
      });
      if (settled) break;
    }
    for (const { loop } of loops) await loop.stop();
    event.stop();
    if (next === null) throw new Error("the bench saw no +switch-master within 15 s");
    return loops.map(({ name, kind, loop }) => ({
      fault: faultKind,
      round,
      contender: name,
      kind,
      ...judge(loop.writes, faultAt, next!, event.at || faultAt),
    }));
  } finally {
    for (const instance of instances.values()) await instance.stop();
    await cluster.stop();
  }
}

export async function main(args: string[]): Promise<void> {
  const values = parseBenchFlags(
    "failover",
    args,
    { faults: { type: "string" }, inter: { type: "string" }, fall: { type: "string" }, rise: { type: "string" }, "tcprouter-cmd": { type: "string" } },
    HELP,
  );
  CHECKS.inter = positiveInt("inter", values.inter, CHECKS.inter, CHECKS.inter, values.smoke);
  CHECKS.fall = positiveInt("fall", values.fall, CHECKS.fall, CHECKS.fall, values.smoke);
  CHECKS.rise = positiveInt("rise", values.rise, CHECKS.rise, CHECKS.rise, values.smoke);
  const rounds = positiveInt("rounds", values.rounds, 3, 1, values.smoke);
  const faults = values.faults === undefined && values.smoke ? (["failover"] as Fault[]) : listOf("faults", values.faults, FAULTS);
  const cmd = values["tcprouter-cmd"] ?? DEFAULT_TCPROUTER_CMD;
  const haproxy = findHaproxy();
  const missing = ["redis-server", "redis-cli", "redis-sentinel"].filter((tool) => Bun.which(tool) === null);
  if (missing.length > 0) {
    say(`bench: failover suite skipped: ${missing.join(", ")} not installed`);
    return;
  }
  const contenders = CONTENDERS.filter((name) => name !== "haproxy" || haproxy !== null);
  const meta = await collectMeta(
    [
      {
        name: "tcprouter-checks",
        version: await tcprouterVersion(),
        command: `${cmd} --config (role checks, inter ${CHECKS.inter}ms fall ${CHECKS.fall} rise ${CHECKS.rise}, on_down close-sessions)`,
      },
      { name: "tcprouter-sentinel", command: `${cmd} --config (sentinel source)` },
      {
        name: "haproxy",
        version: await haproxyVersion(haproxy),
        command: `haproxy (tcp-check role:master, inter ${CHECKS.inter}ms fall ${CHECKS.fall} rise ${CHECKS.rise}, shutdown-sessions)`,
        skip: haproxy ? undefined : "haproxy not installed",
      },
    ],
    { rounds, faults, ...CHECKS, pace_ms: 10 },
    { "redis-server": ["redis-server", "--version"], "redis-sentinel": ["redis-sentinel", "--version"] },
  );
  say(`bench: failover, ${rounds} round(s) of ${faults.join(",")}, contenders ${contenders.join(",")}`);
  const samples: Sample[] = [];
  const errors: string[] = [];
  for (const faultKind of faults) {
    for (let round = 1; round <= rounds; round++) {
      try {
        const got = await oneRound(faultKind, round, contenders, cmd, haproxy);
        samples.push(...got);
        say(`${faultKind} round ${round}/${rounds}: ${got.map((s) => `${s.contender}/${s.kind} ${s.outageMs ?? "-"} ms, ${s.strayWrites} stray`).join("; ")}`);
      } catch (error) {
        errors.push(`${faultKind} round ${round}: ${failure(error)}`);
        say(`${faultKind} round ${round}/${rounds}: ${failure(error)}`);
      }
    }
  }

  const rows: string[] = [];
  const summary: Record<string, Record<string, { outageMs: number | null; strayWrites: number }>> = {};
  for (const faultKind of faults) {
    for (const kind of KINDS) {
      const row = `${faultKind}/${kind}`;
      summary[row] = {};
      const cells = contenders.map((name) => {
        const mine = samples.filter((s) => s.fault === faultKind && s.kind === kind && s.contender === name);
        const outage = median(mine.map((s) => s.outageMs).filter((x): x is number => x !== null));
        const stray = mine.reduce((n, s) => n + s.strayWrites, 0);
        summary[row]![name] = { outageMs: outage, strayWrites: stray };
        return `${(outage === null ? "-" : `${Math.round(outage)} ms`).padStart(8)} ${String(stray).padStart(4)} stray`;
      });
      rows.push(`${row.padEnd(14)} ${cells.map((c) => c.padEnd(20)).join(" ")}`);
    }
  }
  const head = `${"fault/client".padEnd(14)} ${contenders.map((c) => c.padEnd(20)).join(" ")}`;
  const verdicts: string[] = [];
  for (const [row, byContender] of Object.entries(summary)) {
    const ha = byContender.haproxy?.outageMs ?? null;
    const checks = byContender["tcprouter-checks"];
    const sentinel = byContender["tcprouter-sentinel"];
    if (ha !== null && checks?.outageMs != null)
      verdicts.push(`${row}: checks ${checks.outageMs <= ha ? "≤" : ">"} HAProxy (${Math.round(checks.outageMs)} vs ${Math.round(ha)} ms)`);
    if (ha !== null && sentinel?.outageMs != null)
      verdicts.push(
        `${row}: sentinel ${sentinel.outageMs <= 0.5 * ha ? "≤" : ">"} 0.5 × HAProxy (${Math.round(sentinel.outageMs)} vs ${Math.round(ha)} ms), ${sentinel.strayWrites} stray writes`,
      );
  }
  const text = [
    "",
    headerText(meta),
    "",
    "outage: median ms from the fault to steady success on the new primary; stray: writes answered OK by another node after +switch-master (all rounds)",
    head,
    ...rows,
    "",
    ...verdicts,
    ...(errors.length > 0 ? ["", "errors:", ...errors] : []),
    "",
  ].join("\n");
  const markdown = [
    `| fault/client | ${contenders.join(" | ")} |`,
    `|---|${contenders.map(() => "---").join("|")}|`,
    ...Object.entries(summary).map(
      ([row, by]) =>
        `| ${row} | ${contenders.map((c) => `${by[c]?.outageMs == null ? "-" : `${Math.round(by[c]!.outageMs!)} ms`}, ${by[c]?.strayWrites ?? 0} stray`).join(" | ")} |`,
    ),
  ].join("\n");
  publish({ text, markdown, result: { ...meta, summary, samples, errors } }, values, "failover");
}

if (import.meta.main) await runBench(() => main(process.argv.slice(2)));
