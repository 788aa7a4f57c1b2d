/**
 * Redis replication and Sentinel for the failover tests: a primary with replicas
 * (`redis-server --replicaof`), and sentinels (Debian's `redis-sentinel`) watching it, with
 * config files in a temp dir and short `down-after-milliseconds` / `failover-timeout` so a
 * failover takes ~1–3 s. Everything is on loopback, on free ports, and disposable.
 */
import type { Socket } from "bun";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, HOST, run, spawn, waitFor, within, type Child } from "./net.ts";
import { once } from "./redis.ts";

export const hasSentinel = ["redis-server", "redis-cli", "redis-sentinel"].every((name) => Bun.which(name) !== null);

export interface Node extends AsyncDisposable {
  port: number;
  child: Child;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on its port with its arguments (a killed primary comes back, Sentinel then demotes it). */
  restart(): Promise<void>;
}

/** A redis-server on `port` with `args` (persistence off), answering PING before this resolves. */
export async function startNode(port: number, args: string[] = [], password?: string): Promise<Node> {
  // A full sync writes an RDB file (on the primary and the replica): in a temp dir, not the repo.
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-redis-"));
  const cmd = ["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", dir, ...args];
  const node = { port, child: null as unknown as Child } as Node;
  const start = async () => {
    node.child = spawn(cmd);
    await waitFor(
      async () => {
        if (node.child.proc.exitCode !== null) throw new Error(`redis-server exited: ${node.child.stdoutText}${node.child.stderrText}`);
        const auth = password === undefined ? [] : ["--no-auth-warning", "-a", password];
        return (await run(["redis-cli", "-p", String(port), ...auth, "ping"], 5000)).stdout.trim() === "PONG";
      },
      10_000,
      `redis-server on port ${port}`,
    );
  };
  node.kill = async () => {
    const proc = node.child.proc;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await within(proc.exited, 5000, `redis-server ${port} to die`);
  };
  node.restart = start;
  node[Symbol.asyncDispose] = async () => {
    await node.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await start();
  } catch (error) {
    await node[Symbol.asyncDispose]();
    throw error;
  }
  return node;
}

export interface Replication extends AsyncDisposable {
  primary: Node;
  replicas: Node[];
  nodes: Node[];
}

/** A primary and `replicas` replicas of it, each replica in sync (master_link_status:up) before this resolves. */
export async function startReplication(replicas: number, options: { password?: string } = {}): Promise<Replication> {
  const auth = options.password === undefined ? [] : ["--requirepass", options.password, "--masterauth", options.password];
  const nodes: Node[] = [];
  const dispose = async () => void (await Promise.all(nodes.map((node) => node[Symbol.asyncDispose]())));
  try {
    const primary = await startNode(freePort(), auth, options.password);
    nodes.push(primary);
    for (let i = 0; i < replicas; i++) nodes.push(await startNode(freePort(), [...auth, "--replicaof", HOST, String(primary.port)], options.password));
    for (const replica of nodes.slice(1)) {
      await waitFor(
        async () => /master_link_status:up/.test(await info(replica.port, "replication", options.password)),
        10_000,
        `replica ${replica.port} in sync`,
      );
    }
    return { primary, replicas: nodes.slice(1), nodes, [Symbol.asyncDispose]: dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** `INFO section` of the node on `port`, "" when it does not answer. */
export async function info(port: number, section: string, password?: string): Promise<string> {
  const auth = password === undefined ? [] : ["--no-auth-warning", "-a", password];
  return (await run(["redis-cli", "-p", String(port), ...auth, "info", section], 5000)).stdout;
}

/** The role a node reports (`master`, `slave`), or null when it does not answer. */
export async function roleOf(port: number): Promise<string | null> {
  try {
    const reply = await once(port, ["ROLE"]);
    return Array.isArray(reply) && typeof reply[0] === "string" ? reply[0] : null;
  } catch {
    return null;
  }
}

export interface Sentinels extends AsyncDisposable {
  ports: number[];
  children: Child[];
  /** `SENTINEL get-master-addr-by-name` of the first sentinel that answers: the primary's port, or null. */
  masterPort(): Promise<number | null>;
}

/**
 * `n` sentinels watching `primary` as `name` (quorum ⌊n/2⌋+1), each with its own config file
 * (Sentinel rewrites it) in a temp dir; every sentinel has seen the replicas and the other
 * sentinels before this resolves, so a failover can start at once.
 */
export async function startSentinels(
  n: number,
  primary: number,
  replicas: number,
  options: { name?: string; downAfter?: number; failoverTimeout?: number } = {},
): Promise<Sentinels> {
  const name = options.name ?? "mymaster";
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-sentinel-"));
  const ports: number[] = [];
  const children: Child[] = [];
  const dispose = async () => {
    for (const child of children) await child[Symbol.asyncDispose]();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = freePort();
      const file = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        file,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          `sentinel monitor ${name} ${HOST} ${primary} ${Math.floor(n / 2) + 1}`,
          `sentinel down-after-milliseconds ${name} ${options.downAfter ?? 500}`,
          `sentinel failover-timeout ${name} ${options.failoverTimeout ?? 2000}`,
          `sentinel parallel-syncs ${name} ${replicas}`,
          "",
        ].join("\n"),
      );
      children.push(spawn(["redis-sentinel", file]));
      ports.push(port);
    }
    for (const port of ports) {
      await waitFor(
        async () => {
          const reply = await once(port, ["SENTINEL", "MASTER", name]).catch(() => null);
          if (!Array.isArray(reply)) return false;
          const fields = new Map<string, string>();
          for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), String(reply[i + 1]));
          return Number(fields.get("num-slaves")) >= replicas && Number(fields.get("num-other-sentinels")) >= n - 1;
        },
        15_000,
        `sentinel ${port} to see ${replicas} replicas and ${n - 1} other sentinels`,
      );
    }
    const masterPort = async () => {
      for (const port of ports) {
        const reply = await once(port, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]).catch(() => null);
        if (Array.isArray(reply) && reply.length === 2) return Number(reply[1]);
      }
      return null;
    };
    return { ports, children, masterPort, [Symbol.asyncDispose]: dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Fake sentinels (Bun.listen peers that speak just enough RESP), for tests that need no Redis

export interface FakeState {
  /** The port get-master-addr-by-name answers with; null = "no such master". */
  master: number | null;
  subscribers: Socket<unknown>[];
  asked: number;
}

const bulk = (text: string) => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;

/** Answers get-master-addr-by-name with `state.master`, and SUBSCRIBE with its ack; one command per read is enough here. */
export function fakeSentinel(state: FakeState, opened: { stop(closeActive: boolean): void }[]): number {
  const server = Bun.listen<unknown>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, chunk) {
        const text = chunk.toString();
        if (text.includes("get-master-addr-by-name")) {
          state.asked++;
          socket.write(state.master === null ? "*-1\r\n" : `*2\r\n${bulk("127.0.0.1")}${bulk(String(state.master))}`);
        } else if (text.includes("SUBSCRIBE")) {
          state.subscribers.push(socket);
          socket.write(`*3\r\n${bulk("subscribe")}${bulk("+switch-master")}:1\r\n`);
        }
      },
      close(socket) {
        const at = state.subscribers.indexOf(socket);
        if (at >= 0) state.subscribers.splice(at, 1);
      },
      error() {},
    },
  });
  opened.push(server);
  return server.port;
}

export function publish(state: FakeState, from: number, to: number): void {
  const payload = `mymaster 127.0.0.1 ${from} 127.0.0.1 ${to}`;
  for (const socket of state.subscribers) socket.write(`*3\r\n${bulk("message")}${bulk("+switch-master")}${bulk(payload)}`);
}
