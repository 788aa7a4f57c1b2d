/**
 * The failover workload: Redis replication under Redis Sentinel on loopback (1 primary,
 * 2 replicas, 3 sentinels; short down-after-milliseconds and failover-timeout so a failover
 * takes ~1–3 s), the faults (SENTINEL FAILOVER, SIGKILL of the primary), and the two client
 * kinds whose writes are timed: a fresh connection per write, and one kept connection that
 * reconnects when it is closed. Each write records when it started, its reply and the node
 * that took it (`INFO server` tcp_port, in the same round trip).
 */
import { writeFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { HOST, freePort, waitForPort } from "../../runner/net.ts";
import { run, startServer, workDir, type Server } from "../../runner/procs.ts";
import { encode } from "./resp.ts";

export const MASTER = "mymaster";

export interface Cluster {
  nodes: { port: number; server: Server }[];
  sentinels: number[];
  stop(): Promise<void>;
}

async function cli(port: number, args: string[]): Promise<string> {
  return (await run(["redis-cli", "-h", HOST, "-p", String(port), ...args], 5000)).stdout.trim();
}

/** The port a majority of sentinels names as the primary (the first answer here), or null. */
export async function sentinelPrimary(sentinels: number[]): Promise<number | null> {
  for (const port of sentinels) {
    const lines = (await cli(port, ["SENTINEL", "get-master-addr-by-name", MASTER])).split("\n");
    if (lines.length === 2 && /^\d+$/.test(lines[1]!)) return Number(lines[1]);
  }
  return null;
}

async function waitUntil(what: string, ms: number, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** A fresh primary, 2 replicas in sync, and 3 sentinels that see them all and each other. */
export async function startCluster(tag: string): Promise<Cluster> {
  const dir = workDir();
  const nodes: Cluster["nodes"] = [];
  const sentinelServers: Server[] = [];
  const sentinels: number[] = [];
  const stop = async () => void (await Promise.all([...nodes.map((n) => n.server.stop()), ...sentinelServers.map((s) => s.stop())]));
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const argv = ["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"];
      if (i > 0) argv.push("--replicaof", HOST, String(nodes[0]!.port));
      const server = startServer(`${tag}-redis-${port}`, argv);
      await waitForPort(port, 10_000, () => server.proc.exitCode === null);
      nodes.push({ port, server });
    }
    for (const node of nodes.slice(1))
      await waitUntil(`replica ${node.port} in sync`, 10_000, async () => (await cli(node.port, ["INFO", "replication"])).includes("master_link_status:up"));
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const file = join(dir, `${tag}-sentinel-${port}.conf`);
      writeFileSync(
        file,
        `port ${port}\nbind ${HOST}\ndir ${dir}\nsentinel monitor ${MASTER} ${HOST} ${nodes[0]!.port} 2\n` +
          `sentinel down-after-milliseconds ${MASTER} 500\nsentinel failover-timeout ${MASTER} 2000\nsentinel parallel-syncs ${MASTER} 2\n`,
      );
      const server = startServer(`${tag}-sentinel-${port}`, ["redis-sentinel", file]);
      sentinelServers.push(server);
      await waitForPort(port, 10_000, () => server.proc.exitCode === null);
      sentinels.push(port);
    }
    for (const port of sentinels) {
      await waitUntil(`sentinel ${port} to see 2 replicas and 2 sentinels`, 15_000, async () => {
        const text = await cli(port, ["SENTINEL", "MASTER", MASTER]);
        const field = (name: string) => Number(new RegExp(`^${name}\\n(\\d+)$`, "m").exec(text)?.[1] ?? 0);
        return field("num-slaves") >= 2 && field("num-other-sentinels") >= 2;
      });
    }
    return { nodes, sentinels, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export type Fault = "failover" | "kill";

/** Starts the fault; returns when it was started (ms since the epoch). */
export async function fault(cluster: Cluster, kind: Fault): Promise<number> {
  const primary = await sentinelPrimary(cluster.sentinels);
  const at = Date.now();
  if (kind === "failover") {
    const answer = await cli(cluster.sentinels[0]!, ["SENTINEL", "FAILOVER", MASTER]);
    if (answer !== "OK") throw new Error(`SENTINEL FAILOVER replied ${answer}`);
  } else {
    const node = cluster.nodes.find((n) => n.port === primary);
    if (node === undefined) throw new Error(`no node on the primary's port ${primary}`);
    node.server.proc.kill("SIGKILL");
    await node.server.proc.exited;
  }
  return at;
}

/** Watches one sentinel's +switch-master: `at` is when the bench saw it (0 until then). */
export function watchSwitch(sentinel: number): { at: number; to: number; stop(): void } {
  const proc = Bun.spawn(["redis-cli", "-h", HOST, "-p", String(sentinel), "--csv", "SUBSCRIBE", "+switch-master"], { stdout: "pipe", stderr: "ignore" });
  const state = { at: 0, to: 0, stop: () => proc.kill("SIGKILL") };
  void (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk, { stream: true });
      const match = new RegExp(`"message","\\+switch-master","${MASTER} \\S+ \\d+ \\S+ (\\d+)"`).exec(text);
      if (match !== null && state.at === 0) {
        state.at = Date.now();
        state.to = Number(match[1]);
      }
    }
  })().catch(() => {});
  return state;
}

// ── Clients ─────────────────────────────────────────────────────────────────────────────────

export interface Write {
  /** ms since the epoch when the write was sent. */
  at: number;
  /** "OK", an error reply (READONLY …), or "failed" (refused, closed, timed out). */
  reply: string;
  /** The node that answered OK (its tcp_port), 0 otherwise. */
  node: number;
}

const WRITE_TIMEOUT = 1000;

/** One connection that answers commands in order; `closed` once the peer or an error ended it. */
class Connection {
  private buffer = Buffer.alloc(0);
  private waiting: ((reply: string | Buffer | null) => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      for (let reply = this.next(); reply !== undefined; reply = this.next()) this.waiting.shift()?.(reply);
    });
    const end = () => {
      this.closed = true;
      for (const resolve of this.waiting.splice(0)) resolve(null);
    };
    socket.on("close", end);
    socket.on("error", end);
  }

  static open(port: number): Promise<Connection | null> {
    return new Promise((resolve) => {
      const socket = createConnection({ host: HOST, port });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(null);
      }, WRITE_TIMEOUT);
      socket.once("error", () => {
        clearTimeout(timer);
        resolve(null);
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new Connection(socket));
      });
    });
  }

  /** One simple-string, error or bulk reply (all these commands give); undefined while incomplete. */
  private next(): string | Buffer | undefined {
    const eol = this.buffer.indexOf("\r\n");
    if (eol < 0) return undefined;
    const type = this.buffer[0];
    const line = this.buffer.toString("latin1", 1, eol);
    if (type === 0x24) {
      const n = Number(line);
      if (n < 0) {
        this.buffer = this.buffer.subarray(eol + 2);
        return Buffer.alloc(0);
      }
      if (this.buffer.length < eol + 4 + n) return undefined;
      const value = this.buffer.subarray(eol + 2, eol + 2 + n);
      this.buffer = this.buffer.subarray(eol + 4 + n);
      return value;
    }
    this.buffer = this.buffer.subarray(eol + 2);
    return type === 0x2d ? `-${line}` : line;
  }

  /** SET then INFO server, pipelined: the write's reply and the node that took it. */
  async write(key: string): Promise<Write> {
    const at = Date.now();
    if (this.closed) return { at, reply: "failed", node: 0 };
    const replies = [0, 1].map(() => new Promise<string | Buffer | null>((resolve) => this.waiting.push(resolve)));
    this.socket.write(Buffer.concat([encode(["SET", key, "1"]), encode(["INFO", "server"])]));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), WRITE_TIMEOUT)));
    const [set, info] = await Promise.race([Promise.all(replies), timeout.then(() => [null, null] as const)]);
    clearTimeout(timer);
    if (set === null || info === null) {
      this.close();
      return { at, reply: "failed", node: 0 };
    }
    const reply = String(set).replace(/^-/, "");
    const node = reply === "OK" ? Number(/tcp_port:(\d+)/.exec(String(info))?.[1] ?? 0) : 0;
    return { at, reply, node };
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

export type ClientKind = "fresh" | "kept";

/** Writes through `port` every `pace` ms until stopped: a fresh connection each time, or one kept (and reopened once closed). */
export function writeLoop(port: number, kind: ClientKind, pace = 10) {
  const writes: Write[] = [];
  let running = true;
  const done = (async () => {
    let kept: Connection | null = null;
    for (let i = 0; running && i < 1_000_000; i++) {
      const started = Date.now();
      if (kind === "fresh") {
        const connection = await Connection.open(port);
        writes.push(connection === null ? { at: started, reply: "failed", node: 0 } : await connection.write(`fresh-${i}`));
        connection?.close();
      } else {
        if (kept === null || kept.closed) kept = await Connection.open(port);
        writes.push(kept === null ? { at: started, reply: "failed", node: 0 } : await kept.write(`kept-${i}`));
      }
      const left = pace - (Date.now() - started);
      if (left > 0) await Bun.sleep(left);
    }
    kept?.close();
  })();
  return {
    writes,
    async stop() {
      running = false;
      await done;
    },
  };
}

/**
 * From the fault: the outage (ms until the first write of the final run of writes that all
 * succeeded on `primary`), and the writes answered OK by another node after `after` (the
 * Sentinel event): writes that reached a demoted or stale node.
 */
export function judge(
  writes: readonly Write[],
  faultAt: number,
  primary: number,
  after: number,
): { outageMs: number | null; strayWrites: number; writes: number } {
  const since = writes.filter((w) => w.at >= faultAt);
  let lastBad = -1;
  since.forEach((w, i) => {
    if (w.reply !== "OK" || w.node !== primary) lastBad = i;
  });
  const steady = since[lastBad + 1];
  const outageMs = lastBad < 0 ? 0 : steady === undefined ? null : steady.at - faultAt;
  const strayWrites = since.filter((w) => w.at >= after && w.reply === "OK" && w.node !== primary).length;
  return { outageMs, strayWrites, writes: since.length };
}
