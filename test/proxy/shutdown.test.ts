/** stop(): stop accepting, let open sessions finish up to the drain timeout, close the rest. */
import { expect, test } from "bun:test";
import { dial, echo, listen, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

test("drains a session that finishes in time and closes one that does not at the deadline", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  await using finishing = await dial(fwd.port);
  await using lingering = await dial(fwd.port);
  for (const client of [finishing, lingering]) client.write("hello");
  await waitFor(() => finishing.bytesIn === 5 && lingering.bytesIn === 5, 5000, "both sessions to echo");

  const started = Date.now();
  const stopped = fwd.stop({ drainTimeout: "800ms" });

  // Draining: no new sessions, but open ones still carry bytes both ways.
  await expect(dial(fwd.port)).rejects.toThrow();
  finishing.write(" and goodbye");
  await waitFor(() => finishing.bytesIn === 17, 5000, "the echo during the drain");
  expect(finishing.text()).toBe("hello and goodbye");
  finishing.shutdown();
  await waitFor(() => finishing.closed, 5000, "the finishing session to close");
  expect(lingering.hungUp).toBe(false);

  const summary = await stopped;
  expect(summary).toMatchObject({ drained: 1, closed: 1 });
  expect(summary.durationMs).toBeGreaterThanOrEqual(750);
  expect(Date.now() - started).toBeGreaterThanOrEqual(750);
  await waitFor(() => lingering.hungUp, 5000, "the lingering client to be closed");
  expect(lingering.text()).toBe("hello");
  expect(fwd.stats().activeSessions).toBe(0);
  expect(fwd.matching("drained")).toHaveLength(1);
  expect(fwd.matching("client_fin")).toHaveLength(1);
}, 15_000);

test("returns as soon as the last session finishes, well before the drain timeout", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);
  client.write("x");
  await waitFor(() => client.bytesIn === 1, 5000, "the echo");

  const stopped = fwd.stop({ drainTimeout: "20s" });
  client.shutdown();
  const summary = await stopped;
  expect(summary).toMatchObject({ drained: 1, closed: 0 });
  expect(summary.durationMs).toBeLessThan(10_000);
}, 15_000);

test("closes every open session at once with a drain timeout of 0", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);
  client.write("x");
  await waitFor(() => client.bytesIn === 1, 5000, "the echo");

  const summary = await fwd.stop({ drainTimeout: 0 });
  expect(summary).toMatchObject({ drained: 0, closed: 1 });
  await waitFor(() => client.hungUp, 5000, "the client to be closed");
  const server = await upstream.peer(0);
  await waitFor(() => server.hungUp, 5000, "the upstream to be closed");
}, 15_000);

test("stops with nothing open and refuses new connections", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  const summary = await fwd.stop();
  expect(summary).toMatchObject({ drained: 0, closed: 0 });
  await expect(dial(fwd.port)).rejects.toThrow();
}, 15_000);
