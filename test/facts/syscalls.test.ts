/**
 * Bun 1.4.5 facts behind CPU per request (docs/benchmarks.md, "Where CPU per request goes"):
 * the epoll_ctl and setsockopt calls one forwarded session costs, counted with strace on the
 * forwarder's process. A session is what `redis-benchmark -k 0` does: connect, send a
 * request, read the reply, FIN; the upstream answers and sends its FIN on the client's.
 *
 * The bare Bun forwarder (bench/contenders/bun-floor.ts) makes 7 epoll_ctl and 4 setsockopt
 * per session where HAProxy makes 3 and 2 (bench --suite syscalls): uSockets sets
 * TCP_NODELAY again once a connect completes, polls a half-open socket for EPOLLOUT after its
 * peer's FIN (then TCP_CORK 0 and a MOD to ERR|HUP on that writable event), and removes every
 * socket from epoll before close(2). If Bun changes any of this, the first test fails: read the
 * counts again and update the docs. The second test holds tcprouter to the floor: its own code
 * adds no call.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Child, dial, freePort, listen, spawn, spawnCli, waitFor, waitForListening, within } from "../helpers/net.ts";

const SESSIONS = 5;
const REQUEST = "*1\r\n$4\r\nPING\r\n";
const REPLY = "+PONG\r\n";
const hasStrace = Bun.which("strace") !== null;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** An upstream that answers each request with REPLY and sends its FIN on the client's, as Redis closes on EOF. */
function upstream(): number {
  const server = listen({ data: (peer) => void peer.write(REPLY), end: (peer) => peer.shutdown() });
  cleanup.push(() => server.stop());
  return server.port;
}

/** One session through the forwarder: the request, the exact reply, FIN, and the close. */
async function session(port: number): Promise<void> {
  const peer = await dial(port);
  peer.write(REQUEST);
  await waitFor(() => peer.bytesIn === REPLY.length || peer.closed, 5000, "the reply");
  expect(peer.text()).toBe(REPLY);
  peer.shutdown();
  await waitFor(() => peer.closed, 5000, "the close");
}

interface Counts {
  epollCtl: Record<"ADD" | "MOD" | "DEL", number>;
  setsockopt: Record<string, number>;
}

/** Runs SESSIONS sessions one after another with strace attached to `pid`; counts its calls. */
async function countCalls(pid: number, port: number): Promise<Counts> {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-syscalls-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, "strace.txt");
  await using strace = spawn(["strace", "-f", "-e", "trace=epoll_ctl,setsockopt", "-o", out, "-p", String(pid)]);
  await strace.stderrMatch(/attached/);
  await Bun.sleep(100); // every thread attached
  for (let n = 0; n < SESSIONS; n++) await session(port);
  await Bun.sleep(100); // the last close handled
  strace.proc.kill("SIGINT");
  await within(strace.proc.exited, 5000, "strace to detach");
  const counts: Counts = { epollCtl: { ADD: 0, MOD: 0, DEL: 0 }, setsockopt: {} };
  for (const line of readFileSync(out, "utf8").split("\n")) {
    const op = /epoll_ctl\(\d+, EPOLL_CTL_(ADD|MOD|DEL)/.exec(line);
    if (op !== null) counts.epollCtl[op[1] as "ADD" | "MOD" | "DEL"]++;
    const option = /setsockopt\(\d+, \w+, (\w+)/.exec(line);
    if (option !== null) counts.setsockopt[option[1]!] = (counts.setsockopt[option[1]!] ?? 0) + 1;
  }
  return counts;
}

async function stop(child: Child): Promise<void> {
  await child[Symbol.asyncDispose]();
}

/** Per session: ADD client and upstream; MOD upstream to EPOLLIN on connect, client to EPOLLOUT on its FIN, then to ERR|HUP; DEL both. */
const BUN_SESSION: Counts = {
  epollCtl: { ADD: 2 * SESSIONS, MOD: 3 * SESSIONS, DEL: 2 * SESSIONS },
  setsockopt: { TCP_NODELAY: 3 * SESSIONS, TCP_CORK: SESSIONS },
};

test.skipIf(!hasStrace)(
  "facts: a bare Bun.listen + Bun.connect forwarder makes 7 epoll_ctl and 4 setsockopt per session (HAProxy: 3 and 2)",
  async () => {
    const target = upstream();
    const port = freePort();
    const floor = spawn([process.execPath, "bench/contenders/bun-floor.ts", String(port), "round-robin", String(target)]);
    cleanup.push(() => stop(floor));
    await waitForListening(port, 10_000);
    await session(port); // warm: the first session's calls are not counted
    expect(await countCalls(floor.proc.pid, port)).toEqual(BUN_SESSION);
  },
  30_000,
);

test.skipIf(!hasStrace)(
  "tcprouter makes exactly the bare Bun forwarder's epoll_ctl and setsockopt calls per session",
  async () => {
    const target = upstream();
    const port = freePort();
    const router = spawnCli(["--listen", `127.0.0.1:${port}`, "--to", `127.0.0.1:${target}`, "--log-level", "warn"]);
    cleanup.push(() => stop(router));
    await waitForListening(port, 10_000);
    await session(port);
    expect(await countCalls(router.proc.pid, port)).toEqual(BUN_SESSION);
  },
  30_000,
);
