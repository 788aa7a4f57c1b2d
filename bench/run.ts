/**
 * tcprouter bench: the same workloads against Redis/iperf3 directly and through each
 * contender, rounds interleaved (A B A B, start rotated each round), medians and ratios.
 * `--suite backends`: three Redis servers behind one listener, tcprouter vs HAProxy (backends.ts).
 * Usage: bun run bench/run.ts [--smoke] [--rounds N] [--requests N] ... (see bench/README.md)
 */
import { BACKEND_BALANCES, BACKEND_CONTENDERS, BACKEND_ROW_IDS, runBackends } from "./backends.ts";
import { startIperf } from "./bulk.ts";
import { CONTENDER_NAMES, loadContenders, type Contender, type ContenderName, type Instance } from "./contenders.ts";
import { fail, listOf, parseBenchFlags, positiveInt, say } from "./flags.ts";
import { collectMeta, headerText } from "./meta.ts";
import { StoppingError, ensureOwnFdLimit, isStopping, softFdLimit, runBench } from "./procs.ts";
import { checkRedisPath, runRedisRow, startRedis } from "./redis.ts";
import { ROWS, ROW_IDS, idleSample, takeSample, type Params, type Ports, type Row } from "./rows.ts";
import { TABLE_NOTE, errorNotes, markdownTable, summarize, textTable, writeResults, type Cell } from "./table.ts";

const HELP = `bun run bench/run.ts [flags]
  --suite NAME          main (default): the table below; backends: three Redis servers behind
                        one listener, tcprouter vs HAProxy per balance (rows ${BACKEND_ROW_IDS.join(",")})
  --balance A[,B]       backends suite: ${BACKEND_BALANCES.join(",")} (default: both)
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --requests N          redis-benchmark -n per row before the row's scale (default 100000; smoke 2000)
  --seconds N           iperf3 -t per bulk sample (default 5; smoke 1)
  --sessions N          idle sessions for the memory row (default 5000; smoke 200)
  --smoke               tiny counts, finishes in well under a minute (CI)
  --only ROW[,ROW]      rows: ${ROW_IDS.join(",")} (backends: ${BACKEND_ROW_IDS.join(",")})
  --contenders A[,B]    ${CONTENDER_NAMES.join(",")} (default: all; backends: ${BACKEND_CONTENDERS.join(",")})
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
  --json                print the JSON result on stdout (the table goes to stderr)
  --markdown            also print the table as Markdown
`;

function parseFlags() {
  const values = parseBenchFlags(
    {
      suite: { type: "string", default: "main" },
      balance: { type: "string" },
      requests: { type: "string" },
      seconds: { type: "string" },
      sessions: { type: "string" },
      contenders: { type: "string" },
      markdown: { type: "boolean", default: false },
    },
    HELP,
  );
  const smoke = values.smoke;
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, smoke);
  if (values.suite !== "main" && values.suite !== "backends") fail(`--suite: unknown "${values.suite}" (main or backends)`);
  const backends = values.suite === "backends";
  if (!backends && values.balance !== undefined) fail("--balance: only with --suite backends");
  return {
    suite: values.suite,
    backends: backends
      ? {
          balances: listOf("balance", values.balance, BACKEND_BALANCES),
          rows: listOf("only", values.only, BACKEND_ROW_IDS),
          contenders: listOf("contenders", values.contenders, BACKEND_CONTENDERS),
        }
      : undefined,
    smoke,
    rounds: int("rounds", values.rounds, 5, 1),
    params: {
      requests: int("requests", values.requests, 100_000, 2_000),
      seconds: int("seconds", values.seconds, 5, 1),
      sessions: int("sessions", values.sessions, 5_000, 200),
    } satisfies Params,
    rows: backends ? [] : listOf("only", values.only, ROW_IDS),
    contenders: backends ? [] : listOf("contenders", values.contenders, CONTENDER_NAMES),
    tcprouterCmd: values["tcprouter-cmd"],
    json: values.json,
    markdown: values.markdown,
  };
}


/** Instances of one contender that stay up for all rounds (idle rows start their own). */
interface Running {
  contender: Contender;
  ports: Ports;
  instances: Instance[];
}

async function startContender(c: Contender, redisPort: number, iperfPort: number | undefined): Promise<Running> {
  const instances: Instance[] = [];
  try {
    const redis = await c.start(redisPort, `${c.name}-redis`);
    instances.push(redis);
    await checkRedisPath(redis.port, c.name);
    let iperf = iperfPort ?? 0;
    if (iperfPort !== undefined) {
      const inst = await c.start(iperfPort, `${c.name}-iperf`);
      instances.push(inst);
      iperf = inst.port;
    }
    return { contender: c, ports: { redis: redis.port, iperf, redisTarget: redisPort }, instances };
  } catch (err) {
    for (const i of instances) await i.stop();
    throw err;
  }
}

function fmt(row: Row, value: number): string {
  return row.unit === "req/s" ? `${Math.round(value)} req/s` : `${value.toFixed(2)} ${row.unit}`;
}

/** Sessions the idle row may open: Redis maxclients and HAProxy/nginx maxconn are 9000+. */
const MAX_SESSIONS = 9000;

async function main(): Promise<void> {
  const opts = parseFlags();
  if (opts.backends !== undefined) {
    const ok = await runBackends({
      ...opts.backends,
      rounds: opts.rounds,
      requests: opts.params.requests,
      smoke: opts.smoke,
      tcprouterCmd: opts.tcprouterCmd,
      json: opts.json,
      markdown: opts.markdown,
    });
    if (!ok) process.exitCode = 1;
    return;
  }
  if (opts.params.sessions > MAX_SESSIONS) fail(`--sessions: at most ${MAX_SESSIONS}`);
  if (opts.rows.includes("idle")) {
    const needed = opts.params.sessions + 1000;
    await ensureOwnFdLimit(needed);
    if (softFdLimit() < needed) fail(`open-file limit ${softFdLimit()} is too low for --sessions ${opts.params.sessions}`);
  }
  const rows = ROWS.filter((r) => opts.rows.includes(r.id));
  const all = await loadContenders(opts.contenders, opts.tcprouterCmd);
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);

  const params = { rounds: opts.rounds, ...opts.params, smoke: opts.smoke, rows: rows.map((r) => r.id) };
  const meta = await collectMeta(all, params);
  say(`bench: ${opts.rounds} round(s) of ${rows.map((r) => r.id).join(",")} for ${runnable.map((c) => c.name).join(",")}`);

  const redis = await startRedis();
  const iperf = rows.some((r) => r.kind === "bulk") ? await startIperf() : undefined;
  const running: Running[] = [];
  const cells: Cell[] = [];
  const cellOf = (row: Row, name: ContenderName) => {
    let cell = cells.find((c) => c.row === row.id && c.contender === name);
    if (!cell) {
      cell = { row: row.id, title: row.title, unit: row.unit, contender: name, samples: [], p50Samples: [], errors: [] };
      cells.push(cell);
    }
    return cell;
  };
  // fixed table order: rows as listed, contenders as given
  for (const row of rows) for (const c of runnable) if (!(row.kind === "idle" && c.name === "direct")) cellOf(row, c.name);

  for (const c of runnable) {
    try {
      running.push(await startContender(c, redis.port, iperf?.port));
      say(`check ${c.name}: PONG and 64 KiB SET/GET round trip ok`);
    } catch (err) {
      say(`FAIL ${c.name}: ${(err as Error).message}`);
      for (const row of rows) cells.find((x) => x.row === row.id && x.contender === c.name)?.errors.push((err as Error).message.split("\n")[0]!);
    }
  }

  // Warm-up, untimed: a tenth of each Redis row through every contender, so round 1 does not
  // time a JIT compiling tcprouter's hot paths (HAProxy and nginx get the same pass).
  for (const r of running) {
    for (const row of rows) if (row.kind === "redis") await runRedisRow(row.redis, r.ports.redis, r.ports.redisTarget, opts.params.requests / 10).catch(() => {});
  }
  if (running.length > 0) say("warm-up done");

  for (let round = 0; round < opts.rounds; round++) {
    const order = running.map((_, i) => running[(i + round) % running.length]!);
    for (const row of rows) {
      for (const r of order) {
        if (row.kind === "idle" && r.contender.name === "direct") continue;
        const cell = cellOf(row, r.contender.name);
        try {
          const s = row.kind === "idle" ? await idleRound(r.contender, redis.port, opts.params) : await takeSample(row, r.ports, opts.params);
          cell.samples.push(s.value);
          cell.p50Samples.push(s.p50ms);
          say(`round ${round + 1}/${opts.rounds}  ${row.id.padEnd(12)} ${r.contender.name.padEnd(9)} ${fmt(row, s.value)}`);
        } catch (err) {
          if (err instanceof StoppingError || isStopping()) throw new StoppingError();
          cell.errors.push((err as Error).message.split("\n")[0]!);
          say(`round ${round + 1}/${opts.rounds}  ${row.id.padEnd(12)} ${r.contender.name.padEnd(9)} FAILED ${(err as Error).message}`);
        }
      }
    }
  }
  for (const r of running) for (const i of r.instances) await i.stop();

  const lines = summarize(cells);
  const result = { ...meta, note: TABLE_NOTE, results: lines };
  const errors = errorNotes(lines);
  const table = `${headerText(meta)}\n\n${textTable(lines)}\n${TABLE_NOTE}\n${errors ? `${errors}\n` : ""}`;
  (opts.json ? process.stderr : process.stdout).write(`\n${table}`);
  if (opts.markdown) (opts.json ? process.stderr : process.stdout).write(`\n${markdownTable(lines)}\n`);
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  writeResults(result, opts.smoke);
  // a contender that failed its check or every sample is a failure of the run (CI runs --smoke)
  if (lines.some((l) => l.median === null)) process.exitCode = 1;
}

/** A fresh instance per idle sample, so earlier rows' buffers are not counted. */
async function idleRound(c: Contender, redisPort: number, params: Params) {
  const inst = await c.start(redisPort, `${c.name}-idle`);
  try {
    return await idleSample(inst.pid!, inst.port, redisPort, params);
  } finally {
    await inst.stop();
  }
}

await runBench(main);
