/**
 * The backends suite (issue 3): three Redis servers behind one listener, tcprouter against
 * HAProxy with the same three servers and the same balance algorithm, both with Redis PING
 * health checks (2 s, rise 2, fall 3) and 2 retries on another server.
 *
 *   bun run bench/run.ts --suite backends [--rounds N] [--requests N] [--balance A[,B]] [--smoke]
 *
 * Rows: GET -c 50 (steady load, 50 long connections spread over the servers) and PING -c 50
 * -k 0 (a new connection per request: every request is a pick of a target, a connect and a
 * close, where the balancer costs most). Rounds interleaved (balance × row × contender, the
 * contender order rotated each round), medians over rounds, ratio tcprouter / HAProxy.
 */
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { ROOT, launch, findHaproxy, haproxyHead, type Instance } from "./contenders.ts";
import { DEFAULT_TCPROUTER_CMD, say } from "./flags.ts";
import { collectMeta, headerText } from "./meta.ts";
import { HOST, freePort } from "./net.ts";
import { StoppingError, isStopping, versionOf, workDir } from "./procs.ts";
import { checkRedisPath, runRedisRow, startRedis, type RedisRow } from "./redis.ts";
import { exchange } from "./resp.ts";
import { summarize, writeResults, type Cell, type Line } from "./table.ts";

export const BACKEND_BALANCES = ["round-robin", "least-conn"] as const;
export type BackendBalance = (typeof BACKEND_BALANCES)[number];
/** The same algorithm in HAProxy's words. */
const HAPROXY_BALANCE: Record<BackendBalance, string> = { "round-robin": "roundrobin", "least-conn": "leastconn" };

/** bun-floor (bench/bun-floor.ts): the least a Bun.listen/Bun.connect forwarder does, Bun's own cost. */
export const BACKEND_CONTENDERS = ["tcprouter", "haproxy", "bun-floor"] as const;
type Name = (typeof BACKEND_CONTENDERS)[number];

/** -k 0 runs 0.2 × --requests: long enough (~2 s here) that one slow second does not decide the row. */
export const BACKEND_ROWS: RedisRow[] = [
  { id: "get", title: "GET -c 50", args: ["-t", "get", "-c", "50"], scale: 1 },
  { id: "ping-k0", title: "PING -c 50 -k 0 (new conn/req)", args: ["-t", "ping_mbulk", "-c", "50", "-k", "0"], scale: 0.2 },
];
export const BACKEND_ROW_IDS = BACKEND_ROWS.map((row) => row.id);

const TARGETS = 3;
/** Sequential connections of the distribution check: 10 per server for round-robin. */
const CHECK_CONNECTIONS = 30;

export interface BackendsOptions {
  rounds: number;
  requests: number;
  smoke: boolean;
  balances: BackendBalance[];
  rows: string[];
  contenders: Name[];
  tcprouterCmd: string | undefined;
  json: boolean;
  markdown: boolean;
}

interface Contender {
  name: Name;
  version: string;
  skip: string | undefined;
  command: string;
  start(balance: BackendBalance, targets: number[], tag: string): Promise<Instance>;
}

async function tcprouter(cmd: string | undefined): Promise<Contender> {
  const command = cmd ?? DEFAULT_TCPROUTER_CMD;
  const pkg = (await Bun.file(join(ROOT, "package.json")).json().catch(() => ({}))) as { version?: string };
  return {
    name: "tcprouter",
    version: `tcprouter ${pkg.version ?? "?"}`,
    skip: undefined,
    command: `${command} --config tcprouter.toml --log-level warn (round-robin | least-conn, retries 2, PING health checks 2s rise 2 fall 3)`,
    async start(balance, targets, tag) {
      const port = await freePort();
      const file = join(workDir(), `${tag}.toml`);
      writeFileSync(file, tcprouterConfig(port, targets, balance));
      return launch(tag, ["bash", "-c", `exec ${command} --config ${file} --log-level warn`], port, ROOT);
    },
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
    command: "bun bench/bun-floor.ts PORT BALANCE TARGETS… (accept, pick, connect, copy with write queues, pass FINs on; no health checks, retries, timeouts or metrics)",
    async start(balance, targets, tag) {
      const port = await freePort();
      return launch(tag, [process.execPath, "bench/bun-floor.ts", String(port), balance, ...targets.map(String)], port, ROOT);
    },
  };
}

async function haproxy(): Promise<Contender> {
  const bin = findHaproxy();
  return {
    name: "haproxy",
    version: bin ? await versionOf([bin, "-v"]) : "not installed",
    skip: bin ? undefined : "haproxy not installed",
    command: "haproxy -f haproxy.cfg -db (mode tcp, balance roundrobin | leastconn, retries 2 + redispatch, option redis-check inter 2s rise 2 fall 3, nbthread default, no logging)",
    async start(balance, targets, tag) {
      const port = await freePort();
      const cfg = join(workDir(), `${tag}.cfg`);
      writeFileSync(cfg, haproxyConfig(port, targets, balance));
      return launch(tag, [bin!, "-f", cfg, "-db"], port);
    },
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


function fmtRps(x: number | null): string {
  return x === null ? "-" : Math.round(x).toLocaleString("en-US");
}

const COLUMNS = ["row", "balance", "contender", "median req/s", "min..max", "p50 ms", "vs HAProxy"];

function cellsOf(line: Line, balance: string, title: string): string[] {
  const value = line.median === null ? "FAILED" : fmtRps(line.median);
  const range = line.min === null ? "-" : `${fmtRps(line.min)}..${fmtRps(line.max)}`;
  const ratio = line.contender !== "haproxy" && line.vsHaproxy !== null ? `${line.vsHaproxy.toFixed(2)}x` : "-";
  return [title, balance, line.contender, value, range, line.p50ms === null ? "-" : line.p50ms.toFixed(3), ratio];
}

interface Keyed {
  line: Line;
  balance: string;
  title: string;
}

function textTable(rows: Keyed[]): string {
  const cells = [COLUMNS, ...rows.map((r) => cellsOf(r.line, r.balance, r.title))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const fmt = (c: string[]) => c.map((x, i) => (i < 3 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join("  ");
  const out = [fmt(cells[0]!), widths.map((w) => "-".repeat(w)).join("  ")];
  let previous = "";
  for (const [i, c] of cells.slice(1).entries()) {
    if (rows[i]!.line.row !== previous && previous !== "") out.push("");
    previous = rows[i]!.line.row;
    out.push(fmt(c));
  }
  return out.join("\n");
}

function markdownTable(rows: Keyed[]): string {
  const out = [`| ${COLUMNS.join(" | ")} |`, `|${COLUMNS.map((_, i) => (i < 3 ? "---" : "---:")).join("|")}|`];
  for (const r of rows) out.push(`| ${cellsOf(r.line, r.balance, r.title).join(" | ")} |`);
  return out.join("\n");
}

const NOTE =
  "three redis-servers behind one listener; median over rounds; vs HAProxy = ratio of medians in the same row and balance (higher is better); bun-floor = a bare Bun.listen/Bun.connect forwarder, what Bun itself costs.";

/** Runs the suite; resolves with true when every cell has a median. */
export async function runBackends(opts: BackendsOptions): Promise<boolean> {
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
        if (error instanceof StoppingError || isStopping()) throw new StoppingError();
        const message = (error as Error).message.split("\n")[0]!;
        say(`FAIL ${tag}: ${(error as Error).message}`);
        await instances.get(tag)?.stop();
        instances.delete(tag);
        for (const row of rows) cellOf(row, balance, c.name).errors.push(message);
      }
    }
  }

  // Warm-up, untimed: a tenth of each row through every instance (the JIT, for the Bun ones).
  for (const instance of instances.values()) {
    for (const row of rows) await runRedisRow(row, instance.port, targets[0]!, opts.requests / 10).catch(() => {});
  }
  say("warm-up done");

  for (let round = 0; round < opts.rounds; round++) {
    const order = runnable.map((_, i) => runnable[(i + round) % runnable.length]!);
    for (const balance of opts.balances) {
      for (const row of rows) {
        for (const c of order) {
          const instance = instances.get(`${c.name}-${balance}`);
          if (instance === undefined) continue;
          const cell = cellOf(row, balance, c.name);
          try {
            // redis-benchmark's GET key, on every server (runRedisRow resets it on one).
            if (row.args.includes("get")) for (const target of targets) await exchange(target, [["SET", "key:__rand_int__", "xxx"]]);
            const sample = await runRedisRow(row, instance.port, targets[0]!, opts.requests);
            cell.samples.push(sample.rps);
            cell.p50Samples.push(sample.p50ms);
            say(`round ${round + 1}/${opts.rounds}  ${rowId(row, balance).padEnd(22)} ${c.name.padEnd(10)} ${Math.round(sample.rps)} req/s`);
          } catch (error) {
            if (error instanceof StoppingError || isStopping()) throw new StoppingError();
            cell.errors.push((error as Error).message.split("\n")[0]!);
            say(`round ${round + 1}/${opts.rounds}  ${rowId(row, balance).padEnd(22)} ${c.name.padEnd(10)} FAILED ${(error as Error).message}`);
          }
        }
      }
    }
  }
  for (const instance of instances.values()) await instance.stop();
  for (const server of servers) await server.server.stop();

  const lines = summarize(cells);
  const table = lines.map((line) => ({ line, ...keyed.get(line.row)! }));
  const errors = lines
    .filter((l) => l.errors.length > 0)
    .map((l) => `${l.median === null ? "FAILED" : "partly failed"}: ${l.contender} / ${l.title} (${l.errors.length}x): ${l.errors[0]}`)
    .join("\n");
  const ratiosOf = (contender: string) =>
    Object.fromEntries(
      lines.filter((l) => l.contender === contender).map((l) => [l.row, l.vsHaproxy === null ? null : Math.round(l.vsHaproxy * 1000) / 1000]),
    );
  const ratios = ratiosOf("tcprouter");
  const floorRatios = ratiosOf("bun-floor");
  // The machine is shared: the load at the end says whether something else ran meanwhile.
  const loadAtEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const result = { ...meta, loadAtEnd, note: NOTE, checks, ratios, floorRatios, results: lines };
  const out = opts.json ? process.stderr : process.stdout;
  out.write(`\n${headerText(meta)}\nload ${loadAtEnd.join(" ")} at the end\n\n${textTable(table)}\n${NOTE}\n${errors ? `${errors}\n` : ""}`);
  if (opts.markdown) out.write(`\n${markdownTable(table)}\n`);
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  writeResults(result, opts.smoke, "backends");
  return lines.every((l) => l.median !== null);
}
