/**
 * The floor: the least a forwarder on Bun.listen/Bun.connect can do per session, to measure
 * how much of tcprouter's cost is Bun's own. No config, no health checks, no retries, no
 * timeouts, no metrics: accept, pick a target (round-robin or least-conn), connect, move bytes
 * both ways with write queues flushed on drain, pass each FIN on, close. Not for use: a failed
 * connect just closes the client.
 *
 *   bun bench/contenders/bun-floor.ts [--dial-on-data] PORT round-robin|least-conn TARGET_PORT...
 *
 * --dial-on-data: connect once the client's first bytes arrive (the least an SNI router waits
 * for, without reading the ClientHello), not at accept.
 */
import type { Socket } from "bun";

const HOST = "127.0.0.1";
const args = process.argv.slice(2);
const dialOnData = args[0] === "--dial-on-data";
const [portArg, balance, ...targetArgs] = dialOnData ? args.slice(1) : args;
const targets = targetArgs.map(Number);
if (!portArg || (balance !== "round-robin" && balance !== "least-conn") || targets.length === 0 || targets.some((p) => !(p > 0))) {
  console.error("usage: bun bench/contenders/bun-floor.ts [--dial-on-data] PORT round-robin|least-conn TARGET_PORT...");
  process.exit(2);
}
const active = targets.map(() => 0);
let next = 0;

function pick(): number {
  if (balance === "round-robin") return next++ % targets.length;
  let best = next++ % targets.length; // ties rotate
  for (let i = 0; i < targets.length; i++) if (active[i]! < active[best]!) best = i;
  return best;
}

interface Side {
  /** The socket this side's bytes go to; null until the upstream is open. */
  peer: Socket<Side> | null;
  /** Bytes the peer's write() did not take, or that came before the upstream opened. */
  queue: Uint8Array[];
  /** The reading socket is paused because the queue is not empty. */
  paused: boolean;
  /** This side's socket sent its FIN (or closed): pass it on once the queue is flushed. */
  ended: boolean;
  /** The FIN was passed on. */
  shut: boolean;
  target: number;
  other: Side | null;
  /** Counted in `active[target]` (from the pick until the upstream closes or fails). */
  counted: boolean;
}

const side = (target: number): Side => ({ peer: null, queue: [], paused: false, ended: false, shut: false, target, other: null, counted: false });

/** Least-conn counts a session from its pick (as HAProxy and tcprouter do), so a burst of accepts spreads. */
function release(down: Side): void {
  if (!down.counted) return;
  down.counted = false;
  active[down.target]!--;
}

/** Writes what `from` queued to its peer; `reader` (the socket `from` reads) pauses while bytes are left. */
function flush(from: Side, reader: Socket<Side> | null): void {
  const to = from.peer;
  if (to === null) return;
  while (from.queue.length > 0) {
    const chunk = from.queue[0]!;
    const n = to.write(chunk);
    if (n < chunk.length) {
      from.queue[0] = chunk.subarray(n);
      if (!from.paused && reader !== null) reader.pause();
      from.paused = true;
      return;
    }
    from.queue.shift();
  }
  if (from.paused && reader !== null) reader.resume();
  from.paused = false;
  if (from.ended && !from.shut) {
    from.shut = true;
    // The other direction is done too: close(2) sends the FIN, one system call instead of two.
    if (from.other!.shut) to.close();
    else to.shutdown();
  }
}

function forward(from: Side, reader: Socket<Side>, data: Uint8Array): void {
  if (from.peer !== null && from.queue.length === 0) {
    const n = from.peer.write(data);
    if (n === data.length) return;
    data = data.subarray(n);
    reader.pause();
    from.paused = true;
  }
  from.queue.push(data);
}

function end(from: Side, reader: Socket<Side> | null): void {
  if (from.ended) return;
  from.ended = true;
  flush(from, reader);
}

const upstream = {
  open(socket: Socket<Side>) {
    const down = socket.data;
    const up = down.other!;
    up.peer = socket;
    flush(up, down.peer);
  },
  data: (socket: Socket<Side>, data: Uint8Array) => forward(socket.data, socket, data),
  drain(socket: Socket<Side>) {
    const up = socket.data.other!;
    flush(up, socket.data.peer);
  },
  end: (socket: Socket<Side>) => end(socket.data, socket),
  close(socket: Socket<Side>) {
    release(socket.data);
    end(socket.data, null);
  },
  connectError(socket: Socket<Side>) {
    release(socket.data);
    socket.data.peer?.close();
  },
};

function dial(down: Side): void {
  Bun.connect<Side>({ hostname: HOST, port: targets[down.target]!, allowHalfOpen: true, socket: upstream, data: down }).catch(() => {});
}

Bun.listen<Side>({
  hostname: HOST,
  port: Number(portArg),
  allowHalfOpen: true,
  socket: {
    open(client) {
      const at = pick();
      const up = side(at);
      const down = side(at);
      up.other = down;
      down.other = up;
      down.peer = client;
      down.counted = true;
      active[at]!++;
      client.data = up;
      if (!dialOnData) dial(down);
    },
    data(client, data) {
      const up = client.data;
      if (dialOnData && up.peer === null && up.queue.length === 0) dial(up.other!);
      forward(up, client, data);
    },
    drain: (client) => flush(client.data.other!, client.data.peer),
    end: (client) => end(client.data, client),
    close(client) {
      const up = client.data;
      if (dialOnData && up.peer === null && up.queue.length === 0) release(up.other!); // closed before any byte: never dialled
      end(up, null);
    },
  },
});
console.error(`bun-floor: ${HOST}:${portArg} → ${targets.join(",")} (${balance}${dialOnData ? ", dial on data" : ""})`);
