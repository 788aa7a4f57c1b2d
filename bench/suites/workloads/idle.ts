/**
 * Memory per idle session: open N idle connections through a fresh contender instance to the
 * bench Redis, wait until Redis counts them all, and compare the contender's process-tree RSS
 * before and after. The result is (after - before) / N in KiB.
 */
import type { Socket } from "bun";
import { HOST } from "../../runner/net.ts";
import { treeRssKiB } from "../../runner/procs.ts";
import { exchange } from "./resp.ts";

/** Connections opened at once; keeps the accept backlog of every contender happy. */
const IN_FLIGHT = 100;
const OPEN_TIMEOUT_MS = 60_000;
const SETTLE_MS = 1000;

/** Handlers shared by all idle sockets: they only need to stay open. */
const idleHandlers = {
  data() {},
  error() {},
  close() {},
};

async function connectedClients(redisPort: number): Promise<number> {
  const [info] = await exchange(redisPort, [["INFO", "clients"]]);
  const m = /connected_clients:(\d+)/.exec(info instanceof Buffer ? info.toString() : "");
  if (!m) throw new Error("INFO clients gave no connected_clients");
  return Number(m[1]);
}

export interface IdleSample {
  kibPerSession: number;
  beforeKiB: number;
  afterKiB: number;
}

/** Opens `count` sessions to `port` (forwarded to `redisPort`), measures `pid`'s tree RSS. */
export async function measureIdle(pid: number, port: number, redisPort: number, count: number): Promise<IdleSample> {
  const sockets: Socket<undefined>[] = [];
  try {
    // warm-up: a few sessions so lazily allocated per-process state is not counted per session
    for (let i = 0; i < 20; i++) sockets.push(await Bun.connect({ hostname: HOST, port, socket: idleHandlers }));
    for (const s of sockets.splice(0)) s.end();
    await Bun.sleep(SETTLE_MS);

    const baseline = await connectedClients(redisPort);
    const beforeKiB = treeRssKiB(pid);
    const deadline = Date.now() + OPEN_TIMEOUT_MS;
    while (sockets.length < count) {
      if (Date.now() > deadline) throw new Error(`opened only ${sockets.length}/${count} idle sessions in time`);
      const batch = Math.min(IN_FLIGHT, count - sockets.length);
      const opened = await Promise.allSettled(Array.from({ length: batch }, () => Bun.connect({ hostname: HOST, port, socket: idleHandlers })));
      for (const r of opened) if (r.status === "fulfilled") sockets.push(r.value);
      const failed = opened.find((r) => r.status === "rejected");
      if (failed) throw new Error(`idle connect failed after ${sockets.length} sessions: ${String(failed.reason)}`);
    }
    // every session is complete once Redis has accepted its upstream connection
    while ((await connectedClients(redisPort)) < baseline + count) {
      if (Date.now() > deadline) throw new Error(`Redis saw fewer than ${count} new clients in time`);
      await Bun.sleep(100);
    }
    await Bun.sleep(SETTLE_MS);
    const afterKiB = treeRssKiB(pid);
    return { kibPerSession: (afterKiB - beforeKiB) / count, beforeKiB, afterKiB };
  } finally {
    for (const s of sockets) s.end();
  }
}
