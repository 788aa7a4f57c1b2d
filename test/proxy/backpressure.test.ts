/** A reader that stops reading must stop its writer, not grow the forwarder's memory. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dial, freePort, HOST, listen, MiB, sink, slowReader, source, spawnCli, waitFor, waitForListening, within } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

const highWaterMark = 64 * 1024;
const lowWaterMark = 16 * 1024;
/** The most one pipe may hold: the high-water mark plus the one read that crossed it (Bun reads up to 512 KiB at once). */
const QUEUE_BOUND = highWaterMark + 512 * 1024;

/** Samples `read()` `count` times, 20 ms apart; returns the largest value. */
async function peak(read: () => number, count: number): Promise<number> {
  let max = 0;
  for (let i = 0; i < count; i++) {
    max = Math.max(max, read());
    await Bun.sleep(20);
  }
  return max;
}

test("bounds queued bytes while the client stops reading, then delivers all 256 MiB exactly", async () => {
  const size = 256 * MiB;
  await using upstream = listen(source(size));
  await using fwd = await startForward({ to: upstream.address, highWaterMark, lowWaterMark });
  await using client = await dial(fwd.port, { ...slowReader, keep: false });
  const server = await upstream.peer(0);

  // Stalled: the down pipe filled to its high-water mark and paused the upstream socket.
  await waitFor(() => fwd.stats().queuedBytes >= highWaterMark, 10_000, "the down pipe to fill");
  // The source is held back by TCP (kernel buffers are a few MiB), not let run into our memory.
  const stalledAt = server.bytesOut;
  expect(await peak(() => fwd.stats().queuedBytes, 25)).toBeLessThanOrEqual(QUEUE_BOUND);
  expect(server.bytesOut).toBeLessThan(48 * MiB);
  expect(stalledAt).toBeLessThan(size);

  client.resume();
  await waitFor(() => client.ended, 30_000, "all bytes and the FIN");
  expect(client.bytesIn).toBe(size);
  expect(client.hashIn.digest("hex")).toBe(server.hashOut.digest("hex"));
  client.shutdown(); // the session stays half-open until the client ends its side too
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.stats()).toMatchObject({ bytesDown: size, queuedBytes: 0, droppedBytes: 0 });
}, 60_000);

test("bounds queued bytes while the upstream stops reading, then delivers the upload exactly", async () => {
  const size = 64 * MiB;
  await using upstream = listen({ ...slowReader, end: sink.end });
  await using fwd = await startForward({ to: upstream.address, highWaterMark, lowWaterMark });
  await using client = await dial(fwd.port, { keep: false });
  const uploaded = client.stream(size, 5);

  await waitFor(() => fwd.stats().queuedBytes >= highWaterMark, 10_000, "the up pipe to fill");
  expect(await peak(() => fwd.stats().queuedBytes, 25)).toBeLessThanOrEqual(QUEUE_BOUND);
  expect(client.bytesOut).toBeLessThan(48 * MiB);

  const server = await upstream.peer(0);
  server.resume();
  await within(uploaded, 30_000, "the upload");
  client.shutdown();
  await waitFor(() => server.ended && client.ended, 30_000, "FIN both ways");
  expect(server.bytesIn).toBe(size);
  expect(server.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
}, 60_000);

test("passes the client's FIN on only after the queued bytes reached the upstream", async () => {
  const size = 8 * MiB;
  // A high-water mark above the upload keeps the client readable, so the forwarder reads the
  // client's FIN while the bytes before it still wait for the stalled upstream.
  await using upstream = listen({ ...slowReader, end: sink.end });
  await using fwd = await startForward({ to: upstream.address, highWaterMark: 2 * size });
  await using client = await dial(fwd.port, { keep: false });
  void client.stream(size, 77).then(() => client.shutdown());

  await waitFor(() => fwd.stats().bytesUp === size, 10_000, "the whole upload to reach the forwarder");
  // The FIN follows the last byte; give the forwarder a moment to read it. (If it has not, this
  // run only checks less; it cannot fail a correct forwarder.)
  await Bun.sleep(50);
  expect(fwd.stats().queuedBytes).toBeGreaterThan(0);
  const server = await upstream.peer(0);
  expect(server.ended).toBe(false);
  server.resume();
  await waitFor(() => server.ended, 30_000, "the FIN at the upstream");
  expect(server.bytesIn).toBe(size);
  expect(server.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
}, 60_000);

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l: string) => l.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

test("streams 1 GiB to a client that stalls for seconds with the forwarder's RSS growing by tens of MiB at most", async () => {
  const size = 1024 * MiB;
  await using upstream = listen(source(size));
  const port = freePort();
  // The CLI in its own process, with the default water marks (1 MiB / 256 KiB): its RSS is the forwarder's alone.
  await using cli = spawnCli(["--listen", `${HOST}:${port}`, "--to", upstream.address, "--log-level", "warn"]);
  await waitForListening(port, 15_000);
  const baseline = rssMiB(cli.proc.pid);
  await using client = await dial(port, { ...slowReader, keep: false });
  const server = await upstream.peer(1); // peer 0 was the probe connection
  await Bun.sleep(2000); // stalled for two seconds
  const stalled = await peak(() => rssMiB(cli.proc.pid), 10);
  expect(server.bytesOut).toBeLessThan(64 * MiB); // TCP holds the source back
  client.resume();
  let max = stalled;
  await waitFor(
    () => {
      max = Math.max(max, rssMiB(cli.proc.pid));
      return client.ended;
    },
    60_000,
    "all 1 GiB and the FIN",
  );
  expect(client.bytesIn).toBe(size);
  expect(client.hashIn.digest("hex")).toBe(server.hashOut.digest("hex"));
  expect(stalled - baseline).toBeLessThan(48); // measured: +1 to +2 MiB
  // While streaming at full speed, Bun's fresh read buffers wait for the GC: measured +39 to +43 MiB.
  expect(max - baseline).toBeLessThan(128);
}, 90_000);
