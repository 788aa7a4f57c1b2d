/**
 * The backends suite (issue 3): three Redis servers behind one listener, tcprouter against
 * HAProxy with the same three servers and the same balance algorithm, both with Redis PING
 * health checks (2 s, rise 2, fall 3) and 2 retries on another server; and bun-floor, the least
 * a Bun.listen/Bun.connect forwarder does (Bun's own cost).
 *
 *   bun run bench/run.ts --suite backends [--rounds N] [--requests N] [--balance A[,B]] [--smoke]
 *
 * Rows: GET -c 50 (steady load, 50 long connections spread over the servers) and PING -c 50
 * -k 0 (a new connection per request: every request is a pick of a target, a connect and a
 * close, where the balancer costs most). Rounds interleaved (balance × row × contender, the
 * contender order rotated each round), medians over rounds, ratio tcprouter / HAProxy.
 */
import { HAPROXY_MISSING, findHaproxy, haproxyHead, haproxyVersion, startHaproxy } from "../contenders/haproxy.ts";
import { bunFloorCommand, startBunFloor, type Instance } from "../contenders/launch.ts";
import { DEFAULT_TCPROUTER_CMD, startWithConfig, tcprouterVersion } from "../contenders/tcprouter.ts";
import { COMMON_HELP, listOf, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { collectMeta, headerText, roundedLoad } from "../runner/meta.ts";
import { HOST, freePort } from "../runner/net.ts";
import { failure, roundLine, rotated } from "../runner/rounds.ts";
import { publish } from "../report/results.ts";
import { errorNotes, fmtRps, markdownTable, ratiosTo, summarize, textTable, type Cell, type Line, type Table } from "../report/table.ts";
import { BENCH_KEY, checkRedisPath, redisRows, runRedisRow, startRedis, warmUp, type RedisRow } from "./workloads/redis.ts";
import { exchange } from "./workloads/resp.ts";

export const BACKEND_BALANCES = ["round-robin", "least-conn"] as const;
export type BackendBalance = (typeof BACKEND_BALANCES)[number];
/** The same algorithm in HAProxy's words. */
const HAPROXY_BALANCE: Record<BackendBalance, string> = { "round-robin": "roundrobin", "least-conn": "leastconn" };

/** bun-floor (bench/contenders/bun-floor.ts): the least a Bun.listen/Bun.connect forwarder does, Bun's own cost. */
export const BACKEND_CONTENDERS = ["tcprouter", "haproxy", "bun-floor"] as const;
type Name = (typeof BACKEND_CONTENDERS)[number];

/** -k 0 runs 0.2 × --requests: long enough (~2 s here) that one slow second does not decide the row. */
export const BACKEND_ROWS: RedisRow[] = redisRows(["get", "ping-k0"], { "ping-k0": 0.2 });
export const BACKEND_ROW_IDS = BACKEND_ROWS.map((row) => row.id);

const TARGETS = 3;
/** Sequential connections of the distribution check: 10 per server for round-robin. */
const CHECK_CONNECTIONS = 30;

// ── Flags ──────────────────────────────────────────────────────────────────────────────────

export const HELP = `bun run bench/run.ts --suite backends [flags]
  three Redis servers behind one listener, tcprouter vs HAProxy (and bun-floor) per balance
  --balance A[,B]       ${BACKEND_BALANCES.join(",")} (default: both)
  --rounds N            rounds, interleaved across contenders (default 5; smoke 1)
  --requests N          redis-benchmark -n per row before the row's scale (default 100000; smoke 2000)
  --only ROW[,ROW]      rows: ${BACKEND_ROW_IDS.join(",")}
  --contenders A[,B]    ${BACKEND_CONTENDERS.join(",")} (default: all)
  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
${COMMON_HELP}`;

function parseFlags(args: string[]) {
  const values = parseBenchFlags(
    "backends",
    args,
    {
      balance: { type: "string" },
      requests: { type: "string" },
      // --seconds and --sessions are the redis suite's; taken (and checked) here too, as they always were
      seconds: { type: "string" },
      sessions: { type: "string" },
      only: { type: "string" },
      contenders: { type: "string" },
      "tcprouter-cmd": { type: "string" },
    },
    HELP,
  );
  const int = (flag: string, raw: string | undefined, dflt: number, smokeDflt: number) => positiveInt(flag, raw, dflt, smokeDflt, values.smoke);
  int("seconds", values.seconds, 5, 1);
  int("sessions", values.sessions, 5_000, 200);
  return {
    rounds: int("rounds", values.rounds, 5, 1),
    requests: int("requests", values.requests, 100_000, 2_000),
    smoke: values.smoke,
    balances: listOf("balance", values.balance, BACKEND_BALANCES),
    rows: listOf("only", values.only, BACKEND_ROW_IDS),
    contenders: listOf("contenders", values.contenders, BACKEND_CONTENDERS),
    tcprouterCmd: values["tcprouter-cmd"],
    json: values.json,
    markdown: values.markdown,
  };
}

// ── Contenders ─────────────────────────────────────────────────────────────────────────────

interface Contender {
  name: Name;
  version: string;
  skip: string | undefined;
  command: string;
  start(balance: BackendBalance, targets: number[], tag: string): Promise<Instance>;
}

async function tcprouter(cmd: string | undefined): Promise<Contender> {
  const command = cmd ?? DEFAULT_TCPROUTER_CMD;
  return {
    name: "tcprouter",
    version: await tcprouterVersion(),
    skip: undefined,
    command: `${command} --config tcprouter.toml --log-level warn (round-robin | least-conn, retries 2, PING health checks 2s rise 2 fall 3)`,
    start: (balance, targets, tag) => startWithConfig(command, tag, (port) => tcprouterConfig(port, targets, balance)),
  };
}

function tcprouterConfig(port: number, targets: number[], balance: BackendBalance): string {
  return `[defaults]
connect_timeout = "5s"

[[listeners]]
name = "redis"
listen = "${HOST}:${port}"
backend = "redis"

[backends.redis]
balance = "${balance}"
retries = 2
targets = [${targets.map((target) => `"${HOST}:${target}"`).join(", ")}]

[backends.redis.health]
interval = "2s"
timeout = "1s"
rise = 2
fall = 3
send = "PING\\r\\n"
expect = "+PONG"
`;
}

function bunFloor(): Contender {
  return {
    name: "bun-floor",
    version: `bun ${Bun.version}`,
    skip: undefined,
    command: bunFloorCommand(
      "PORT BALANCE TARGETS… (accept, pick, connect, copy with write queues, pass FINs on; no health checks, retries, timeouts or metrics)",
    ),
    async start(balance, targets, tag) {
      return startBunFloor(tag, await freePort(), balance, targets);
    },
  };
}

async function haproxy(): Promise<Contender> {
  const bin = findHaproxy();
  return {
    name: "haproxy",
    version: await haproxyVersion(bin),
    skip: bin ? undefined : HAPROXY_MISSING,
    command:
      "haproxy -f haproxy.cfg -db (mode tcp, balance roundrobin | leastconn, retries 2 + redispatch, option redis-check inter 2s rise 2 fall 3, nbthread default, no logging)",
    start: (balance, targets, tag) => startHaproxy(bin!, tag, (port) => haproxyConfig(port, targets, balance)),
  };
}

function haproxyConfig(port: number, targets: number[], balance: BackendBalance): string {
  return `${haproxyHead(["retries 2", "option redispatch", "timeout check 1s"])}
frontend redis
  bind ${HOST}:${port}
  default_backend redis

backend redis
  balance ${HAPROXY_BALANCE[balance]}
  option redis-check
  default-server check inter 2s rise 2 fall 3
${targets.map((target, i) => `  server redis${i + 1} ${HOST}:${target}`).join("\n")}
`;
}

// ── Check ──────────────────────────────────────────────────────────────────────────────────

/** The server (by port) that answers a new connection to `port`: `INFO server` through it. */
async function servedBy(port: number): Promise<number> {
  const [info] = await exchange(port, [["INFO", "server"]]);
  const served = /^tcp_port:(\d+)/m.exec(String(info))?.[1];
  if (served === undefined) throw new Error(`INFO server through port ${port} has no tcp_port`);
  return Number(served);
}

/**
 * Before timing: PONG and a 64 KiB SET/GET through the instance (on whichever server it picks),
 * then CHECK_CONNECTIONS sequential connections must reach all three servers. Returns the split.
 */
async function check(instance: Instance, targets: number[], tag: string): Promise<number[]> {
  await checkRedisPath(instance.port, tag);
  const split = targets.map(() => 0);
  for (let i = 0; i < CHECK_CONNECTIONS; i++) {
    const at = targets.indexOf(await servedBy(instance.port));
    if (at < 0) throw new Error(`${tag}: a connection reached a server that is not a target`);
    split[at]!++;
  }
  if (split.some((n) => n === 0)) throw new Error(`${tag}: ${CHECK_CONNECTIONS} connections reached the servers ${split.join("/")}, not all three`);
  return split;
}

// ── Run ────────────────────────────────────────────────────────────────────────────────────

const NOTE =
  "three redis-servers behind one listener; median over rounds; vs HAProxy = ratio of medians in the same row and balance (higher is better); bun-floor = a bare Bun.listen/Bun.connect forwarder, what Bun itself costs.";

export async function main(args: string[]): Promise<void> {
  const opts = parseFlags(args);
  const all: Contender[] = [];
  for (const name of opts.contenders) {
    all.push(name === "tcprouter" ? await tcprouter(opts.tcprouterCmd) : name === "haproxy" ? await haproxy() : bunFloor());
  }
  for (const c of all) if (c.skip) say(`skip ${c.name}: ${c.skip}`);
  const runnable = all.filter((c) => !c.skip);
  const rows = BACKEND_ROWS.filter((row) => opts.rows.includes(row.id));
  const params = {
    suite: "backends",
    rounds: opts.rounds,
    requests: opts.requests,
    smoke: opts.smoke,
    targets: TARGETS,
    balances: opts.balances,
    rows: rows.map((row) => row.id),
  };
  const meta = await collectMeta(all, params);
  say(`bench backends: ${opts.rounds} round(s) of ${params.rows.join(",")} × ${opts.balances.join(",")} for ${runnable.map((c) => c.name).join(",")}`);

  const servers = [];
  for (let i = 0; i < TARGETS; i++) servers.push(await startRedis());
  const targets = servers.map((s) => s.port);

  const rowId = (row: RedisRow, balance: BackendBalance) => `${row.id}/${balance}`;
  const cells: Cell[] = [];
  const keyed = new Map<string, { balance: BackendBalance; title: string }>();
  const cellOf = (row: RedisRow, balance: BackendBalance, name: Name) => {
    const id = rowId(row, balance);
    let cell = cells.find((c) => c.row === id && c.contender === name);
    if (!cell) {
      cell = { row: id, title: `${row.title} ${balance}`, unit: "req/s", contender: name, samples: [], p50Samples: [], errors: [] };
      cells.push(cell);
      keyed.set(id, { balance, title: row.title });
    }
    return cell;
  };
  for (const balance of opts.balances) for (const row of rows) for (const c of runnable) cellOf(row, balance, c.name);

  // One instance per (balance, contender), up for the whole run.
  const instances = new Map<string, Instance>();
  const checks: Record<string, number[]> = {};
  for (const balance of opts.balances) {
    for (const c of runnable) {
      const tag = `${c.name}-${balance}`;
      try {
        const instance = await c.start(balance, targets, tag);
        instances.set(tag, instance);
        checks[tag] = await check(instance, targets, tag);
        say(`check ${tag}: PONG, 64 KiB SET/GET, ${CHECK_CONNECTIONS} connections over the servers ${checks[tag]!.join("/")}`);
      } catch (error) {
        const message = failure(error);
        say(`FAIL ${tag}: ${(error as Error).message}`);
        await instances.get(tag)?.stop();
        instances.delete(tag);
        for (const row of rows) cellOf(row, balance, c.name).errors.push(message);
      }
    }
  }

  // Warm-up, untimed: a tenth of each row through every instance.
  for (const instance of instances.values()) await warmUp(rows, instance.port, targets[0]!, opts.requests);
  say("warm-up done");

  for (let round = 0; round < opts.rounds; round++) {
    const order = rotated(runnable, round);
    for (const balance of opts.balances) {
      for (const row of rows) {
        for (const c of order) {
          const instance = instances.get(`${c.name}-${balance}`);
          if (instance === undefined) continue;
          const cell = cellOf(row, balance, c.name);
          const progress = (text: string) => say(roundLine(round, opts.rounds, rowId(row, balance), 22, c.name, 10, text));
          try {
            // redis-benchmark's GET key, on every server (runRedisRow resets it on one).
            if (row.args.includes("get")) for (const target of targets) await exchange(target, [["SET", BENCH_KEY, "xxx"]]);
            const sample = await runRedisRow(row, instance.port, targets[0]!, opts.requests);
            cell.samples.push(sample.rps);
            cell.p50Samples.push(sample.p50ms);
            progress(`${Math.round(sample.rps)} req/s`);
          } catch (error) {
            cell.errors.push(failure(error));
            progress(`FAILED ${(error as Error).message}`);
          }
        }
      }
    }
  }
  for (const instance of instances.values()) await instance.stop();
  for (const server of servers) await server.server.stop();

  const lines = summarize(cells);
  const table = tableOf(lines.map((line) => ({ line, ...keyed.get(line.row)! })));
  const errors = errorNotes(lines);
  // The machine is shared: the load at the end says whether something else ran meanwhile.
  const loadAtEnd = roundedLoad();
  const result = { ...meta, loadAtEnd, note: NOTE, checks, ratios: ratiosTo(lines, "tcprouter"), floorRatios: ratiosTo(lines, "bun-floor"), results: lines };
  publish(
    {
      text: `\n${headerText(meta)}\nload ${loadAtEnd.join(" ")} at the end\n\n${textTable(table)}\n${NOTE}\n${errors ? `${errors}\n` : ""}`,
      markdown: markdownTable(table),
      result,
    },
    opts,
    "backends",
  );
  if (lines.some((l) => l.median === null)) process.exitCode = 1;
}

// ── Table ──────────────────────────────────────────────────────────────────────────────────

/** row | balance | contender | median req/s | min..max | p50 ms | vs HAProxy, a blank line between rows. */
function tableOf(keyed: { line: Line; balance: string; title: string }[]): Table {
  const rows = keyed.map(({ line, balance, title }) => {
    const value = line.median === null ? "FAILED" : fmtRps(line.median);
    const range = line.min === null ? "-" : `${fmtRps(line.min)}..${fmtRps(line.max)}`;
    const ratio = line.contender !== "haproxy" && line.vsHaproxy !== null ? `${line.vsHaproxy.toFixed(2)}x` : "-";
    return [title, balance, line.contender, value, range, line.p50ms === null ? "-" : line.p50ms.toFixed(3), ratio];
  });
  return { head: ["row", "balance", "contender", "median req/s", "min..max", "p50 ms", "vs HAProxy"], rows, text: 3, groups: keyed.map((k) => k.line.row) };
}
