/**
 * Upgrade in place under load: tcprouter (SIGUSR2: the new process takes the listeners and the
 * open plain sessions), HAProxy master-worker (SIGUSR2 reload, the listeners passed over the
 * stats socket, `hard-stop-after 2s`) and nginx's binary upgrade (USR2, WINCH, QUIT;
 * `worker_shutdown_timeout 2s`), each in front of the same Redis, upgraded `--upgrades` times
 * while the bench runs the same load through it:
 *
 * - `--loops` connect loops (connect → PING → PONG → close, again at once), every attempt
 *   counted: ok, refused (ECONNREFUSED), reset (ECONNRESET, or closed before the PONG), timeout;
 * - `--sessions` kept sessions, opened before the first upgrade, a PING every 100 ms each;
 *   a session closed, reset or left without its PONG for 5 s is cut, and stays cut;
 * - each upgrade's time: signal → the old process (every one of them) gone.
 *
 *   bun run bench/run.ts --suite upgrade [--upgrades N] [--rounds N] [--smoke] [--json] [--markdown]
 *
 * Before timing, each contender answers PONG and returns a 64 KiB value byte for byte; after
 * the last upgrade the same check runs again through whatever process serves then. Each round
 * starts every contender afresh, the contender order rotated per round. Targets: no refused
 * connect for any; tcprouter cuts no plain session, where the others cut every session the old
 * process still held at their hard stop.
 */
import {
  UPGRADE_CONTENDERS,
  HARD_STOP_S,
  loadUpgradeContenders,
  type UpgradeContender,
  type UpgradeContenderName,
  type UpgradeSample,
} from "../contenders/upgradable.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText } from "../runner/meta.ts";
import { failure, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { median } from "../report/table.ts";
import { connectLoops, keptSessions, type ConnectCounts, type KeptResult } from "./workloads/churn.ts";
import { checkRedisPath, startRedis } from "./workloads/redis.ts";

export const HELP = `bun run bench/run.ts --suite upgrade [flags]
  upgrade in place under load: tcprouter (SIGUSR2), HAProxy master-worker reload, nginx binary upgrade
  --upgrades N          upgrades per contender and round (default 5; smoke 1)
  --rounds N            rounds, each starting every contender afresh (default 1)
  --loops N             concurrent connect loops (default 4)
  --sessions N          kept sessions, a PING every 100 ms each (default 50; smoke 20)
  --gap-ms MS           load before the first upgrade and after each (default 1000; smoke 500)
  --contenders A[,B]    ${UPGRADE_CONTENDERS.join(",")} (default: all)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

interface Run {
  round: number;
  contender: UpgradeContenderName;
  upgrades: UpgradeSample[];
  connects: ConnectCounts;
  kept: KeptResult;
}

interface Summary {
  upgrades: number;
  ok: number;
  refused: number;
  reset: number;
  timeout: number;
  /** Connect attempts per second over the loops' whole run. */
  connectsPerS: number;
  keptSessions: number;
  keptCut: number;
  maxPongWaitMs: number;
  upgradeMs: { median: number | null; min: number | null; max: number | null; all: number[] };
  /** Median over rounds of each round's first upgrade: the one the kept sessions are open for. */
  firstMs: number | null;
  /** Median over rounds of the sum of one round's upgrade times. */
  totalMs: number | null;
  errors: string[];
}

async function oneRun(
  contender: UpgradeContender,
  round: number,
  redisPort: number,
  opts: { upgrades: number; loops: number; sessions: number; gapMs: number },
): Promise<Run> {
  const tag = `${contender.name}-r${round}`;
  const instance = await contender.start(redisPort, tag);
  try {
    await checkRedisPath(instance.port, tag);
    const kept = await keptSessions(instance.port, opts.sessions);
    const loops = connectLoops(instance.port, opts.loops);
    const upgrades: UpgradeSample[] = [];
    let connects: ConnectCounts;
    let keptResult: KeptResult;
    try {
      await Bun.sleep(opts.gapMs);
      for (let i = 0; i < opts.upgrades; i++) {
        const sample = await instance.upgrade();
        upgrades.push(sample);
        const c = loops.counts;
        say(
          `round ${round}  ${contender.name.padEnd(9)} upgrade ${i + 1}/${opts.upgrades}: ${Math.round(sample.ms)} ms (${sample.oldPids.join(",")} → ${sample.newPid})` +
            `${sample.note ? `, ${sample.note}` : ""}; so far ${c.ok} ok, ${c.refused} refused, ${c.reset} reset, ${c.timeout} timeout, ${kept.alive()}/${opts.sessions} kept alive`,
        );
        await Bun.sleep(opts.gapMs);
      }
    } finally {
      connects = await loops.stop();
      keptResult = await kept.stop();
    }
    // after the upgrades: whatever serves now still forwards, byte for byte
    await checkRedisPath(instance.port, `${tag} after ${opts.upgrades} upgrade(s)`);
    return { round, contender: contender.name, upgrades, connects, kept: keptResult };
  } finally {
    await instance.stop();
  }
}

function summarize(runs: Run[], errors: string[]): Summary {
  const all = runs.flatMap((r) => r.upgrades.map((u) => u.ms));
  const sum = (f: (r: Run) => number) => runs.reduce((n, r) => n + f(r), 0);
  return {
    upgrades: all.length,
    ok: sum((r) => r.connects.ok),
    refused: sum((r) => r.connects.refused),
    reset: sum((r) => r.connects.reset),
    timeout: sum((r) => r.connects.timeout),
    connectsPerS: Math.round(
      (sum((r) => r.connects.ok + r.connects.refused + r.connects.reset + r.connects.timeout) * 1000) /
        Math.max(
          1,
          sum((r) => r.connects.elapsedMs),
        ),
    ),
    keptSessions: sum((r) => r.kept.sessions),
    keptCut: sum((r) => r.kept.cut),
    maxPongWaitMs: Math.max(0, ...runs.map((r) => r.kept.maxWaitMs)),
    upgradeMs: {
      median: median(all),
      min: all.length ? Math.min(...all) : null,
      max: all.length ? Math.max(...all) : null,
      all: all.map((ms) => Math.round(ms)),
    },
    firstMs: median(runs.flatMap((r) => (r.upgrades[0] ? [r.upgrades[0].ms] : []))),
    totalMs: median(runs.map((r) => r.upgrades.reduce((n, u) => n + u.ms, 0))),
    errors,
  };
}

const ms = (x: number | null) => (x === null ? "-" : `${Math.round(x)}`);
const int = (x: number) => x.toLocaleString("en-US");

export async function main(args: string[]): Promise<void> {
  const values = parseBenchFlags(
    "upgrade",
    args,
    {
      upgrades: { type: "string" },
      loops: { type: "string" },
      sessions: { type: "string" },
      "gap-ms": { type: "string" },
      contenders: { type: "string" },
      "tcprouter-cmd": { type: "string" },
    },
    HELP,
  );
  const opts = {
    upgrades: positiveInt("upgrades", values.upgrades, 5, 1, values.smoke),
    loops: positiveInt("loops", values.loops, 4, 4, values.smoke),
    sessions: positiveInt("sessions", values.sessions, 50, 20, values.smoke),
    gapMs: positiveInt("gap-ms", values["gap-ms"], 1000, 500, values.smoke),
  };
  const rounds = positiveInt("rounds", values.rounds, 1, 1, values.smoke);
  const names = listOf("contenders", values.contenders, UPGRADE_CONTENDERS);
  const missing = ["redis-server", "redis-cli"].filter((tool) => Bun.which(tool) === null);
  if (missing.length > 0) {
    say(`bench: upgrade suite skipped: ${missing.join(", ")} not installed`);
    return;
  }
  const all = await loadUpgradeContenders(names, values["tcprouter-cmd"]);
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);
  const meta = await collectMeta(
    all,
    { rounds, ...opts, pingEveryMs: 100, hardStopS: HARD_STOP_S, smoke: values.smoke },
    { "redis-server": ["redis-server", "--version"] },
  );
  say(`bench: upgrade, ${rounds} round(s) of ${opts.upgrades} upgrade(s) each for ${runnable.map((c) => c.name).join(",")}`);

  const redis = await startRedis();
  const runs: Run[] = [];
  const errors = new Map<UpgradeContenderName, string[]>(runnable.map((c) => [c.name, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const contender of rotated(runnable, round - 1)) {
      try {
        const got = await oneRun(contender, round, redis.port, opts);
        runs.push(got);
        const c = got.connects;
        say(
          `round ${round}  ${contender.name.padEnd(9)} ${c.ok} ok, ${c.refused} refused, ${c.reset} reset, ${c.timeout} timeout; ` +
            `kept ${got.kept.cut}/${got.kept.sessions} cut${got.kept.cuts[0] ? ` (${got.kept.cuts[0].reason})` : ""}; longest PONG wait ${got.kept.maxWaitMs} ms`,
        );
      } catch (error) {
        const line = `round ${round}: ${failure(error)}`;
        errors.get(contender.name)!.push(line);
        say(`round ${round}  ${contender.name.padEnd(9)} FAILED ${(error as Error).message}`);
      }
    }
  }

  const summary: Record<string, Summary> = {};
  for (const c of runnable)
    summary[c.name] = summarize(
      runs.filter((r) => r.contender === c.name),
      errors.get(c.name)!,
    );
  const failed = Object.values(summary).some((s) => s.errors.length > 0 || s.upgrades === 0);
  if (failed) process.exitCode = 1;

  const head = [
    "contender",
    "upgrades",
    "connects/s",
    "connects ok",
    "refused",
    "reset",
    "timeout",
    "kept cut",
    "longest PONG wait",
    "1st upgrade ms",
    "upgrade ms median (min..max)",
    "total ms",
  ];
  const rowOf = (name: string, s: Summary) => [
    name,
    String(s.upgrades),
    int(s.connectsPerS),
    int(s.ok),
    int(s.refused),
    int(s.reset),
    int(s.timeout),
    `${s.keptCut}/${s.keptSessions}`,
    `${s.maxPongWaitMs} ms`,
    ms(s.firstMs),
    `${ms(s.upgradeMs.median)} (${ms(s.upgradeMs.min)}..${ms(s.upgradeMs.max)})`,
    ms(s.totalMs),
  ];
  const rows = Object.entries(summary).map(([name, s]) => (s.upgrades === 0 ? [name, "FAILED", ...head.slice(2).map(() => "-")] : rowOf(name, s)));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");

  const verdicts: string[] = [];
  const measured = Object.entries(summary).filter(([, s]) => s.upgrades > 0);
  const noRefused = measured.filter(([, s]) => s.refused === 0).map(([n]) => n);
  const refused = measured.filter(([, s]) => s.refused > 0).map(([n, s]) => `${n} ${s.refused}`);
  verdicts.push(
    `refused connects: ${noRefused.length ? `none for ${noRefused.join(", ")}` : "every contender refused some"}${refused.length ? `; ${refused.join(", ")}` : ""}`,
  );
  for (const [name, s] of measured) verdicts.push(`${name}: ${s.keptCut} of ${s.keptSessions} kept sessions cut`);
  const tr = summary.tcprouter;
  if (tr && tr.upgrades > 0) verdicts.push(`target (tcprouter: 0 refused, 0 kept sessions cut): ${tr.refused === 0 && tr.keptCut === 0 ? "met" : "NOT met"}`);

  const notes = [
    `connects: --loops ${opts.loops} loops of connect → PING → PONG → close over the whole run; reset = ECONNRESET/EPIPE or closed before the PONG; timeout = no PONG in 5 s.`,
    `kept: --sessions ${opts.sessions} sessions opened before the first upgrade, a PING every 100 ms each; cut = closed, reset or no PONG in 5 s. Longest PONG wait: the longest one PING waited (how long a handover held a session).`,
    `upgrade ms: from the signal until every old process is gone; the old process may keep serving its sessions until the hard stop (${HARD_STOP_S} s: HAProxy hard-stop-after, nginx worker_shutdown_timeout, tcprouter --drain-timeout). 1st: the round's first upgrade, the one the kept sessions are open for (median over rounds). total: the sum of one round's upgrades.`,
  ];
  const errorLines = Object.entries(summary).flatMap(([name, s]) => s.errors.map((e) => `${name}: ${e}`));
  const text = [
    "",
    headerText(meta),
    "",
    line(head),
    ...rows.map(line),
    "",
    ...notes,
    "",
    ...verdicts,
    ...(errorLines.length > 0 ? ["", "errors:", ...errorLines] : []),
    "",
  ].join("\n");
  const markdown = [
    `| ${head.join(" | ")} |`,
    `|---|${head
      .slice(1)
      .map(() => "---:")
      .join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
  publish({ text, markdown, result: { ...meta, summary, runs, errors: errorLines } }, values, "upgrade");
}
