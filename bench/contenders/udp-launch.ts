/**
 * Starting UDP contenders: a UDP listener accepts no TCP connect to wait for, so these wait
 * until a probe datagram is answered through it (`launchProbed`). Also the free ports a UDP
 * suite needs (free for UDP, or for UDP and TCP at once), and the listeners both tcprouter and
 * nginx get from one description (`StreamServer`).
 */
import { HOST, freePort } from "../runner/net.ts";
import { logTail, startServer } from "../runner/procs.ts";
import type { Instance } from "./launch.ts";

/** One listener of a UDP contender: `port` → `target` on 127.0.0.1, UDP or TCP. */
export interface StreamServer {
  port: number;
  target: number;
  udp: boolean;
  /** UDP: a flow ends after this many datagrams from the target (tcprouter `responses`, nginx `proxy_responses`). */
  responses?: number;
  /** UDP: a flow with no datagram either way for this long ends (tcprouter `idle_timeout`, nginx `proxy_timeout`). */
  idleSeconds: number;
}

/** A UDP port that was free a moment ago on 127.0.0.1. */
export async function freeUdpPort(): Promise<number> {
  const probe = await Bun.udpSocket({ hostname: HOST, port: 0 });
  const port = probe.port;
  probe.close();
  return port;
}

/** A port free for TCP and for UDP on 127.0.0.1 (iperf3 -u: a TCP control connection and UDP data on one port). */
export async function freeDualPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    try {
      const probe = await Bun.udpSocket({ hostname: HOST, port });
      probe.close();
      return port;
    } catch {
      // taken for UDP: try another
    }
  }
  throw new Error("no port free for both TCP and UDP after 20 tries");
}

/**
 * Sends `payload` to 127.0.0.1:`port` from a fresh socket and resolves true once anything
 * comes back within `timeoutMs` (false otherwise).
 */
export async function udpAnswers(port: number, payload: Uint8Array, timeoutMs: number): Promise<boolean> {
  let answered: (ok: boolean) => void = () => {};
  const done = new Promise<boolean>((resolve) => {
    answered = resolve;
  });
  const socket = await Bun.udpSocket({
    hostname: HOST,
    port: 0,
    socket: {
      data: () => answered(true),
      error: () => {},
    },
  });
  const timer = setTimeout(() => answered(false), timeoutMs);
  try {
    socket.send(payload, port, HOST);
    return await done;
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}

const START_TIMEOUT_MS = 15_000;

/**
 * Starts `argv` (logs in the run's temp dir) and waits until `ready()` (a probe through its
 * UDP listener) is true, every 100 ms up to 15 s; fails with the log tail when it exits or
 * never answers. `pid` is the process whose tree's CPU and RSS are read.
 */
export async function launchProbed(tag: string, argv: string[], port: number, ready: () => Promise<boolean>, cwd?: string): Promise<Instance> {
  const server = startServer(tag, argv, cwd);
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    for (;;) {
      if (server.proc.exitCode !== null || server.proc.signalCode !== null) throw new Error("exited before it answered");
      if (await ready()) break;
      if (Date.now() > deadline) throw new Error(`no answer through ${HOST}:${port} after ${START_TIMEOUT_MS} ms`);
      await Bun.sleep(100);
    }
  } catch (error) {
    await server.stop();
    throw new Error(`${tag}: ${(error as Error).message}\n${logTail(server)}`);
  }
  return { port, pid: server.pid, stop: () => server.stop() };
}

/**
 * tcprouter's config for `servers`: one listener and one backend each (a UDP and a TCP
 * listener may share a port, not a backend), named by protocol and port.
 */
export function tcprouterUdpConfig(servers: StreamServer[]): string {
  return servers
    .map((s) => {
      const name = `${s.udp ? "udp" : "tcp"}-${s.port}`;
      const udp = s.udp ? `protocol = "udp"\nidle_timeout = "${s.idleSeconds}s"\n${s.responses ? `responses = ${s.responses}\n` : ""}` : "";
      return `[[listeners]]\nname = "${name}"\nlisten = "${HOST}:${s.port}"\n${udp}backend = "${name}"\n\n[backends.${name}]\ntargets = ["${HOST}:${s.target}"]\n`;
    })
    .join("\n");
}
