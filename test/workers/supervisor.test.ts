/** --workers: processes sharing one listener with SO_REUSEPORT, restarted by a supervisor. */
import { expect, test } from "bun:test";
import { dial, echo, freePort, HOST, listen, type Peer, spawnCli, waitFor } from "../helpers/net.ts";

function childPids(parent: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(parent)])
    .stdout.toString()
    .trim();
  return out === "" ? [] : out.split("\n").map(Number);
}

async function roundTrip(port: number, text: string): Promise<void> {
  const peer = await dial(port);
  peer.write(text);
  await waitFor(() => peer.bytesIn === text.length, 10_000, "the echo");
  expect(peer.text()).toBe(text);
  peer.shutdown();
  await waitFor(() => peer.closed, 10_000, "the session to end");
}

test("spreads sessions over two workers and replaces one killed with SIGKILL", async () => {
  await using upstream = listen(echo);
  const port = freePort();
  await using supervisor = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`, "--workers", "2", "--log-level", "debug"]);
  await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
  await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
  expect(childPids(supervisor.proc.pid)).toHaveLength(2);

  for (let i = 0; i < 40; i++) await roundTrip(port, `hello ${i}`);
  await waitFor(() => (supervisor.stderrText.match(/\] session /g)?.length ?? 0) >= 40, 10_000, "40 session lines");
  const perWorker = [1, 2].map((n) => supervisor.stderrText.split("\n").filter((line) => line.includes(`[worker ${n}] session `)).length);
  expect(perWorker[0]! + perWorker[1]!).toBe(40);
  expect(Math.min(...perWorker)).toBeGreaterThan(0); // the kernel hashed connections onto both

  const [victim] = childPids(supervisor.proc.pid);
  process.kill(victim!, "SIGKILL");
  await supervisor.stderrMatch(/worker \d \(pid \d+\) died \(signal SIGKILL\); restarting/, 10_000);
  await waitFor(() => childPids(supervisor.proc.pid).length === 2 && !childPids(supervisor.proc.pid).includes(victim!), 15_000, "a new worker");
  for (let i = 0; i < 10; i++) await roundTrip(port, `again ${i}`);

  supervisor.proc.kill("SIGTERM");
  expect(await supervisor.exited(15_000)).toBe(0);
  expect(supervisor.stderrText).toContain("all 2 workers stopped");
}, 60_000);

test("refuses --workers with port 0 and a bad count", async () => {
  for (const [args, message] of [
    [["--listen", `${HOST}:0`, "--to", `${HOST}:1`, "--workers", "2"], "workers must share a fixed port"],
    [["--to", `${HOST}:1`, "--workers", "zero"], `--workers: "zero" is not a whole number ≥ 1 (or auto)`],
  ] as const) {
    await using child = spawnCli([...args]);
    expect(await child.exited()).toBe(1);
    expect(child.stderrText).toContain(message);
    expect(child.stderrText.trim().split("\n")).toHaveLength(1);
  }
});

test("a port another program holds stops the supervisor before any worker starts: one line, exit 1", async () => {
  await using taken = listen(echo); // another program holds the port, without SO_REUSEPORT
  await using supervisor = spawnCli(["--listen", `${HOST}:${taken.port}`, "--to", `${HOST}:1`, "--workers", "2"]);
  expect(await supervisor.exited(15_000)).toBe(1);
  expect(supervisor.stderrText).toContain(`cannot listen on ${HOST}:${taken.port}: address already in use`);
  expect(supervisor.stderrText.trim().split("\n")).toHaveLength(1);
}, 30_000);

test("a worker that cannot start stops the supervisor with exit 1, not a restart loop", async () => {
  // The access log is opened by each worker: one it cannot open fails every start the same way.
  await using supervisor = spawnCli([
    "--listen",
    `${HOST}:${freePort()}`,
    "--to",
    `${HOST}:1`,
    "--workers",
    "2",
    "--access-log",
    "/nonexistent-dir/access.log",
  ]);
  expect(await supervisor.exited(15_000)).toBe(1);
  expect(supervisor.stderrText).toContain("access log: cannot open /nonexistent-dir/access.log: no such directory");
  expect(supervisor.stderrText).toMatch(/worker \d could not start \(exit code 1\): stopping/);
  expect(supervisor.stderrText).not.toContain("restarting");
  expect(childPids(supervisor.proc.pid)).toHaveLength(0);
}, 30_000);

test("two workers append whole access log lines to one file", async () => {
  const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-workers-"));
  await using _dir = { [Symbol.asyncDispose]: async () => rmSync(dir, { recursive: true, force: true }) };
  await using upstream = listen(echo);
  const port = freePort();
  const file = join(dir, "access.log");
  await using supervisor = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`, "--workers", "2", "--access-log", file]);
  await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
  await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
  for (let i = 0; i < 30; i++) await roundTrip(port, `line ${i}`);
  supervisor.proc.kill("SIGTERM");
  expect(await supervisor.exited(15_000)).toBe(0);
  const lines = readFileSync(file, "utf8").trim().split("\n");
  expect(lines).toHaveLength(30);
  for (const line of lines) expect(line).toMatch(/^time=\S+ .*reason=client_fin/);
}, 60_000);

// Regression: each worker bound its own SO_REUSEPORT socket, so the connections the kernel had
// queued on a worker's socket were reset when that worker died (3 in 67k under churn). The
// supervisor now binds each listener once and every worker accepts from the same socket.
test("connections queued while a worker is killed with SIGKILL are served by the others: none reset", async () => {
  await using upstream = listen(echo);
  const port = freePort();
  await using supervisor = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`, "--workers", "2"]);
  await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
  await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
  const [victim, survivor] = childPids(supervisor.proc.pid);
  process.kill(victim!, "SIGSTOP");
  process.kill(survivor!, "SIGSTOP");
  const peers: Peer[] = [];
  try {
    // Both workers are stopped: the kernel completes these handshakes into the accept queue.
    for (let i = 0; i < 20; i++) {
      const peer = await dial(port);
      peer.write(`ping ${String(i).padStart(2, "0")}`);
      peers.push(peer);
    }
    process.kill(victim!, "SIGKILL");
    process.kill(survivor!, "SIGCONT");
    await waitFor(() => peers.every((peer) => peer.bytesIn === 7 || peer.hungUp), 15_000, "every queued connection to be served or reset");
    expect(peers.filter((peer) => peer.hungUp)).toHaveLength(0);
    expect(peers.map((peer) => peer.text())).toEqual(peers.map((_, i) => `ping ${String(i).padStart(2, "0")}`));
  } finally {
    for (const peer of peers) peer.terminate();
    for (const pid of childPids(supervisor.proc.pid)) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {}
    }
  }
}, 30_000);

test("a unix listener works with --workers 2, over the socket file a killed process left: both workers accept on the one socket", async () => {
  const { existsSync, mkdtempSync, rmSync } = await import("node:fs");
  const dir = mkdtempSync("/tmp/tcprouter-unix-workers-");
  await using upstream = listen(echo);
  try {
    // A process killed with SIGKILL leaves its socket file: the supervisor removes it (nobody listens).
    const holder = Bun.spawn([process.execPath, "-e", `Bun.listen({ unix: "${dir}/router.sock", socket: { data() {} } }); await Bun.sleep(60_000);`]);
    await waitFor(() => existsSync(`${dir}/router.sock`), 5000, "the other process's socket file");
    holder.kill("SIGKILL");
    await holder.exited;
    expect(existsSync(`${dir}/router.sock`)).toBe(true);
    await using supervisor = spawnCli(["--listen", `unix:${dir}/router.sock`, "--to", `${HOST}:${upstream.port}`, "--workers", "2"]);
    await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
    await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
    for (let i = 0; i < 10; i++) {
      await using peer = await dial({ unix: `${dir}/router.sock` });
      peer.write(`unix ${i}`);
      await waitFor(() => peer.text() === `unix ${i}`, 5000, "an echo through the unix listener");
    }
    expect(supervisor.stderrText).not.toContain("address already in use");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
