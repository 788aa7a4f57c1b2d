/** Failures on either side end the session at once, are counted, and leave the forwarder serving. */
import { expect, test } from "bun:test";
import {
  dial,
  echo,
  expectTimeoutAcrossStall,
  freePort,
  HOST,
  listen,
  MiB,
  type Peer,
  resetter,
  slowReader,
  source,
  unacceptingListener,
  waitFor,
} from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

const ECONNRESET = 104;

test("closes the client promptly when the upstream refuses, counts it, and keeps serving", async () => {
  const port = freePort(); // nothing listens here: connects are refused
  await using fwd = await startForward({ to: `${HOST}:${port}` });
  await using first = await dial(fwd.port);
  first.write("anyone there?");

  await waitFor(() => first.hungUp, 5000, "the client to be closed");
  expect(first.bytesIn).toBe(0);
  expect(fwd.stats()).toMatchObject({ connectFailures: 1, activeSessions: 0, totalSessions: 1 });
  expect(fwd.matching("connect_failed")).toHaveLength(1);

  // The same forwarder serves the next session once the target is up.
  await using _upstream = listen(echo, { port });
  await using second = await dial(fwd.port);
  second.write("second session");
  await waitFor(() => second.bytesIn >= 14, 5000, "the second session's echo");
  expect(second.text()).toBe("second session");
  expect(fwd.stats()).toMatchObject({ connectFailures: 1, totalSessions: 2 });
}, 15_000);

test("gives up a connect that hangs after the connect timeout and closes the client", async () => {
  await using target = await unacceptingListener();
  await using fwd = await startForward({ to: target.address, connectTimeout: "300ms" });
  const started = Date.now();
  await using client = await dial(fwd.port);
  client.write("early bytes that will never be delivered");

  await waitFor(() => client.hungUp, 5000, "the client to be closed");
  // Counted by the session clock (a tick of 30 ms here): never early, at most two ticks late.
  expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  expect(Date.now() - started).toBeLessThan(1000);
  expect(client.bytesIn).toBe(0);
  expect(fwd.stats()).toMatchObject({ connectFailures: 1, activeSessions: 0 });
  expect(fwd.matching("connect timed out after 300 ms").filter((line) => line.startsWith("warn"))).toHaveLength(1);
  expect(fwd.matching("connect_timeout")).toHaveLength(1);
}, 15_000);

test("resets an upstream connection that opens after the connect timeout", async () => {
  await using target = await unacceptingListener();
  await using fwd = await startForward({ to: target.address, connectTimeout: "200ms" });
  await using client = await dial(fwd.port);
  client.write("dropped");
  await waitFor(() => client.hungUp, 5000, "the client to be closed");

  // Free the accept queue: the forwarder's SYN retry now completes the late connection.
  target.closeFd(await target.acceptOne());
  const late = await target.acceptOne();
  const got = await target.receive(late, 1);
  expect(got.bytes.length).toBe(0);
  expect(got.eof || got.errno === ECONNRESET).toBe(true);
}, 20_000);

test("closes the upstream when the client resets mid-stream", async () => {
  await using upstream = listen(source(1024 * MiB));
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port, { keep: false });
  await waitFor(() => client.bytesIn > MiB, 10_000, "the stream to flow");

  client.terminate();
  const server = await upstream.peer(0);
  await waitFor(() => server.hungUp, 5000, "the upstream to be closed");
  expect(server.bytesOut).toBeLessThan(1024 * MiB);
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
}, 15_000);

test("closes at once when the client resets, dropping what was queued for the upstream", async () => {
  await using upstream = listen(slowReader);
  await using fwd = await startForward({ to: upstream.address, highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 });
  await using client = await dial(fwd.port);
  void client.stream(8 * MiB);
  await waitFor(() => fwd.stats().queuedBytes >= 64 * 1024, 10_000, "the up pipe to fill");

  client.terminate();
  // A clean close would wait for the queue to reach the (stalled) upstream; a reset does not.
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.stats().droppedBytes).toBeGreaterThanOrEqual(64 * 1024);
  expect(fwd.matching("client_reset")).toHaveLength(1);
}, 15_000);

test("closes at once when the upstream resets, dropping what was queued for the client", async () => {
  await using upstream = listen(source(1024 * MiB));
  await using fwd = await startForward({ to: upstream.address, highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 });
  await using _client = await dial(fwd.port, slowReader);
  await waitFor(() => fwd.stats().queuedBytes >= 64 * 1024, 10_000, "the down pipe to fill");

  (await upstream.peer(0)).terminate();
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.stats().droppedBytes).toBeGreaterThanOrEqual(64 * 1024);
  expect(fwd.matching("upstream_reset")).toHaveLength(1);
}, 15_000);

test("closes the client when the upstream resets", async () => {
  await using upstream = listen(resetter);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);
  client.write("provoke a reset");

  await waitFor(() => client.hungUp, 5000, "the client to be closed");
  expect(client.bytesIn).toBe(0);
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.matching("upstream_reset").length + fwd.matching("upstream_fin").length).toBe(1);
}, 15_000);

test("a session timer fires once its timeout has passed, never before", async () => {
  // idle_timeout 1s is the shortest timer, so the session clock ticks every 100 ms. A
  // session's last byte comes anywhere between two sweeps: five clients send theirs 20 ms
  // apart, across one tick, and each must stay open the whole second (ten sweeps from the last
  // byte would close most of them early).
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address, idleTimeout: "1s" });
  const clients = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const client = { sentAt: 0, endedAt: 0, peer: null as Peer | null };
      client.peer = await dial(fwd.port, {
        end: () => {
          client.endedAt = performance.now();
        },
      });
      return client;
    }),
  );
  try {
    for (const client of clients) {
      client.peer!.write("last bytes");
      client.sentAt = performance.now();
      await Bun.sleep(20);
    }
    await waitFor(() => clients.every((client) => client.endedAt > 0), 5000, "the idle closes");
    for (const client of clients) {
      expect(client.peer!.text()).toBe("last bytes");
      expect(client.endedAt - client.sentAt).toBeGreaterThanOrEqual(1000);
      expect(client.endedAt - client.sentAt).toBeLessThan(1600);
    }
    expect(fwd.matching("idle_timeout")).toHaveLength(5);
  } finally {
    for (const client of clients) await client.peer?.[Symbol.asyncDispose]();
  }
}, 15_000);

test("a stalled event loop does not stretch a timeout: the sweep reads the clock, it does not count sweeps", async () => {
  // The router runs in this process: a busy loop here stalls its sweeps (as a long GC pause or
  // a slow reload would). Counted sweeps would need ten more after the stall (~900 ms); the
  // first sweep after it sees the clock past idle_timeout and closes.
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address, idleTimeout: "1s" });
  let endedAt = 0;
  await using client = await dial(fwd.port, {
    end: () => {
      endedAt = performance.now();
    },
  });
  client.write("last bytes");
  await waitFor(() => client.text() === "last bytes", 5000, "the echo");
  await expectTimeoutAcrossStall(performance.now(), () => endedAt, "the idle close");
  expect(fwd.matching("idle_timeout")).toHaveLength(1);
}, 15_000);

test("closes an idle session after the idle timeout and keeps an active one open", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address, idleTimeout: "200ms" });
  const started = Date.now();
  await using idle = await dial(fwd.port);
  await using active = await dial(fwd.port);

  // The active client sends every 50 ms for 1 s; the idle one sends nothing.
  let sent = 0;
  let idleClosedAt = 0;
  while (sent < 20) {
    active.write(`tick ${String(sent).padStart(2, "0")}\n`);
    sent++;
    await Bun.sleep(50);
    if (idle.hungUp && idleClosedAt === 0) idleClosedAt = Date.now() - started;
    expect(active.hungUp).toBe(false);
  }
  expect(idle.hungUp).toBe(true);
  expect(idleClosedAt).toBeGreaterThanOrEqual(150);
  await waitFor(() => active.bytesIn >= 20 * 8, 5000, "every tick's echo");
  expect(active.text()).toBe(Array.from({ length: 20 }, (_, i) => `tick ${String(i).padStart(2, "0")}\n`).join(""));

  // Once it stops sending, the active session goes idle too.
  await waitFor(() => active.hungUp, 5000, "the formerly active session to be closed");
  expect(fwd.matching("idle_timeout")).toHaveLength(2);
  expect(fwd.stats().activeSessions).toBe(0);
}, 15_000);
