/**
 * What observability costs: redis-benchmark through tcprouter with metrics and the access log
 * off, and on (`--admin` with /metrics scraped every --scrape-ms, `--access-log FILE`), side by
 * side. Target: "on" loses at most 3 % requests/s.
 *
 *   bun run bench/run.ts --suite observability [--rounds N] [--requests N] [--only ROW[,ROW]] [--smoke] [--json]
 *
 * One dedicated redis-server; one tcprouter instance of each kind for the whole run. Rounds
 * are interleaved per row (off on, then on off in the next round, so neither always goes
 * first). Before timing, both pass the PONG and 64 KiB SET/GET check, and "on" must show its
 * sessions in /metrics and in the access log. After the last round, "on" is stopped (SIGTERM),
 * and the access log must hold exactly one line per session that /metrics counted.
 *
 * Rows: PING -c 50 (50 long connections: the hooks almost never run) and PING -c 50 -k 0 (a
 * new connection per request: both hooks and one access log line per request, the worst
 * case).
 *
 * Besides requests/s, each sample records the CPU time tcprouter spent per request (user +
 * system from /proc, 10 ms ticks): on a small shared machine, where load generator, Redis and
 * tcprouter share two cores, it moves much less with other load than requests/s does.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Instance, withFreshPorts } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, startForward } from "../contenders/tcprouter.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { REDIS_TOOLS, collectMeta, headerText } from "../runner/meta.ts";
import { HOST, freePort } from "../runner/net.ts";
import { cpuSeconds, workDir } from "../runner/procs.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { fmtRps, markdownTable, median, ratioOf, textTable, type Table } from "../report/table.ts";
import { checkRedisPath, redisRows, runRedisRow, startRedis } from "./workloads/redis.ts";

/** PING -c 50 and PING -c 50 -k 0 at 0.2 × --requests. */
const ROWS = redisRows(["ping", "ping-k0"], { "ping-k0": 0.2 });
const KINDS = ["off", "on"] as const;
type Kind = (typeof KINDS)[number];
/** "on" may lose this much at most. */
const TARGET_RATIO = 0.97;

export const HELP = `bun run bench/run.ts --suite observability [flags]
  redis-benchmark through tcprouter with metrics and the access log off, and on
  --rounds N            rounds, interleaved (default 7; smoke 1)
  --requests N          redis-benchmark -n before the row's scale (default 100000; smoke 2000)
  --only ROW[,ROW]      ${ROWS.map((row) => row.id).join(",")} (default: all)
  --scrape-ms N         how often "on" is scraped while it runs (default 1000; Prometheus usually scrapes every 15 s)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "observability",
    args,
    { requests: { type: "string" }, "scrape-ms": { type: "string" }, only: { type: "string" }, "tcprouter-cmd": { type: "string" } },
    HELP,
  );
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, values.smoke);
  const only = listOf(
    "only",
    values.only,
    ROWS.map((row) => row.id),
  );
  return {
    rounds: int("rounds", values.rounds, 7, 1),
    requests: int("requests", values.requests, 100_000, 2_000),
    scrapeMs: int("scrape-ms", values["scrape-ms"], 1000, 1000),
    rows: ROWS.filter((row) => only.includes(row.id)),
    command: values["tcprouter-cmd"] ?? DEFAULT_TCPROUTER_CMD,
    smoke: values.smoke,
    json: values.json,
    markdown: values.markdown,
  };
}

interface Running {
  kind: Kind;
  instance: Instance;
  /** "on" only. */
  adminPort?: number;
  accessLog?: string;
}

async function start(kind: Kind, command: string, redisPort: number): Promise<Running> {
  const tag = `tcprouter-${kind}`;
  if (kind === "off") return { kind, instance: await startForward(command, redisPort, tag) };
  const accessLog = join(workDir(), "access.log");
  let adminPort = 0;
  // A fresh admin port on each try too (the listen port is startForward's).
  const instance = await withFreshPorts(async () => {
    adminPort = await freePort();
    return startForward(command, redisPort, tag, ` --admin ${HOST}:${adminPort} --access-log ${accessLog}`);
  });
  return { kind, instance, adminPort, accessLog };
}

async function metricsText(adminPort: number): Promise<string> {
  const response = await fetch(`http://${HOST}:${adminPort}/metrics`);
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

/** Sessions that ended, from tcprouter_sessions_closed_total (all listeners and reasons). */
function closedSessions(text: string): number {
  let sum = 0;
  for (const match of text.matchAll(/^tcprouter_sessions_closed_total\{[^}]*\} (\d+)$/gm)) sum += Number(match[1]);
  return sum;
}

function activeSessions(text: string): number {
  let sum = 0;
  for (const match of text.matchAll(/^tcprouter_sessions_active\{[^}]*\} (\d+)$/gm)) sum += Number(match[1]);
  return sum;
}

const lineCount = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line !== "").length;

async function waitUntil(condition: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** PONG and 64 KiB round trip for both; "on" also shows the check's sessions in /metrics and the log. */
async function check(running: Running): Promise<void> {
  await checkRedisPath(running.instance.port, `tcprouter-${running.kind}`);
  if (running.kind === "off") return;
  await waitUntil(async () => closedSessions(await metricsText(running.adminPort!)) >= 2, 5000, "the check's sessions in /metrics");
  await waitUntil(() => lineCount(running.accessLog!) >= 2, 5000, "the check's sessions in the access log");
}

interface Result {
  row: string;
  title: string;
  off: number[];
  on: number[];
  offP50: number[];
  onP50: number[];
  /** tcprouter CPU µs per request. */
  offCpu: number[];
  onCpu: number[];
  errors: string[];
}

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  const meta = await collectMeta(
    [{ name: "tcprouter", command: opts.command }],
    {
      rounds: opts.rounds,
      requests: opts.requests,
      rows: opts.rows.map((row) => row.id),
      scrapeMs: opts.scrapeMs,
      off: `${opts.command} --listen … --to … --log-level warn`,
      on: `… --admin ${HOST}:PORT --access-log FILE (and GET /metrics every ${opts.scrapeMs} ms)`,
    },
    { "redis-server": REDIS_TOOLS["redis-server"]!, "redis-benchmark": REDIS_TOOLS["redis-benchmark"]! },
  );
  say(`bench: observability off vs on, ${opts.rounds} round(s) of ${opts.rows.map((row) => row.id).join(",")}`);
  const redis = await startRedis();
  const running: Record<Kind, Running> = { off: await start("off", opts.command, redis.port), on: await start("on", opts.command, redis.port) };
  for (const kind of KINDS) {
    await check(running[kind]);
    say(`check ${kind}: PONG and 64 KiB SET/GET ok${kind === "on" ? "; sessions in /metrics and in the access log" : ""}`);
  }

  // "on" is scraped while it runs, as Prometheus would (more often than it usually does).
  let scraping = false;
  const scrapes = { count: 0, failed: 0 };
  const scraper = setInterval(() => {
    if (!scraping) return;
    metricsText(running.on.adminPort!).then(
      () => scrapes.count++,
      () => scrapes.failed++,
    );
  }, opts.scrapeMs);

  const results: Result[] = opts.rows.map((row) => ({
    row: row.id,
    title: row.title,
    off: [],
    on: [],
    offP50: [],
    onP50: [],
    offCpu: [],
    onCpu: [],
    errors: [],
  }));
  for (let round = 0; round < opts.rounds; round++) {
    // off on, then on off: neither always goes first
    const order = rotated(KINDS, round);
    for (const [i, row] of opts.rows.entries()) {
      for (const kind of order) {
        const result = results[i]!;
        const progress = (text: string) => say(roundLine(round, opts.rounds, row.id, 8, kind, 3, text));
        scraping = kind === "on";
        try {
          const pid = running[kind].instance.pid!;
          const cpuBefore = cpuSeconds(pid);
          const sample = await runRedisRow(row, running[kind].instance.port, redis.port, opts.requests);
          const requests = Math.max(100, Math.round(opts.requests * row.scale));
          const cpu = ((cpuSeconds(pid) - cpuBefore) / requests) * 1e6;
          result[kind].push(sample.rps);
          result[kind === "off" ? "offP50" : "onP50"].push(sample.p50ms);
          result[kind === "off" ? "offCpu" : "onCpu"].push(cpu);
          progress(`${Math.round(sample.rps)} req/s, ${cpu.toFixed(1)} CPU µs/request`);
        } catch (error) {
          result.errors.push(`${kind}: ${failure(error)}`);
          progress(`FAILED ${(error as Error).message}`);
        } finally {
          scraping = false;
        }
      }
    }
  }
  clearInterval(scraper);

  // Every session /metrics counted has exactly one access log line once "on" has stopped.
  await waitUntil(async () => activeSessions(await metricsText(running.on.adminPort!)) === 0, 10_000, "the last sessions to close");
  const counted = closedSessions(await metricsText(running.on.adminPort!));
  for (const kind of KINDS) await running[kind].instance.stop();
  const lines = lineCount(running.on.accessLog!);
  const consistent = counted === lines;

  const summary = results.map((r) => {
    const off = median(r.off);
    const on = median(r.on);
    const ratio = ratioOf(on, off);
    const offCpu = median(r.offCpu);
    const onCpu = median(r.onCpu);
    return {
      ...r,
      offMedian: off,
      onMedian: on,
      ratio,
      offP50Median: median(r.offP50),
      onP50Median: median(r.onP50),
      offCpuMedian: offCpu,
      onCpuMedian: onCpu,
      cpuRatio: ratioOf(onCpu, offCpu),
      meetsTarget: ratio !== null && ratio >= TARGET_RATIO,
    };
  });
  const table = tableOf(summary);
  const footer = [
    `target: on ≥ ${TARGET_RATIO} × off (≤ ${Math.round((1 - TARGET_RATIO) * 100)} % fewer requests/s): ${summary.every((s) => s.meetsTarget) ? "met" : "NOT met"} (${summary.map((s) => `${s.row} ${s.ratio === null ? "-" : s.ratio.toFixed(3)}`).join(", ")})`,
    `on: ${counted} sessions in /metrics, ${lines} access log lines: ${consistent ? "one line per session" : "MISMATCH"}; ${scrapes.count} scrapes during its runs (${scrapes.failed} failed)`,
    ...summary.flatMap((s) => s.errors.map((error) => `error: ${s.row} ${error}`)),
  ].join("\n");
  publish(
    {
      text: `\n${headerText(meta)}\n\n${textTable(table)}\n${footer}\n`,
      markdown: markdownTable(table),
      result: { ...meta, suite: "observability", targetRatio: TARGET_RATIO, results: summary, sessionsCounted: counted, accessLogLines: lines, scrapes },
    },
    opts,
    "observability",
  );
  if (!consistent || summary.some((s) => s.offMedian === null || s.onMedian === null)) process.exitCode = 1;
}

interface Summary {
  title: string;
  offMedian: number | null;
  onMedian: number | null;
  ratio: number | null;
  off: number[];
  on: number[];
  offP50Median: number | null;
  onP50Median: number | null;
  offCpuMedian: number | null;
  onCpuMedian: number | null;
  cpuRatio: number | null;
}

/** row | off | on | on / off | min..max of each | p50 ms | CPU µs/request | on / off. */
function tableOf(summary: Summary[]): Table {
  const rps = (x: number | null) => (x === null ? "FAILED" : `${fmtRps(x)} req/s`);
  const range = (xs: number[]) => (xs.length === 0 ? "-" : `${fmtRps(Math.min(...xs))}..${fmtRps(Math.max(...xs))}`);
  const ms = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  const cpu = (x: number | null) => (x === null ? "-" : x.toFixed(1));
  const ratio = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  const head = ["row", "off (median)", "on (median)", "on / off", "off min..max", "on min..max", "p50 ms off / on", "CPU µs/req off / on", "on / off"];
  const rows = summary.map((s) => [
    s.title,
    rps(s.offMedian),
    rps(s.onMedian),
    ratio(s.ratio),
    range(s.off),
    range(s.on),
    `${ms(s.offP50Median)} / ${ms(s.onP50Median)}`,
    `${cpu(s.offCpuMedian)} / ${cpu(s.onCpuMedian)}`,
    ratio(s.cpuRatio),
  ]);
  return { head, rows, text: 1 };
}
