/**
 * The open file limit. Bun 1.4 retries accept() in a busy loop once it fails with EMFILE
 * (oven-sh/bun PR #32705), so the router refuses connections before the limit is reached:
 * the CPU stays idle, one warning is logged per burst, and the forwarder serves again as soon
 * as sessions close.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { FD_RESERVE, openFileLimit, sessionCapacity } from "../../src/util/fd-limit.ts";
import { dial, echo, freePort, HOST, listen, spawn, waitFor, waitForListening, type Peer } from "../helpers/net.ts";

test("reads the soft open file limit of this process", () => {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((text) => text.startsWith("Max open files"))!;
  expect(openFileLimit()).toBe(Number(line.split(/\s{2,}/)[1]));
});

test("leaves two descriptors per session and a reserve", () => {
  expect(sessionCapacity(1024)).toBe((1024 - FD_RESERVE) / 2);
  expect(sessionCapacity(FD_RESERVE)).toBe(1);
  expect(sessionCapacity(0)).toBe(0);
});

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

test("refuses connections beyond the open file limit without spinning, then serves again", async () => {
  await using upstream = listen(echo);
  const port = freePort();
  // ulimit -n 120 leaves room for (120 - 64) / 2 = 28 sessions.
  await using child = spawn([
    "bash",
    "-c",
    `ulimit -n 120 && exec "${process.execPath}" run src/cli.ts --listen ${HOST}:${port} --to ${HOST}:${upstream.port} --log-level warn`,
  ]);
  await waitForListening(port, 10_000);
  const held: Peer[] = [];
  try {
    for (let i = 0; i < 60; i++) held.push(await dial(port));
    for (const peer of held) peer.write("x");
    // Each client is either refused or served. Wait for all of them: a session still open from
    // waitForListening's probe may take a place, so one more than 60 - 28 can be refused, and
    // its close may come after the first 32.
    await waitFor(() => held.every((peer) => peer.hungUp || peer.bytesIn === 1), 10_000, "every client to be refused or echoed");
    const served = held.filter((peer) => !peer.hungUp);
    expect(served.every((peer) => peer.text() === "x")).toBe(true);
    expect(served.length).toBeLessThanOrEqual(28);
    expect(served.length).toBeGreaterThanOrEqual(20);

    // Hold the sessions open and keep knocking: accept must not fail, so the CPU stays idle.
    const before = cpuTicks(child.proc.pid);
    for (let i = 0; i < 20; i++) (await dial(port)).terminate();
    await Bun.sleep(1000);
    expect(cpuTicks(child.proc.pid) - before).toBeLessThan(50); // ticks of 10 ms: under half a core
    expect(child.stderrText.match(/refusing connections/g)?.length ?? 0).toBeLessThanOrEqual(3);
    expect(child.stderrText).toContain("the open file limit allows 28 sessions");
  } finally {
    for (const peer of held) peer.terminate();
  }
  const again = await dial(port);
  again.write("after");
  await waitFor(() => again.bytesIn === 5, 10_000, "a new session to be served");
  again.terminate();
});
