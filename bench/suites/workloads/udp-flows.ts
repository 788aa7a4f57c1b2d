/**
 * Memory per idle UDP flow: N client sockets (each its own source port, so each its own flow
 * in the proxy) send one datagram each through a fresh contender instance to a UDP echo
 * server; once every client has its echo, the contender's process-tree RSS (VmRSS summed over
 * the process and its descendants, e.g. nginx's workers) is compared with the one before:
 * (after − before) / N in KiB. The echo server and the clients run in the bench process.
 */
import type { udp } from "bun";
import { HOST } from "../../runner/net.ts";
import { treeRssKiB } from "../../runner/procs.ts";

/** A UDP echo server on 127.0.0.1 (every datagram goes back to its sender as it came). */
export async function startUdpEcho(): Promise<{ port: number; close(): void }> {
  const socket = await Bun.udpSocket({
    hostname: HOST,
    port: 0,
    socket: {
      data(sock, data, port, address) {
        sock.send(data, port, address);
      },
      error() {},
    },
  });
  return { port: socket.port, close: () => socket.close() };
}

/** Clients opened and sent from at once. */
const BATCH = 200;
/** Per batch: wait this long for the echoes, then send again from the clients still waiting. */
const RESEND_MS = 1000;
const TRIES = 4;
const SETTLE_MS = 1000;
const WARM_UP = 20;

interface Client {
  socket: udp.Socket<"buffer">;
  answered: boolean;
}

/** Opens `count` clients that each send one datagram to `port` and wait for its echo (resent up to 3 times). */
async function openFlows(port: number, count: number, into: Client[]): Promise<void> {
  const start = into.length;
  while (into.length - start < count) {
    const batch: Client[] = [];
    const n = Math.min(BATCH, count - (into.length - start));
    for (let i = 0; i < n; i++) {
      const client: Client = { answered: false } as Client;
      client.socket = await Bun.udpSocket({
        hostname: HOST,
        port: 0,
        socket: {
          data() {
            client.answered = true;
          },
          error() {},
        },
      });
      batch.push(client);
      into.push(client);
    }
    const payload = Buffer.from("flow");
    for (let attempt = 0; attempt < TRIES; attempt++) {
      const waiting = batch.filter((c) => !c.answered);
      if (waiting.length === 0) break;
      for (const c of waiting) c.socket.send(payload, port, HOST);
      const deadline = Date.now() + RESEND_MS;
      while (Date.now() < deadline && batch.some((c) => !c.answered)) await Bun.sleep(10);
    }
    const missing = batch.filter((c) => !c.answered).length;
    if (missing > 0) throw new Error(`${missing} of ${n} clients got no echo after ${TRIES} sends (${into.length - start - n} flows open before)`);
  }
}

export interface FlowSample {
  kibPerFlow: number;
  beforeKiB: number;
  afterKiB: number;
  flows: number;
}

/** Measures `pid`'s tree RSS before and after `count` flows through `port` (a fresh instance in front of the echo server). */
export async function measureFlows(pid: number, port: number, count: number): Promise<FlowSample> {
  const clients: Client[] = [];
  try {
    // warm-up: a few flows first, so lazily allocated per-process state is not counted per flow
    await openFlows(port, WARM_UP, clients);
    await Bun.sleep(SETTLE_MS);
    const beforeKiB = treeRssKiB(pid);
    await openFlows(port, count, clients);
    await Bun.sleep(SETTLE_MS);
    const afterKiB = treeRssKiB(pid);
    return { kibPerFlow: (afterKiB - beforeKiB) / count, beforeKiB, afterKiB, flows: count };
  } finally {
    for (const c of clients) c.socket.close();
  }
}
